/**
 * Options of `failsafeAdd`, `addAndCommit`, `findOrCreate` and `getOrCreate`.
 *
 * @example
 * ```ts
 * await em.transactional(async tx => {
 *   for (const name of names) await tx.failsafeAdd(tx.create(Tag, { name }), { name }, { savepoint: false });
 * });
 * ```
 */
export interface FailsafeAddOptions {
  /**
   * `false` sends the fast path's insert without a savepoint inside a PostgreSQL transaction, for
   * callers that insert many rows in one transaction (past 64 subtransactions PostgreSQL slows down).
   * A duplicate is still resolved without an error. The trade-off: any other error (foreign key,
   * NOT NULL, CHECK, and a REPEATABLE READ snapshot hiding the conflicting row, which then comes out as
   * MikroORM's `DeadlockException` with code 40001) aborts your whole transaction: roll it back.
   * No effect outside a transaction, on SQLite (which never needs the savepoint), or for entities that
   * take the savepoint path. Default: `true`.
   */
  savepoint?: boolean;
}
