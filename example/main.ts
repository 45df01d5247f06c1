import { MikroORM } from '@mikro-orm/core';
import config from '../mikro-orm.config.js';
import { Follow, Tag, User } from './entities.js';
import { followTag } from './handlers.js';

/**
 * `npm start`: creates the schema, then fires concurrent "requests" that follow the same tags, each on
 * its own forked EntityManager, and prints what happened.
 */
async function main(): Promise<void> {
  const orm = await MikroORM.init(config);
  try {
    await orm.schema.refreshDatabase();
    const requests = ['ada@example.com', 'grace@example.com'].flatMap(email =>
      ['news', 'news', 'sport', 'news'].map(tag => followTag(orm.em.fork(), email, tag)),
    );
    const results = await Promise.all(requests);
    const em = orm.em.fork();
    console.log(`requests: ${results.length}, follows created: ${results.filter(r => r.created).length}, ` +
      `found existing: ${results.filter(r => !r.created).length}`);
    console.log(`rows: users ${await em.count(User)}, tags ${await em.count(Tag)}, follows ${await em.count(Follow)}`);
    const ada = await em.findOneOrFail(User, { email: 'ada@example.com' });
    console.log(`ada@example.com created at ${ada.createdAt.toISOString()}, updated at ${ada.updatedAt.toISOString()}`);
    const draft = em.create(Tag, { name: 'drafts' });
    console.log(`a new tag's URL before its insert: /tags/${draft.id}`);
    await em.flush();
    console.log(`and after: /tags/${(await em.findOneOrFail(Tag, { name: 'drafts' })).id}`);
  } finally {
    await orm.close();
  }
}

await main();
