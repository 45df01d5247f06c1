import type { PoolConfig } from '@mikro-orm/core';

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
 * The pool options with `pragma foreign_keys = on` run on every new SQLite connection, before the
 * application's own `afterCreate` ({@link runningOnEveryConnection}). SQLite's setting is per connection
 * and MikroORM turns it on once, on the connection it opens when it connects, so without this a connection
 * the pool opens later stores rows whose foreign keys point nowhere. It has to run when the connection is
 * created: inside a transaction the pragma does nothing.
 */
export function enforcingForeignKeys(pool: PoolConfig): PoolConfig {
  return runningOnEveryConnection(pool, 'foreign_keys = on');
}
