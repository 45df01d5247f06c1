import { rm } from 'node:fs/promises';
import { MikroORM, type EventSubscriber } from '@mikro-orm/core';
import config from '../mikro-orm.config.js';
import { UserEmail } from './emails.js';
import { Follow, Tag, User } from './entities.js';
import { followTag, setPrimaryEmail } from './handlers.js';

/** Counts rolled-back (nested) transactions: each one is an insert that lost a race and was recovered. */
class ConflictCounter implements EventSubscriber {
  recovered = 0;

  afterTransactionRollback(): void {
    this.recovered++;
  }
}

/**
 * `npm start`: applies the migrations in `migrations/` to a fresh database, then fires concurrent
 * "requests" that follow the same tags, each on its own forked EntityManager, gives each user a
 * primary e-mail address, and prints what happened.
 */
async function main(): Promise<void> {
  if (!process.env.DATABASE_URL) {
    await rm(String(config.dbName), { force: true }); // a fresh SQLite file on every run
  }
  const conflicts = new ConflictCounter();
  const orm = await MikroORM.init({ ...config, subscribers: [...(config.subscribers ?? []), conflicts] });
  try {
    await orm.migrator.up();
    const requests = ['ada@example.com', 'grace@example.com'].flatMap(email =>
      ['news', 'news', 'sport', 'news'].map(tag => ({ email, tag })),
    );
    const results = await Promise.all(requests.map(({ email, tag }) => followTag(orm.em.fork(), email, tag)));

    console.table(
      results.map((r, i) => ({ request: i + 1, user: r.user.email, tag: r.tag.name, follow: r.created ? 'created' : 'found' })),
    );
    const em = orm.em.fork();
    console.log(
      `${requests.length} concurrent requests, ${conflicts.recovered} lost insert races recovered, none failed.\n` +
        `rows: ${await em.count(User)} users, ${await em.count(Tag)} tags, ${await em.count(Follow)} follows`,
    );
    const ada = await em.findOneOrFail(User, { email: 'ada@example.com' });
    console.log(`ada@example.com created at ${ada.createdAt.toISOString()}, updated at ${ada.updatedAt.toISOString()}`);
    const draft = em.create(Tag, { name: 'drafts' });
    console.log(`a new tag's URL before its insert: /tags/${draft.id}`);
    await em.flush();
    console.log(`and after: /tags/${(await em.findOneOrFail(Tag, { name: 'drafts' })).id}`);
    for (const email of ['ada@example.com', 'grace@example.com']) {
      await setPrimaryEmail(orm.em.fork(), email, email.replace('@', '+work@'));
    }
    for (const user of await orm.em.fork().find(User, {}, { populate: ['primaryEmail'], orderBy: { id: 'asc' } })) {
      console.log(`primary e-mail of ${user.name}: ${user.primaryEmail?.address}`);
    }
    const grace = await em.findOneOrFail(User, { email: 'grace@example.com' });
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
