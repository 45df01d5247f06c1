import { TransactionPropagation, type EntityManager } from '@mikro-orm/core';
import type { Knex } from '@mikro-orm/knex';
import { TransactionEnd } from '../shared/transactionEnd.js';
import { NestedRollbackGuard } from './nestedRollback.js';

/**
 * One transaction level (a transaction, or a savepoint of one) as this library watches it, whoever opens it:
 * `CoasterEntityManager.transactional` and the batch methods' own level. Its ROLLBACK's failure, which knex
 * swallows, is attached to the error that set it off ({@link TransactionEnd}); on MySQL and MariaDB, a nested
 * level that lost the whole transaction makes every enclosing level reject instead of committing
 * ({@link NestedRollbackGuard}).
 *
 * @example
 * ```ts
 * let level: TransactionLevel | undefined;
 * try {
 *   await connection.transactional(async trx => {
 *     em.setTransactionContext(trx);
 *     level = TransactionLevel.start(em, outer);
 *     await work();
 *     level.beforeCommit();
 *   });
 * } catch (error) {
 *   throw level ? await level.failed(error) : error;
 * }
 * ```
 */
export class TransactionLevel {
  private constructor(
    private readonly end: TransactionEnd | undefined,
    private readonly guard: NestedRollbackGuard | undefined,
  ) {}

  /**
   * Watches the level whose transaction `em` holds, called as its callback starts; `outer` is the transaction
   * the caller was in (none opened when it is `em`'s), `propagation` how the level was opened (default NESTED).
   */
  static start(em: EntityManager, outer: Knex.Transaction | undefined, propagation = TransactionPropagation.NESTED): TransactionLevel {
    return new TransactionLevel(TransactionEnd.of(em, outer), NestedRollbackGuard.of(em, outer, propagation));
  }

  /**
   * Called when the level's work resolved, before its COMMIT or RELEASE SAVEPOINT.
   * @throws {TransactionRolledBackError} when a level nested in this one lost the whole transaction meanwhile.
   */
  beforeCommit(): void {
    this.guard?.assertNotLost();
  }

  /** The error the level rejects with after it failed with `error` (see {@link NestedRollbackGuard.failed}), its ROLLBACK's failure attached. */
  async failed(error: unknown): Promise<unknown> {
    this.end?.attachRollbackFailure(error);
    return this.guard ? this.guard.failed(error) : error;
  }
}
