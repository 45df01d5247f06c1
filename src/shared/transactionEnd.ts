import type { EntityManager } from '@mikro-orm/core';
import type { Knex } from '@mikro-orm/knex';
import { attachCleanupError } from './errors.js';

/**
 * How the transaction (or savepoint) that one `em.transactional` call opened ended, as knex reports it. knex
 * settles a transaction's `executionPromise` once its COMMIT, RELEASE SAVEPOINT, ROLLBACK or ROLLBACK TO
 * SAVEPOINT has run, rejected with that statement's error if it failed. MikroORM awaits it after COMMIT, so a
 * failed COMMIT's error is the one `transactional` rejects with; it does not after ROLLBACK, whose failure
 * knex swallows, so `transactional` rejects with the error that made it roll back, and the ROLLBACK's own
 * failure is seen only here.
 *
 * @example
 * ```ts
 * let end: TransactionEnd | undefined;
 * try {
 *   await em.transactional(fork => ((end = TransactionEnd.of(fork)), work(fork)));
 * } catch (error) {
 *   if (end?.failedWith(error)) console.log('the COMMIT failed');
 * }
 * ```
 */
export class TransactionEnd {
  /** The error the transaction's COMMIT, RELEASE or ROLLBACK failed with, once it did. */
  private failure: { error: unknown } | undefined;

  private constructor(transaction: Knex.Transaction) {
    transaction.executionPromise.catch((error: unknown) => {
      this.failure = { error };
    });
  }

  /**
   * Watches the transaction of `em`, the EntityManager a `transactional` callback received, unless it has none or
   * it is `outer`, the one the caller was already in (propagation `REQUIRED`, `SUPPORTS` or `MANDATORY` inside a
   * transaction, or `disableTransactions`): that call opened no transaction. Called as the callback starts, it
   * sees the end before MikroORM goes on after it (promise reactions run in the order they were added): by the
   * time `transactional` rejects, {@link failedWith} and {@link attachRollbackFailure} know how it ended.
   */
  static of(em: EntityManager, outer?: Knex.Transaction): TransactionEnd | undefined {
    const transaction = em.getTransactionContext<Knex.Transaction>();
    return transaction && transaction !== outer ? new TransactionEnd(transaction) : undefined;
  }

  /** Whether `error`, what `transactional` rejected with, is the failure of the transaction's COMMIT (or RELEASE SAVEPOINT). */
  failedWith(error: unknown): boolean {
    return this.failure !== undefined && this.failure.error === error;
  }

  /**
   * Attaches the error of the ROLLBACK (or ROLLBACK TO SAVEPOINT) that `error` set off, if that failed, to `error`
   * (see `CleanupErrors`). A ROLLBACK that knex gave up waiting for (after 5 seconds) leaves no error to attach.
   */
  attachRollbackFailure(error: unknown): void {
    if (this.failure !== undefined && this.failure.error !== error && this.failure.error !== undefined) {
      attachCleanupError(error, this.failure.error);
    }
  }
}
