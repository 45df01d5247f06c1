import { setTimeout as sleep } from 'node:timers/promises';
import {
  Collection,
  DeadlockException,
  ReferenceKind,
  RequestContext,
  TransactionContext,
  TransactionPropagation,
  wrap,
  type IsolationLevel,
  type Platform,
} from '@mikro-orm/core';
import type { CoasterEntityManager } from '../inserts/CoasterEntityManager.js';
import { TransactionRetryError } from '../inserts/errors.js';
import { dialectOf } from '../shared/dialect.js';
import { attachCleanupError, sqlStateOf } from '../shared/errors.js';
import { TransactionEnd } from '../shared/transactionEnd.js';
import { CommitOutcomeUnknownError } from './CommitOutcomeUnknownError.js';
import { ManagedSessionError } from './ManagedSessionError.js';
import { TransactionRolledBackError } from './TransactionRolledBackError.js';
import { CommitCallbacks } from './onCommit.js';
import { resolveOrm, type CoasterOrm, type OrmReference } from './orm.js';

/**
 * Options of {@link managedSession}. All of them but `orm` apply to the outermost session only.
 *
 * @example
 * ```ts
 * const options: ManagedSessionOptions = { isolationLevel: IsolationLevel.SERIALIZABLE, retries: 3, retryDelay: 10 };
 * await managedSession(em => transfer(em, from, to, amount), options);
 * ```
 */
export interface ManagedSessionOptions {
  /**
   * The ORM whose session this is: the name {@link "mikro-orm-coaster"!initOrm} registered it under (its MikroORM `contextName`,
   * as `@mikro-orm/nestjs` names contexts), or a MikroORM instance whose EntityManager is a
   * `CoasterEntityManager` (such as the one NestJS injects), registered or not.
   * Default: `'default'`, the ORM of `initOrm(options)` when the options give no `contextName`.
   */
  orm?: OrmReference;
  /**
   * Isolation level of the session's transaction, as MikroORM's `IsolationLevel`
   * (PostgreSQL emits `start transaction isolation level ...`, MySQL and MariaDB `set transaction isolation
   * level ...` before `begin`).
   * Default: the database's own (READ COMMITTED on PostgreSQL, REPEATABLE READ on MySQL and MariaDB; SQLite
   * transactions are always serializable).
   */
  isolationLevel?: IsolationLevel;
  /**
   * Starts the transaction READ ONLY, so the database refuses writes (PostgreSQL: `start transaction
   * read only`; MySQL and MariaDB: `set transaction read only`, or `set transaction isolation level ..., read
   * only` with an isolation level, error 1792 on a write). SQLite has no read-only transactions and ignores it.
   * Default: `false`.
   */
  readOnly?: boolean;
  /**
   * How many times to re-run the whole callback, in a new transaction and a new fork, after it failed with
   * a serialization failure or a deadlock (SQLSTATE 40001 or 40P01, MySQL's and MariaDB's 1213, which MikroORM
   * raises as `DeadlockException`, from a statement or from the COMMIT), MariaDB's "record has changed since last
   * read" (1020), a {@link TransactionRetryError}, a {@link TransactionRolledBackError}, or, on SQLite, a busy
   * database (SQLITE_BUSY, which MikroORM raises as `LockWaitTimeoutException`: another connection held the
   * write lock for longer than the busy timeout). No other error is ever retried: not a lock wait timeout on a
   * server (PostgreSQL's 55P03, MySQL's and MariaDB's 1205, which fail the statement only), and never a
   * {@link CommitOutcomeUnknownError}: the work may have committed.
   * Default: `0` (no retry).
   */
  retries?: number;
  /**
   * Milliseconds to wait before the first retry; each further retry waits twice as long as the one
   * before, with random jitter of up to half the delay so that colliding sessions drift apart.
   * Default: `20`.
   */
  retryDelay?: number;
}

/**
 * A managed session's work: receives the session's EntityManager, resolves to the session's result.
 *
 * @example
 * ```ts
 * const countUsers: SessionCallback<number> = em => em.count(User);
 * const users = await managedSession(countUsers);
 * ```
 */
export type SessionCallback<T> = (em: CoasterEntityManager) => T | Promise<T>;

const DEFAULT_RETRY_DELAY = 20;

/**
 * Runs `fn` in a managed session, a port of db_manager's `ManagedSession` with the async context in
 * place of the thread: a fresh fork of an ORM of {@link initOrm} (a `CoasterEntityManager`) inside a
 * transaction (`em.transactional`). The ORM is `options.orm`: a name `initOrm` registered, or an ORM;
 * by default the one named `'default'`.
 *
 * - On success the fork is flushed, the transaction commits, the {@link onCommit} callbacks run and the
 *   promise resolves to `fn`'s result.
 * - On error the transaction rolls back and the promise rejects with the very error `fn` threw. If the
 *   rollback fails too (the connection was lost), its error is attached to that one (`cleanupErrorsOf`).
 * - If the COMMIT fails without an answer from the database (the connection was lost during it), whether
 *   the transaction committed is unknown: the promise rejects with {@link CommitOutcomeUnknownError}, the
 *   driver's error as its `cause`; it is never retried and no `onCommit` callback runs. A COMMIT the database
 *   refused (a deferred constraint, a serialization failure) rolled back: the promise rejects with its error.
 * - Either way the fork is cleared and its connection goes back to the pool.
 * - Inside `fn`, the global `getOrm().em` (MikroORM's `TransactionContext`) and
 *   `RequestContext.getEntityManager()` resolve to the session, so helpers need no `em` argument.
 * - Called inside a `RequestContext` (a framework's per-request EntityManager), it joins it: the transaction
 *   is one of the request's EntityManager (`em.transactional`), so entities the request loaded before and the
 *   session changes are written, and what the session loads stays in the request's identity map. On a
 *   rollback, the request's loaded entities are reloaded from the database (`em.refresh`), so none keeps
 *   what was rolled back; the request's EntityManager is never cleared.
 * - Called inside another managed session of the same ORM, it runs in a savepoint of it
 *   (`TransactionPropagation.NESTED`): a failure rolls back only the nested work, and the outer session goes
 *   on if the caller catches it. Except on MySQL and MariaDB after a deadlock (1213) or a record changed since
 *   the snapshot (1020), which roll back the whole transaction: the outer session then rejects with
 *   {@link TransactionRolledBackError} instead of committing (retried by `retries`). Inside a session of another ORM, it is an outermost session of its own ORM:
 *   its own transaction, committed (and its {@link onCommit} callbacks run) when it ends.
 *
 * @example
 * ```ts
 * const user = await managedSession(async em => {
 *   const user = em.create(User, { email, name });
 *   await addToNewsletter(user); // uses getOrm().em: the same session
 *   return user;
 * }, { isolationLevel: IsolationLevel.SERIALIZABLE, retries: 3 });
 * ```
 * @throws {ManagedSessionError} before {@link initOrm} registered the ORM named by `options.orm`, or when the
 *   ORM given there is not a `CoasterEntityManager` one; inside a transaction that `em.transactional()`
 *   opened outside any managed session; inside a `RequestContext` of another ORM under the same name; from
 *   work that outlived its session; when a nested session is given transaction options; inside a session of
 *   another ORM that itself runs inside a session of this ORM; when `retries` is not a whole number >= 0.
 * @throws {CommitOutcomeUnknownError} when the COMMIT failed without the database's answer (a lost connection),
 *   so whether the session's work committed is unknown.
 * @throws {TransactionRolledBackError} on MySQL and MariaDB, when a nested level's failure made the database roll
 *   back the whole transaction, and the retries (if any) are used up.
 */
export async function managedSession<T>(fn: SessionCallback<T>, options: ManagedSessionOptions = {}): Promise<T> {
  const orm = resolveOrm('managedSession()', options.orm);
  if (CommitCallbacks.current(orm.config)) {
    return nestedSession(orm, fn, options);
  }
  if (orm.em.isInTransaction()) {
    throw ManagedSessionError.insideUnmanagedTransaction();
  }
  const { retries = 0, retryDelay = DEFAULT_RETRY_DELAY } = options;
  if (!Number.isInteger(retries) || retries < 0) {
    throw ManagedSessionError.invalidRetries(retries);
  }
  const requestEm = surroundingRequest(orm);
  for (let attempt = 0; ; attempt++) {
    const level = new CommitCallbacks(orm.config);
    let result: T;
    try {
      result = requestEm
        ? await joinedSession(requestEm, level, fn, options)
        : await outermostSession(orm, level, fn, options);
    } catch (error) {
      if (!isRetryable(error) || attempt >= retries) {
        throw error;
      }
      await sleep(retryDelay * 2 ** attempt * (1 + Math.random() / 2));
      continue;
    }
    await level.run();
    return result;
  }
}

/** The SQLSTATEs of a serialization failure (40001, also MySQL's and MariaDB's deadlock 1213) and a deadlock (40P01). */
const SERIALIZATION_FAILURES = new Set(['40001', '40P01']);

/** MySQL's and MariaDB's ER_CHECKREAD (1020, "Record has changed since last read"): InnoDB's snapshot isolation refused a write, the whole transaction rolled back. */
const ER_CHECKREAD = 1020;

/**
 * Whether a failed attempt's whole transaction was rolled back for a reason that running it again can
 * cure: a serialization failure or deadlock, a row hidden by the snapshot, a record changed since the snapshot
 * (MariaDB's 1020, which MikroORM raises as a plain `DriverException`), a transaction the database rolled back
 * under a nested level ({@link TransactionRolledBackError}), or SQLite's write lock held elsewhere for longer
 * than the busy timeout (SQLITE_BUSY, or better-sqlite3's extended codes such as SQLITE_BUSY_SNAPSHOT).
 * MikroORM raises these as `DeadlockException` and `LockWaitTimeoutException` from a statement, but passes the
 * driver's error on unconverted from COMMIT (a SERIALIZABLE transaction's 40001 comes there), hence the SQLSTATE
 * and the codes. A lock wait timeout on a server (PostgreSQL's lock_timeout 55P03, MySQL's and MariaDB's 1205)
 * is not retried: it fails the statement only, the transaction is still there, and the caller decides.
 */
function isRetryable(error: unknown): boolean {
  return (
    error instanceof DeadlockException ||
    error instanceof TransactionRetryError ||
    error instanceof TransactionRolledBackError ||
    SERIALIZATION_FAILURES.has(sqlStateOf(error) ?? '') ||
    (error instanceof Error && 'errno' in error && error.errno === ER_CHECKREAD) ||
    (error instanceof Error && 'code' in error && String(error.code).startsWith('SQLITE_BUSY'))
  );
}

/**
 * Whether a COMMIT on `platform` that failed with `error` leaves the transaction's outcome unknown: the
 * server sent no SQLSTATE (the connection failed before its answer), or one of class 08 (connection exception)
 * or 57 (operator intervention: the backend was terminated, the server is shutting down), which end the
 * session whatever became of the COMMIT. Any other answer refused the COMMIT, so the transaction rolled back.
 * SQLite commits in the process: its outcome is always known.
 */
function commitOutcomeUnknown(error: unknown, platform: Platform): boolean {
  if (dialectOf(platform) === 'sqlite') {
    return false;
  }
  const state = sqlStateOf(error);
  return state === undefined || state.startsWith('08') || state.startsWith('57');
}

/**
 * The EntityManager of the `RequestContext` the caller runs in (a framework's per-request fork, such as
 * NestJS's or an Express middleware's), if any.
 * @throws {ManagedSessionError} when that context holds an EntityManager of another ORM under the same name.
 */
function surroundingRequest(orm: CoasterOrm): CoasterEntityManager | undefined {
  const em = RequestContext.getEntityManager(orm.em.name);
  if (em && em.config !== orm.config) {
    throw ManagedSessionError.requestContextOfOtherOrm(orm.em.name);
  }
  return em as CoasterEntityManager | undefined;
}

/**
 * Runs `fn` as the session level `level`, in a transaction of `em` with the session's options: MikroORM's
 * `em.transactional`, which hands `fn` a fork holding `em`'s entities and merges what it loaded back on
 * commit. `onFork` receives that fork.
 * @throws {CommitOutcomeUnknownError} when the COMMIT failed without the database's answer.
 */
async function sessionTransaction<T>(
  em: CoasterEntityManager,
  level: CommitCallbacks,
  fn: SessionCallback<T>,
  { isolationLevel, readOnly }: ManagedSessionOptions,
  onFork: (fork: CoasterEntityManager) => void = () => undefined,
): Promise<T> {
  let end: TransactionEnd | undefined;
  try {
    return await CommitCallbacks.within(level, () =>
      em.transactional(
        fork => {
          end = TransactionEnd.of(fork);
          onFork(fork);
          return fn(fork);
        },
        { isolationLevel, readOnly },
      ),
    );
  } catch (error) {
    if (end?.failedWith(error) && commitOutcomeUnknown(error, em.getPlatform())) {
      throw CommitOutcomeUnknownError.duringCommit(error);
    }
    throw error;
  }
}

/** One attempt of an outermost session outside any request context: a request-context fork of its own, its transaction, and the clean-up. */
function outermostSession<T>(orm: CoasterOrm, level: CommitCallbacks, fn: SessionCallback<T>, options: ManagedSessionOptions): Promise<T> {
  return RequestContext.create(orm.em, async () => {
    const em = RequestContext.getEntityManager(orm.em.name) as CoasterEntityManager;
    let transactionEm: CoasterEntityManager | undefined;
    try {
      return await sessionTransaction(em, level, fn, options, fork => (transactionEm = fork));
    } finally {
      transactionEm?.clear();
      em.clear();
    }
  });
}

/**
 * One attempt of an outermost session inside a request context: a transaction of the request's
 * EntityManager, so entities the request loaded before are written when the session changes them, and
 * those the session loads stay with the request. After a rollback, the request's entities are reloaded; if
 * that fails (the database is gone), the attempt's error is rethrown with the reload's attached.
 */
async function joinedSession<T>(
  em: CoasterEntityManager,
  level: CommitCallbacks,
  fn: SessionCallback<T>,
  options: ManagedSessionOptions,
): Promise<T> {
  try {
    return await sessionTransaction(em, level, fn, options);
  } catch (error) {
    await reloadAfterRollback(em).catch((reloadError: unknown) => attachCleanupError(error, reloadError));
    throw error;
  }
}

/**
 * Reloads every loaded entity of `em` from the database with the collections it had loaded (MikroORM's
 * `em.refresh`), after a rollback: what the failed attempt changed on the instances the request holds
 * (flushed and rolled back, or never flushed) is gone, so a later flush of the request cannot write it and
 * a retry starts from the committed rows. An entity whose row is gone is detached, as `em.refresh` does.
 */
async function reloadAfterRollback(em: CoasterEntityManager): Promise<void> {
  for (const entity of em.getUnitOfWork(false).getIdentityMap().values()) {
    if (!wrap(entity).isInitialized()) {
      continue;
    }
    const meta = em.getMetadata().get<object>(entity.constructor.name);
    const populate = meta.relations
      .filter(prop => prop.kind === ReferenceKind.ONE_TO_MANY || prop.kind === ReferenceKind.MANY_TO_MANY)
      .filter(prop => {
        const collection: unknown = Reflect.get(entity, prop.name);
        return collection instanceof Collection && collection.isInitialized();
      })
      .map(prop => prop.name);
    await em.refresh(entity, { populate });
  }
}

/**
 * A session inside another of the same ORM: a savepoint of it (onCommit levels are kept by
 * `CoasterEntityManager.transactional`). A session of another ORM may run in between (its own transaction,
 * not nested in this one), but then MikroORM's `TransactionContext` holds that ORM's transaction, not the
 * outer session's, which cannot be reached.
 */
async function nestedSession<T>(orm: CoasterOrm, fn: SessionCallback<T>, options: ManagedSessionOptions): Promise<T> {
  const given = (Object.keys(options) as (keyof ManagedSessionOptions)[]).filter(
    name => name !== 'orm' && options[name] !== undefined,
  );
  if (given.length > 0) {
    throw ManagedSessionError.nestedSessionOptions(given);
  }
  if (!TransactionContext.getEntityManager(orm.em.name)) {
    throw ManagedSessionError.sessionHiddenByOtherOrm(orm.em.name, CommitCallbacks.current()!.config.get('contextName'));
  }
  return orm.em.transactional(fn, { propagation: TransactionPropagation.NESTED });
}
