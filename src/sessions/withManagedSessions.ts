import type { Options } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { applyOnce } from '../shared/options.js';
import { applyOptInTransactions, type OptInTransactionOptions } from './optInTransactions.js';
import { withMysqlTransactions } from './mysqlTransactions.js';
import { withSqliteConnections } from './sqliteTransactions.js';

/**
 * Returns `options` with what managed sessions and opt-in transactions need from the ORM: the
 * `optInTransactions` option turned into MikroORM's `implicitTransactions: false` (and left out), and, on
 * SQLite, a busy timeout and foreign keys on every connection and write transactions that take the write lock at `BEGIN`
 * (`BEGIN IMMEDIATE`, see "SQLite files shared by several processes" in docs/managed-sessions.md); on MySQL and MariaDB,
 * read-only transactions with an isolation level that the server accepts. `defineCoasterConfig`
 * applies it; options it already went through are returned as they are.
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init(withManagedSessions({ driver: SqliteDriver, dbName: 'app.sqlite', entities, optInTransactions: true }));
 * ```
 * @throws {ManagedSessionError} when `optInTransactions: true` comes with `implicitTransactions: true`; at
 *   `MikroORM.init` when a SQLite or MySQL-family driver other than MikroORM's own gives no `driverOptions.client`.
 */
export function withManagedSessions<O extends Options<AbstractSqlDriver> & OptInTransactionOptions>(options: O): O {
  return applyOnce('managed sessions', options, given => withMysqlTransactions(withSqliteConnections(applyOptInTransactions(given))));
}
