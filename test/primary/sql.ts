import type { TestDatabase } from '../support/databases.js';

/** Whether `db` is MariaDB, through either driver. */
export const onMariadb = (db: Pick<TestDatabase, 'name'>): boolean => db.name === 'mariadb' || db.name === 'mysql';

/**
 * Raw SQL written with double-quoted identifiers (PostgreSQL and SQLite), quoted for `db`: backticks on
 * MariaDB. Only for SQL whose identifiers hold no quotes and whose string literals hold no double quotes.
 */
export function quotedFor(db: Pick<TestDatabase, 'name'>, sql: string): string {
  return onMariadb(db) ? sql.replaceAll('"', '`') : sql;
}
