import type { Options } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { withEntityDecorators } from './entity-decorators/withEntityDecorators.js';
import type { CoasterEntityManager } from './inserts/CoasterEntityManager.js';
import { withRaceSafeInserts } from './inserts/withRaceSafeInserts.js';
import type { OptInTransactionOptions } from './sessions/optInTransactions.js';
import { withManagedSessions } from './sessions/withManagedSessions.js';

/**
 * MikroORM options for an ORM whose EntityManager is a {@link CoasterEntityManager}, plus this library's
 * own `optInTransactions`.
 *
 * @example
 * ```ts
 * const options: CoasterOptions<SqliteDriver> = { driver: SqliteDriver, dbName: ':memory:', entities, optInTransactions: true };
 * ```
 */
export type CoasterOptions<Driver extends AbstractSqlDriver = AbstractSqlDriver> = Options<
  Driver,
  CoasterEntityManager<Driver>
> &
  OptInTransactionOptions;

/**
 * Returns MikroORM options with the library's root features configured, by composing their options
 * transformers: {@link withManagedSessions} (`optInTransactions`; on SQLite a busy timeout and foreign keys
 * on every connection, and write transactions that take the write lock at BEGIN), {@link withRaceSafeInserts}
 * (`entityManager: CoasterEntityManager`, typed so that `MikroORM.init(defineCoasterConfig(...))` gives an
 * ORM whose `em` is one) and {@link withEntityDecorators} (what `@CreatedAt`, `@UpdatedAt` and `@AutoInitDefault` need).
 * Primary relationships are not among them: wrap the result in `withPrimaryRelationships` from
 * `mikro-orm-coaster/primary` (an ORM whose entities declare one fails at `MikroORM.init` without it).
 *
 * Options that already went through a transformer are returned as they are, so `initOrm(config)` with a
 * `config` made by it applies nothing twice. Pass your own `subscribers`, `extensions`, `migrations` and
 * `discovery` hooks in its argument: spreading its result with new ones replaces the library's, and
 * `MikroORM.init` then rejects with `CoasterConfigError`. Without it, `MikroORM.init` rejects entities
 * that use this library's decorators.
 *
 * @example
 * ```ts
 * // mikro-orm.config.ts
 * import { SqliteDriver } from '@mikro-orm/sqlite';
 * import { defineCoasterConfig } from 'mikro-orm-coaster';
 *
 * export default defineCoasterConfig({ driver: SqliteDriver, dbName: 'app.sqlite', entities: [User] });
 *
 * // app.ts
 * const orm = await MikroORM.init(config); // MikroORM<SqliteDriver, CoasterEntityManager<SqliteDriver>>
 * ```
 */
export function defineCoasterConfig<Driver extends AbstractSqlDriver>(options: CoasterOptions<Driver>): CoasterOptions<Driver> {
  return withEntityDecorators(withRaceSafeInserts(withManagedSessions(options)));
}
