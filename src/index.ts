/**
 * mikro-orm-coaster: race-safe inserts, timestamp and default decorators and managed sessions for
 * MikroORM 6. Primary relationships are the entry point `mikro-orm-coaster/primary`, the Express and
 * Fastify integrations `mikro-orm-coaster/express` and `mikro-orm-coaster/fastify`.
 *
 * @example
 * ```ts
 * import { MikroORM } from '@mikro-orm/core';
 * import { defineCoasterConfig } from 'mikro-orm-coaster';
 *
 * const orm = await MikroORM.init(defineCoasterConfig({ driver: SqliteDriver, dbName: ':memory:', entities }));
 * const tag = await orm.em.fork().findOrCreate(Tag, { name: 'news' });
 * ```
 * @module mikro-orm-coaster
 */
export * from './shared/index.js';
export * from './inserts/index.js';
export * from './entity-decorators/index.js';
export * from './sessions/index.js';
export { defineCoasterConfig, type CoasterOptions } from './defineCoasterConfig.js';
