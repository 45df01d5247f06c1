import { AsyncLocalStorage } from 'node:async_hooks';
import { TransactionPropagation, type Configuration, type TransactionOptions } from '@mikro-orm/core';
import { ManagedSessionError } from './ManagedSessionError.js';

/**
 * A callback that {@link onCommit} runs after the outermost managed session commits; it may be async.
 *
 * @example
 * ```ts
 * const notify: OnCommitCallback = async () => queue.publish('user.created', { id: user.id });
 * onCommit(notify);
 * ```
 */
export type OnCommitCallback = () => unknown;

/** The innermost level of the managed sessions running in the async context. */
const storage = new AsyncLocalStorage<CommitCallbacks>();

/**
 * The callbacks registered in one level of a managed session of one ORM: the outermost session's transaction
 * or a nested session's savepoint. A level that rolls back is dropped with its callbacks; a savepoint
 * that is released hands its callbacks to the level around it.
 */
export class CommitCallbacks {
  private readonly callbacks: OnCommitCallback[] = [];
  /** Set when the level's transaction or savepoint has ended: later registrations could never run. */
  private isEnded = false;
  /** The level that was current where this one was made (of this ORM or another), if any. */
  private readonly outer = storage.getStore();

  /** A level of a session of the ORM whose configuration (shared by its EntityManagers) is `config`. */
  constructor(readonly config: Configuration) {}

  /**
   * Runs `fn` (the level's transaction or savepoint) with this level as the current one for
   * {@link onCommit}, in its async context, and marks the level ended when `fn` settles.
   */
  static within<T>(level: CommitCallbacks, fn: () => Promise<T>): Promise<T> {
    return storage.run(level, async () => {
      try {
        return await fn();
      } finally {
        level.isEnded = true;
      }
    });
  }

  /**
   * The innermost level of the managed sessions running in this async context, if any; with `config`, the
   * innermost level of a session of that ORM.
   */
  static current(config?: Configuration): CommitCallbacks | undefined {
    let level = storage.getStore();
    while (level && config && level.config !== config) {
      level = level.outer;
    }
    return level;
  }

  /** Whether the level's transaction or savepoint has ended (work left running after its session). */
  get ended(): boolean {
    return this.isEnded;
  }

  /**
   * Runs `fn`, a nested transaction (savepoint) of this level, in a level of its own whose callbacks
   * join this one only if `fn` succeeds: a savepoint that rolls back drops what was registered in it.
   */
  async nest<T>(fn: () => Promise<T>): Promise<T> {
    if (this.isEnded) {
      throw ManagedSessionError.sessionEnded();
    }
    const level = new CommitCallbacks(this.config);
    const result = await CommitCallbacks.within(level, fn);
    this.callbacks.push(...level.callbacks);
    return result;
  }

  add(fn: OnCommitCallback): void {
    if (this.isEnded) {
      throw ManagedSessionError.onCommitAfterSessionEnded();
    }
    this.callbacks.push(fn);
  }

  /** Runs the callbacks one after another, in the order they were registered. */
  async run(): Promise<void> {
    for (const fn of this.callbacks) {
      await fn();
    }
  }
}

/**
 * Runs `transaction`, an `em.transactional` with `options`, keeping {@link onCommit} honest inside a managed
 * session: a nested transaction (propagation `NESTED`, the default) gets a level of commit callbacks of its
 * own, handed to the enclosing level when its savepoint is released and dropped when it rolls back. Outside a
 * managed session, or with another propagation, it runs `transaction` as it is. `CoasterEntityManager`'s
 * `transactional` calls it around MikroORM's, with its ORM's configuration: only a session of that ORM nests.
 *
 * @example
 * ```ts
 * override transactional<T>(cb: (em: this) => T | Promise<T>, options: TransactionOptions = {}): Promise<T> {
 *   return withCommitLevel(this.config, options, () => super.transactional(cb, options));
 * }
 * ```
 */
export function withCommitLevel<T>(config: Configuration, options: TransactionOptions, transaction: () => Promise<T>): Promise<T> {
  const level = CommitCallbacks.current(config); // a session of this ORM, not of another one
  if (!level || (options.propagation ?? TransactionPropagation.NESTED) !== TransactionPropagation.NESTED) {
    return transaction();
  }
  return level.nest(transaction);
}

/**
 * Registers `fn` to run once after the current managed session commits, like Django's
 * `transaction.on_commit`: after the COMMIT of the outermost session of the innermost session's ORM, in registration order, awaited one after
 * another. It never runs if the session rolls back, nor if the nested session (savepoint) it was
 * registered in rolls back, even when the outer session then commits. A retried session drops the
 * callbacks of the failed attempts.
 *
 * The callback runs outside the session (its transaction is over): to use the database, open a new
 * {@link managedSession}. If it throws, `managedSession` rejects with that error (the data stays
 * committed) and the later callbacks do not run.
 *
 * @example
 * ```ts
 * await managedSession(async em => {
 *   const order = em.create(Order, { total });
 *   onCommit(() => mailer.send(order.customerEmail, 'Thank you for your order'));
 * });
 * ```
 * @throws {ManagedSessionError} when no managed session is running in this async context, or when the
 *   session of this async context has already ended (work it left running in the background).
 */
export function onCommit(fn: OnCommitCallback): void {
  const level = CommitCallbacks.current();
  if (!level) {
    throw ManagedSessionError.onCommitOutsideSession();
  }
  level.add(fn);
}
