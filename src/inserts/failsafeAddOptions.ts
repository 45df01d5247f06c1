/**
 * Options of `failsafeAdd`, `addAndCommit`, `findOrCreate`, `getOrCreate` and `updateOrCreate`.
 *
 * @example
 * ```ts
 * await em.transactional(async tx => {
 *   for (const name of names) await tx.failsafeAdd(tx.create(Tag, { name }), { name }, { savepoint: false });
 * });
 * await em.findOrCreate(Tag, { slug }, { name }, { checkUnique: false }); // a unique index the entity does not declare
 * ```
 */
export interface FailsafeAddOptions {
  /**
   * `false` sends the fast path's insert without a savepoint inside a PostgreSQL transaction, for
   * callers that insert many rows in one transaction (past 64 subtransactions PostgreSQL slows down).
   * A duplicate is still resolved without an error. The trade-off: any other error (foreign key,
   * NOT NULL, CHECK, and a REPEATABLE READ snapshot hiding the conflicting row, which then comes out as
   * MikroORM's `DeadlockException` with code 40001) aborts your whole transaction: roll it back.
   * No effect outside a transaction, on SQLite and MariaDB (which never need the savepoint: a failed
   * statement leaves their transaction usable), or for entities that take the savepoint path.
   * `updateOrCreate` inside a transaction then also runs without its own savepoint, in your transaction
   * as it is. Default: `true`.
   */
  savepoint?: boolean;

  /**
   * `false` lets `findOrCreate` / `getOrCreate` / `updateOrCreate` run with a `where` that no unique key declared in the
   * entity's metadata covers (primary key, `unique` property, `@Unique` with properties); by default
   * such a call throws `CoasterUsageError` before any SQL. Pass it only when the database has a unique
   * constraint over the `where`'s columns that the entity does not declare (one created by a migration
   * or raw SQL, or a `@Unique({ expression })`). The trade-off: without such a constraint nothing stops
   * two concurrent calls from both inserting; both report success, and every later call with that
   * `where` throws `MultipleResultsError`. Ignored by `failsafeAdd` and `addAndCommit`, whose filters only
   * locate the row after a conflict. Default: `true`.
   */
  checkUnique?: boolean;
}
