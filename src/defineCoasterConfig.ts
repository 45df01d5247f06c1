import type { Options } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { CoasterEntityManager } from './inserts/CoasterEntityManager.js';
import { applyOptInTransactions, type OptInTransactionOptions } from './sessions/optInTransactions.js';
import { withEntityDecorators } from './entity-decorators/withEntityDecorators.js';
import { withPrimaryRelationships } from './primary/withPrimaryRelationships.js';
import { withSqliteConnections } from './shared/sqliteConnections.js';

/**
 * MikroORM options for an ORM whose EntityManager is a {@link CoasterEntityManager}. Every feature of
 * this library that needs the ORM configured a certain way registers it here, so one call enables them all.
 */
export type CoasterOptions<Driver extends AbstractSqlDriver = AbstractSqlDriver> = Options<
  Driver,
  CoasterEntityManager<Driver>
> &
  OptInTransactionOptions;

/**
 * Returns MikroORM options with `entityManager: CoasterEntityManager` set, typed so that
 * `MikroORM.init(defineCoasterConfig(...))` gives an ORM whose `em` is a `CoasterEntityManager`, with
 * what the entity decorators need ({@link withEntityDecorators}) and what primary relationships need
 * (see `addPrimaryRelationship`: call it before this), and, on SQLite, a busy timeout and write transactions that
 * take the write lock at BEGIN (see `managedSession`). Options it already returned are returned as they
 * are, so `initOrm(config)` with a `config` made by it applies nothing twice. Pass your own `subscribers`,
 * `extensions`, `migrations` and `discovery` hooks in its argument: spreading its result with new ones
 * replaces the library's, and `MikroORM.init` then rejects with `CoasterConfigError`. Without it,
 * `MikroORM.init` rejects entities that use this library's decorators or primary relationships.
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
export function defineCoasterConfig<Driver extends AbstractSqlDriver>(
  options: CoasterOptions<Driver>,
): CoasterOptions<Driver> {
  if (defined.has(options)) {
    return options;
  }
  // withPrimaryRelationships last: its `entities` is a getter, which spreading the options again would read too early
  const coasterOptions = withPrimaryRelationships(
    withSqliteConnections(withEntityDecorators({ ...applyOptInTransactions(options), entityManager: CoasterEntityManager })),
  );
  defined.add(coasterOptions);
  return coasterOptions;
}

/** Options that {@link defineCoasterConfig} returned. */
const defined = new WeakSet<object>();
