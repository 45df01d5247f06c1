import type { EntityKey } from '@mikro-orm/core';
import type { FailsafeAddOptions } from '../failsafeAddOptions.js';

/** Rows per statement when {@link ManyOptions.chunkSize} is not given. */
export const DEFAULT_CHUNK_SIZE = 1_000;

/**
 * Bound values per statement at most, whatever `chunkSize` says: SQLite's limit (`SQLITE_MAX_VARIABLE_NUMBER`,
 * 32,766 since 3.32). A chunk of rows with many columns is sent as several statements.
 */
export const MAX_BOUND_VALUES = 32_766;

/**
 * Rows (or keys) per statement at most on SQLite when the statement writes them value by value (values without an
 * exact JSON form, such as a `Date`, or a filter on the select): knex writes SQLite's multi-row insert as
 * `select ? as a union all select ? as a ...`, and SQLite refuses a compound select of more than 500 terms
 * (`SQLITE_MAX_COMPOUND_SELECT`), or an `or` of composite keys nested deeper than 1,000 (`SQLITE_MAX_EXPR_DEPTH`).
 * A chunk is then sent as several statements. Rows of strings, integers, booleans and nulls go as one JSON document.
 */
export const SQLITE_MAX_ROWS = 500;

/** Options of `getOrCreateMany`, `findOrCreateMany` and `failsafeAddMany`. */
export interface ManyOptions<T> extends FailsafeAddOptions {
  /**
   * The properties that identify a row: those of one unique key of the entity (its primary key, a `unique`
   * property or an `@Unique` group), exactly, as property names. Every row (or entity) must give each of them a
   * non-null value. Rows with equal values are one row. Default: the one unique key whose properties every row
   * holds, a generated primary key left out; when no key or several qualify, `CoasterUsageError` before any SQL.
   * With `checkUnique: false`, any scalar or to-one properties are accepted (for a constraint that exists only
   * in the database). `failsafeAddMany` without a key that every entity holds inserts entity by entity and
   * resolves duplicates to `undefined`, as `failsafeAdd` without filters does.
   */
  uniqueBy?: EntityKey<T>[];

  /**
   * Rows per statement (and per round trip). Default: 1,000. A statement never binds
   * more than 32,766 values, SQLite's limit, so wide rows are sent in smaller chunks.
   * On SQLite, a chunk whose values have no exact JSON form (a `Date`, say) is sent as statements of 500 rows.
   * All chunks of a call are written in one transaction (a savepoint inside the caller's), in key order.
   */
  chunkSize?: number;

  /**
   * Called after each chunk with the number of distinct keys resolved so far and their total, e.g. to log the
   * progress of an import. An error it throws rolls the whole call back. A call that starts over after a
   * deadlock (MariaDB, outside a transaction), or key by key after a row came back under none of its keys
   * exactly (a case-insensitive collation), reports from the start again. Default: none.
   */
  progress?: (done: number, total: number) => void;
}
