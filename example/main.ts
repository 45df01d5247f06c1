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
  } finally {
    await orm.close();
  }
}

await main();
