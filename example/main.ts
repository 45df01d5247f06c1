import { rm } from 'node:fs/promises';
import { MikroORM } from '@mikro-orm/core';
import config from '../mikro-orm.config.js';
import { UserEmail } from './emails.js';
import { Follow, Tag, User } from './entities.js';
import { followTag, setPrimaryEmail } from './handlers.js';

/**
 * `npm start`: applies the migrations in `migrations/` to a fresh database, then fires concurrent
 * "requests" that follow the same tags, each on its own forked EntityManager, gives each user a
 * primary e-mail address, and prints what happened.
 */
async function main(): Promise<void> {
  if (!process.env.DATABASE_URL) {
    await rm(String(config.dbName), { force: true }); // a fresh SQLite file on every run
  }
  const orm = await MikroORM.init(config);
  try {
    await orm.migrator.up();
    const requests = ['ada@example.com', 'grace@example.com'].flatMap(email =>
      ['news', 'news', 'sport', 'news'].map(tag => followTag(orm.em.fork(), email, tag)),
    );
    const results = await Promise.all(requests);
    const em = orm.em.fork();
    console.log(`requests: ${results.length}, follows created: ${results.filter(r => r.created).length}, ` +
      `found existing: ${results.filter(r => !r.created).length}`);
    console.log(`rows: users ${await em.count(User)}, tags ${await em.count(Tag)}, follows ${await em.count(Follow)}`);

    for (const email of ['ada@example.com', 'grace@example.com']) {
      await setPrimaryEmail(orm.em.fork(), email, email.replace('@', '+work@'));
    }
    for (const user of await orm.em.fork().find(User, {}, { populate: ['primaryEmail'], orderBy: { id: 'asc' } })) {
      console.log(`primary e-mail of ${user.name}: ${user.primaryEmail?.address}`);
    }
    const [ada, grace] = await em.find(User, {}, { orderBy: { id: 'asc' } });
    try {
      ada.primaryEmail = await em.findOneOrFail(UserEmail, { user: grace });
    } catch (e) {
      console.log(`giving ada grace's address: ${(e as Error).message.split(':')[0]}`);
    }
  } finally {
    await orm.close();
  }
}

await main();
