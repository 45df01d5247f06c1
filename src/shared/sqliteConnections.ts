import type { ExceptionConverter, Options, PoolConfig } from '@mikro-orm/core';
import {
  BaseSqlitePlatform,
  BetterSqliteKnexDialect,
  LibSqlKnexDialect,
  SqliteKnexDialect,
  type AbstractSqlDriver,
  type Knex,
} from '@mikro-orm/knex';
import { afterHook } from './afterHook.js';
import { ManagedSessionError } from '../sessions/ManagedSessionError.js';

/**
 * How long a statement on SQLite waits for another connection's lock (`pragma busy_timeout`, in
 * milliseconds) before it fails with SQLITE_BUSY, on every connection of an ORM made by `defineCoasterConfig`.
 */
const SQLITE_BUSY_TIMEOUT_MS = 5000;

/** knex's `pool.afterCreate`: called with each new raw connection, and a callback to call when done. */
type AfterCreate = (connection: unknown, done: (error: Error | null, connection: unknown) => void) => void;

/**
 * A raw SQLite connection: node-sqlite3's `Database` (`@mikro-orm/sqlite`) runs SQL with a callback;
 * better-sqlite3's and libsql's (`@mikro-orm/better-sqlite`, `@mikro-orm/libsql`) have a synchronous `pragma()`.
 */
interface RawSqliteConnection {
  exec(sql: string, callback: (error: Error | null) => void): unknown;
  pragma?(source: string): unknown;
}

/** The pragmas that each `afterCreate` made by {@link runningOnEveryConnection} sets, its own and those it chains to. */
const pragmaHooks = new WeakMap<object, ReadonlySet<string>>();

/**
 * The pool options with an `afterCreate` that runs `pragma <pragma>` on every new SQLite connection,
 * then the `afterCreate` the options already had (the application's runs last, so it can override).
 * A pragma already applied by the chain is not added twice.
 */
export function runningOnEveryConnection(pool: PoolConfig, pragma: string): PoolConfig {
  const own = pool.afterCreate as AfterCreate | undefined;
  const applied = (own && pragmaHooks.get(own)) || new Set<string>();
  if (applied.has(pragma)) {
    return pool;
  }
  const afterCreate: AfterCreate = (connection, done) => {
    const next = (error: Error | null) => (error || !own ? done(error, connection) : own(connection, done));
    const sqlite = connection as RawSqliteConnection;
    if (sqlite.pragma) {
      sqlite.pragma(pragma);
      next(null);
    } else {
      sqlite.exec(`pragma ${pragma}`, next);
    }
  };
  pragmaHooks.set(afterCreate, new Set([...applied, pragma]));
  return { ...pool, afterCreate };
}

/**
 * The part of knex's SQLite transaction (`Transaction_Sqlite`, knex internals) that starts it: once it holds
 * a connection, a top-level transaction sets `trxClient` and calls `begin()`, which sends `BEGIN;`.
 */
interface KnexSqliteTransaction {
  begin(connection: unknown): Promise<unknown>;
  trxClient: { query(connection: unknown, sql: string): Promise<unknown> };
}

/**
 * A knex SQLite client class, as MikroORM's SQLite drivers pass it to `knex({ client })`. MikroORM declares
 * its client classes over knex's untyped (`any`) ones, so their instance type is `any` here too; the one
 * method used is typed where it is called.
 */
type KnexSqliteDialect = new (...args: any[]) => any;

/** The knex client class of each MikroORM SQLite driver, by the database package the driver depends on. */
const DIALECTS: Record<string, KnexSqliteDialect> = {
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
function beginningImmediate(Dialect: KnexSqliteDialect, exceptions: ExceptionConverter): KnexSqliteDialect {
  return class ImmediateDialect extends Dialect {
    transaction(container: unknown, config: Knex.TransactionConfig | undefined, outerTx: unknown): KnexSqliteTransaction {
      const transaction: KnexSqliteTransaction = super.transaction(container, config, outerTx);
      if (!outerTx && !config?.readOnly) {
        // Replaces knex's `BEGIN;` before it is sent: knex calls begin() only after acquiring a connection.
        // Sent through trxClient, not knex's own Transaction.query(), which would swallow a failed BEGIN and
        // hand the caller a transaction that is already over: this rejection fails the transaction instead.
        transaction.begin = connection =>
          transaction.trxClient.query(connection, 'BEGIN IMMEDIATE;').catch((error: Error) => {
            throw exceptions.convertException(error);
          });
      }
      return transaction;
    }
  };
}

/**
 * Returns `options` set up for a SQLite file shared by several connections or processes, for
 * `defineCoasterConfig`: on SQLite, every pooled connection gets `pragma busy_timeout` of
 * {@link SQLITE_BUSY_TIMEOUT_MS} (before the application's own `pool.afterCreate`), and every top-level
 * transaction that is not `readOnly` begins with `BEGIN IMMEDIATE` (through `driverOptions.client`, over
 * the application's own client class if it gave one). Other databases are left as they are.
 *
 * @throws {ManagedSessionError} at `MikroORM.init` when the SQLite driver is not one of MikroORM's own
 *   (`@mikro-orm/sqlite`, `@mikro-orm/better-sqlite`, `@mikro-orm/libsql`) and gives no `driverOptions.client`.
 */
export function withSqliteConnections<O extends Options<AbstractSqlDriver>>(options: O): O {
  const discovery = options.discovery ?? {};
  return {
    ...options,
    discovery: {
      ...discovery,
      afterDiscovered: (storage, platform) =>
        afterHook(discovery.afterDiscovered?.(storage, platform), () => {
          // discovery comes before MikroORM opens the pool and builds the knex client, and only then is the platform known
          if (!(platform instanceof BaseSqlitePlatform)) {
            return;
          }
          const config = platform.getConfig();
          config.set('pool', runningOnEveryConnection(config.get('pool'), `busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`));
          const driverOptions = config.get('driverOptions') ?? {};
          const dependencies = config.getDriver().getDependencies();
          const Dialect =
            typeof driverOptions.client === 'function'
              ? (driverOptions.client as KnexSqliteDialect)
              : DIALECTS[dependencies.find(name => name in DIALECTS) ?? ''];
          if (!Dialect) {
            throw ManagedSessionError.unknownSqliteDriver(dependencies);
          }
          config.set('driverOptions', { ...driverOptions, client: beginningImmediate(Dialect, platform.getExceptionConverter()) });
        }),
    },
  };
}
