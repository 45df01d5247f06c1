import type { ExceptionConverter, Options } from '@mikro-orm/core';
import { BetterSqliteKnexDialect, LibSqlKnexDialect, SqliteKnexDialect, type AbstractSqlDriver, type Knex } from '@mikro-orm/knex';
import { beginWith } from '../shared/internals.js';
import { enforcingForeignKeys, runningOnEveryConnection } from '../shared/sqliteConnections.js';
import { replacingKnexClient, type KnexClientClass } from './knexClients.js';
import { ManagedSessionError } from './ManagedSessionError.js';

/**
 * How long a statement on SQLite waits for another connection's lock (`pragma busy_timeout`, in
 * milliseconds) before it fails with SQLITE_BUSY, on every connection of an ORM made by `withManagedSessions`.
 */
const SQLITE_BUSY_TIMEOUT_MS = 5000;

/** The knex client class of each MikroORM SQLite driver, by the database package the driver depends on. */
const DIALECTS: Record<string, KnexClientClass> = {
  sqlite3: SqliteKnexDialect,
  'better-sqlite3': BetterSqliteKnexDialect,
  libsql: LibSqlKnexDialect,
};

/**
 * `Dialect` with its top-level write transactions started by `BEGIN IMMEDIATE`, which takes SQLite's
 * write lock at once, waiting for it up to the busy timeout. A plain (deferred) `BEGIN` takes it at the
 * transaction's first write, and when another connection wrote meanwhile SQLite cannot wait there: it
 * fails with SQLITE_BUSY at once, whatever the busy timeout. Read-only transactions keep `BEGIN`.
 * A `BEGIN IMMEDIATE` that times out rejects with the error MikroORM raises for SQLITE_BUSY
 * (`LockWaitTimeoutException`, made by `exceptions`).
 */
function beginningImmediate(Dialect: KnexClientClass, exceptions: ExceptionConverter): KnexClientClass {
  return class ImmediateDialect extends Dialect {
    transaction(container: unknown, config: Knex.TransactionConfig | undefined, outerTx: unknown): object {
      const transaction: object = super.transaction(container, config, outerTx);
      // a failed BEGIN IMMEDIATE rejects, failing the transaction (knex would hand over one already over)
      return outerTx || config?.readOnly ? transaction : beginWith(transaction, ['BEGIN IMMEDIATE;'], error => exceptions.convertException(error));
    }
  };
}

/**
 * Returns `options` set up for a SQLite file shared by several connections or processes, for
 * `withManagedSessions`: on SQLite, every pooled connection gets `pragma busy_timeout` of
 * {@link SQLITE_BUSY_TIMEOUT_MS} and `pragma foreign_keys = on` (before the application's own
 * `pool.afterCreate`; MikroORM turns foreign keys on for its first connection only), and every top-level
 * transaction that is not `readOnly` begins with `BEGIN IMMEDIATE` (through `driverOptions.client`, over
 * the application's own client class if it gave one). Other databases are left as they are.
 *
 * @throws {ManagedSessionError} at `MikroORM.init` when the SQLite driver is not one of MikroORM's own
 *   (`@mikro-orm/sqlite`, `@mikro-orm/better-sqlite`, `@mikro-orm/libsql`) and gives no `driverOptions.client`.
 */
export function withSqliteConnections<O extends Options<AbstractSqlDriver>>(options: O): O {
  return replacingKnexClient(options, {
    dialect: 'sqlite',
    clients: DIALECTS,
    unknownDriver: dependencies => ManagedSessionError.unknownSqliteDriver(dependencies),
    configure: config => config.set('pool', enforcingForeignKeys(runningOnEveryConnection(config.get('pool'), `busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`))),
    subclass: (Client, platform) => beginningImmediate(Client, platform.getExceptionConverter()),
  });
}
