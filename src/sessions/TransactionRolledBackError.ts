import { CoasterError } from '../shared/errors.js';

/**
 * On MySQL and MariaDB, a nested transaction (`em.transactional` inside another, a nested `managedSession`, the
 * savepoint of `failsafeAdd`) failed with an error after which the database had rolled back the WHOLE
 * transaction, not only the savepoint: a deadlock (1213, MikroORM's `DeadlockException`), a record changed since
 * the snapshot (1020), or any error whose `ROLLBACK TO SAVEPOINT` found no transaction left. The work done before
 * the nested level is gone, even though the caller caught the nested level's error; every level around it
 * rejects with this error instead of committing, so nothing done after it is committed without what came before.
 * From the failure on, the connection runs a READ ONLY transaction in place of the lost one: a write there is
 * refused (1792), none is ever committed on its own.
 *
 * What to do: run the whole transaction again. `managedSession` does so when its `retries` allow it. The error
 * that rolled the transaction back is the `cause`; a later error of the level that rejects with this one (such as
 * a write refused in the read-only transaction) is `afterwards`.
 *
 * @example
 * ```ts
 * await managedSession(async em => {
 *   em.create(Order, { total });
 *   await em.flush();
 *   await em.transactional(async tx => reserveStock(tx)).catch(() => undefined); // a deadlock: the order is gone too
 * }, { retries: 3 }); // TransactionRolledBackError, retried: the next attempt writes the order again
 * ```
 */
export class TransactionRolledBackError extends CoasterError {
  private constructor(
    message: string,
    cause: unknown,
    /** The error the enclosing level failed with after the rollback, if it failed with one of its own. */
    readonly afterwards: unknown,
  ) {
    super(message, { cause });
  }

  /** A nested level failed with `cause`, which rolled back the whole transaction; the level then failed with `afterwards`, if given. */
  static underNestedLevel(cause: unknown, afterwards?: unknown): TransactionRolledBackError {
    const reason = cause instanceof Error ? cause.message : String(cause);
    return new TransactionRolledBackError(
      `The database rolled back this whole transaction when a nested transaction (savepoint) inside it failed ` +
        `(${reason}): on MySQL and MariaDB a deadlock or a record changed since the snapshot ends the whole ` +
        `transaction, not only the savepoint, so the work done before the savepoint is lost even though the ` +
        `nested failure was caught. Nothing of this transaction was committed. Run the whole transaction again ` +
        `(managedSession does so with its retries option).`,
      cause,
      afterwards,
    );
  }
}
