import { ConstraintViolationException, DriverException, TransactionPropagation, type EntityManager } from '@mikro-orm/core';
import type { AbstractSqlConnection, Knex } from '@mikro-orm/knex';
import { dialectOf } from '../shared/dialect.js';
import { attachCleanupError } from '../shared/errors.js';
import { TransactionRolledBackError } from './TransactionRolledBackError.js';

/** The transaction each nested level ran in, by the level's own (its savepoint's) knex transaction. */
const enclosingOf = new WeakMap<Knex.Transaction, Knex.Transaction>();

/** The transactions (and savepoints) that the database rolled back under a nested level, with the error that did it. */
const lostBecauseOf = new WeakMap<Knex.Transaction, unknown>();

/**
 * One level of `em.transactional` on MySQL or MariaDB (`CoasterEntityManager.transactional`), guarding against
 * a partial commit after a nested level lost the whole transaction. InnoDB rolls back the whole transaction on a
 * deadlock (1213) or a record changed since the snapshot (1020), savepoints included; knex's `ROLLBACK TO
 * SAVEPOINT` then fails with 1305, which knex swallows, and the statements after it would run in autocommit and
 * the outer COMMIT succeed: the work before the savepoint lost, the work after it committed, no error.
 *
 * So when a nested level fails with a database error (other than a constraint violation, which InnoDB rolls back
 * alone), it asks the server whether a transaction is still open (`@@in_transaction`). When none is, it starts a
 * READ ONLY transaction on the connection, so no later statement can write outside a transaction, and marks every
 * enclosing level lost: each rejects with {@link TransactionRolledBackError} instead of committing.
 */
export class NestedRollbackGuard {
  private constructor(
    private readonly em: EntityManager,
    private readonly own: Knex.Transaction,
    /** The transaction this level is a savepoint of, if it is one. */
    private readonly outer: Knex.Transaction | undefined,
  ) {}

  /**
   * The guard of the level whose callback received `em`, on MySQL and MariaDB, unless the level opened no
   * transaction of its own (its transaction is `outer`, the one the caller was in). The level is nested in
   * `outer` (a savepoint of it) with `propagation` NESTED, MikroORM's default; with REQUIRES_NEW it is a
   * transaction of its own on another connection. Called as the callback starts.
   */
  static of(em: EntityManager, outer: Knex.Transaction | undefined, propagation = TransactionPropagation.NESTED): NestedRollbackGuard | undefined {
    const own = em.getTransactionContext<Knex.Transaction>();
    if (dialectOf(em.getPlatform()) !== 'mysql' || !own || own === outer) {
      return undefined;
    }
    const enclosing = propagation === TransactionPropagation.NESTED ? outer : undefined;
    if (enclosing) {
      enclosingOf.set(own, enclosing);
    }
    return new NestedRollbackGuard(em, own, enclosing);
  }

  /**
   * Called when the level's callback resolved, before its flush and COMMIT (or RELEASE SAVEPOINT).
   * @throws {TransactionRolledBackError} when a nested level lost the transaction meanwhile.
   */
  assertNotLost(): void {
    if (lostBecauseOf.has(this.own)) {
      throw TransactionRolledBackError.underNestedLevel(lostBecauseOf.get(this.own));
    }
  }

  /**
   * The error the level rejects with after it failed with `error`: {@link TransactionRolledBackError} when a
   * nested level lost its transaction before (unless `error` is the failure that lost it, passed on as it is);
   * else `error` itself, after checking, for a nested level, whether the failure lost the enclosing transaction.
   */
  async failed(error: unknown): Promise<unknown> {
    if (lostBecauseOf.has(this.own)) {
      const cause = lostBecauseOf.get(this.own);
      return error === cause || error instanceof TransactionRolledBackError ? error : TransactionRolledBackError.underNestedLevel(cause, error);
    }
    if (this.outer && error instanceof DriverException && !(error instanceof ConstraintViolationException)) {
      await this.loseEnclosingIfGone(this.outer, error).catch((checkError: unknown) => attachCleanupError(error, checkError));
    }
    return error;
  }

  /** Marks `outer` and the levels around it lost by `error` when the server has no transaction open any more. */
  private async loseEnclosingIfGone(outer: Knex.Transaction, error: unknown): Promise<void> {
    const connection = this.em.getConnection() as AbstractSqlConnection;
    const [{ open }] = await connection.execute<{ open: number | string }[]>('select @@in_transaction as open', [], 'all', outer);
    if (Number(open) === 1) {
      return;
    }
    await connection.execute('start transaction read only', [], 'run', outer);
    for (let level: Knex.Transaction | undefined = outer; level; level = enclosingOf.get(level)) {
      lostBecauseOf.set(level, error);
    }
  }
}
