import {
  IsolationLevel,
  LockMode,
  ReferenceKind,
  TransactionPropagation,
  Utils,
  wrap,
  type EntityData,
  type EntityMetadata,
  type EntityName,
  type EntityProperty,
  type FilterQuery,
  type FromEntityType,
  type RequiredEntityData,
  type TransactionOptions,
} from '@mikro-orm/core';
import { dialectOf } from '../shared/dialect.js';
import { attachCleanupError } from '../shared/errors.js';
import { setTouched } from '../shared/internals.js';
import type { CoasterEntityManager, FindOrCreateResult } from './CoasterEntityManager.js';
import { checkCreatableWhere } from './creatableWhere.js';
import { CoasterUsageError, ManagedKeyConflictError, MultipleResultsError, TransactionRetryError } from './errors.js';
import type { FailsafeAddOptions } from './failsafeAddOptions.js';
import { checkUniqueWhere } from './uniqueWhere.js';

const METHOD = 'updateOrCreate';

/**
 * How many times a call looks for the row with its locking read, at most. A second look follows only when the
 * insert found a row that the first locking read had not (a concurrent insert committed in between); a
 * row that a plain read finds twice and the locking read never is one this transaction's snapshot still
 * shows after its deletion (or one deleted and inserted over and over), and a third look could not help.
 */
const LOOKS = 2;

/**
 * `CoasterEntityManager.updateOrCreate`: locks the row `where` matches and updates it with `update`, or
 * inserts `where` + `update` + `create` race-safely (as `getOrCreate` does), in a READ COMMITTED transaction of its
 * own (on PostgreSQL and MariaDB; SQLite has one isolation level) or in a savepoint of the caller's. `em` is
 * the EntityManager of the current context (its pending changes are flushed first, outside that
 * transaction or savepoint).
 *
 * Each look sends the locking read (`select ... for update`, `LockMode.PESSIMISTIC_WRITE`; SQLite has no
 * row locks and holds its database write lock instead, see docs/race-safe-inserts.md). A row found is updated by a
 * flush; none found, the new row is inserted by `failsafeAdd` with `where` as its filters (as `getOrCreate`
 * inserts, without `getOrCreate`'s own select; on the MySQL family in a caller's transaction, by `getOrCreate`,
 * whose plain read sees a row that the snapshot shows and the locking read does not). When that finds a row
 * after all (another caller inserted it after the locking read), it is not locked: outside a transaction the call commits
 * (nothing written: on MariaDB that also releases the shared lock its refused insert left on the row,
 * which would deadlock with the other losers' locking reads) and looks again in a new transaction, inside
 * one it looks again in the same savepoint. The second look finding nothing throws
 * {@link TransactionRetryError}.
 *
 * @example
 * ```ts
 * const { entity, created } = await updateOrCreate(em, Tag, { name: 'news' }, { color: 'red' }, undefined, {});
 * ```
 */
export async function updateOrCreate<T extends object>(
  em: CoasterEntityManager,
  entityName: EntityName<T>,
  where: EntityData<T>,
  update: EntityData<T>,
  create: EntityData<T> | undefined,
  options: FailsafeAddOptions,
): Promise<FindOrCreateResult<T>> {
  const meta = em.getMetadata().get<T>(Utils.className(entityName));
  checkCreatableWhere(METHOD, meta, where, update);
  checkCreatableWhere(METHOD, meta, where, create);
  checkValues(meta, where, update, 'update');
  checkValues(meta, where, create ?? {}, 'create');
  if (options.checkUnique !== false) {
    checkUniqueWhere(METHOD, meta, where);
  }
  // as failsafeAdd does: the call's transaction or savepoint holds its own work only
  await em.flush();
  // only on the MySQL family under REPEATABLE READ (in a caller's transaction) can a plain read see a row that the
  // locking read does not (one deleted since the snapshot): getOrCreate's plain select finds it, and the call
  // throws TransactionRetryError instead of inserting a row the snapshot already shows
  const plainReadToo = dialectOf(em.getPlatform()) === 'mysql' && em.isInTransaction();
  const looks = new Looks(em, meta, where, update, { ...where, ...update, ...create } as EntityData<T>, options, plainReadToo);
  try {
    if (em.isInTransaction()) {
      // `savepoint: false` runs in the caller's transaction as it is (REQUIRED: no savepoint, no fork)
      const propagation = options.savepoint === false ? TransactionPropagation.REQUIRED : TransactionPropagation.NESTED;
      return await em.transactional(async tx => (await looks.run(tx)) ?? looks.again(tx), { propagation });
    }
    const own: TransactionOptions = dialectOf(em.getPlatform()) === 'sqlite' ? {} : { isolationLevel: IsolationLevel.READ_COMMITTED };
    return (await em.transactional(tx => looks.run(tx), own)) ?? (await em.transactional(tx => looks.again(tx), own));
  } catch (error) {
    await looks.restore(error);
    throw error;
  }
}

/** The looks of one call, and the managed entity they updated in memory, to put back if the call fails. */
class Looks<T extends object> {
  /** The entity that `em` (the caller's EntityManager) managed before `update` was assigned to it. */
  private assigned?: T;

  constructor(
    private readonly em: CoasterEntityManager,
    private readonly meta: EntityMetadata<T>,
    private readonly where: EntityData<T>,
    private readonly update: EntityData<T>,
    private readonly values: EntityData<T>,
    private readonly options: FailsafeAddOptions,
    private readonly plainReadToo: boolean,
  ) {}

  /**
   * Locks the row and updates it, or inserts the new row. Resolves to `undefined` when the insert found a
   * row instead (created by a concurrent caller after the locking read), which is then not locked.
   */
  async run(tx: CoasterEntityManager): Promise<FindOrCreateResult<T> | undefined> {
    const rows: T[] = await tx.find<T>(this.meta.class, this.where as FilterQuery<T>, {
      lockMode: LockMode.PESSIMISTIC_WRITE,
      limit: 2,
      connectionType: 'write',
    });
    if (rows.length > 1) {
      throw MultipleResultsError.onFind(METHOD, this.meta.className, this.where, rows.length);
    }
    const [row] = rows;
    if (row) {
      const wrapped = wrap(row, true);
      const key = wrapped.getPrimaryKey();
      if (key != null && this.em.getUnitOfWork(false).getById<T>(this.meta.className, key, wrapped.getSchema()) === row) {
        this.assigned = row;
      }
      tx.assign(row, this.update as EntityData<FromEntityType<T>>);
      await tx.flush();
      // the row now holds what memory does; when `update` changed nothing the flush wrote nothing and left the
      // entity touched, which would make FlushMode.AUTO flush everything pending before the next query of it
      setTouched(row, false);
      return { entity: row, created: false };
    }
    if (this.plainReadToo) {
      const result = await tx.getOrCreate(this.meta.class, this.where, this.values, { ...this.options, checkUnique: false });
      return result.created ? result : undefined;
    }
    // as getOrCreate inserts, without its select: the locking read just found nothing
    const uow = tx.getUnitOfWork(false);
    const twin = uow.tryGetById<T>(this.meta.className, this.values as FilterQuery<T>, tx.schema, false);
    if (twin) {
      // em.create() would merge the new values into the managed entity with the same primary key
      throw ManagedKeyConflictError.managedTwin(METHOD, this.meta.className, wrap(twin, true).getPrimaryKey(), this.where);
    }
    const candidate = tx.create(this.meta.class, this.values as RequiredEntityData<T>, { persist: false });
    const entity = await tx.failsafeAdd(candidate, this.where as FilterQuery<T>, this.options);
    return entity === candidate ? { entity, created: true } : undefined;
  }

  /** The second look, after the first one's insert found a row; finding none again throws {@link TransactionRetryError}. */
  async again(tx: CoasterEntityManager): Promise<FindOrCreateResult<T>> {
    const result = await this.run(tx);
    if (!result) {
      throw TransactionRetryError.rowNotLockable(METHOD, this.meta.className, this.where, LOOKS);
    }
    return result;
  }

  /**
   * After a failed call, reloads the caller's managed entity that `update` was assigned to, so that it
   * holds the stored row again and a later flush does not write the refused update. If that fails too, its
   * error is attached to the call's.
   */
  async restore(error: unknown): Promise<void> {
    if (this.assigned) {
      await this.em.refresh(this.assigned).catch((cleanupError: unknown) => attachCleanupError(error, cleanupError));
    }
  }
}

/**
 * Refuses, before any SQL, what `update` or `create` cannot hold: a name that is no property of the entity
 * (MikroORM would set it on the instance and write nothing), a collection (the call writes the row's own
 * columns), and, in `update`, a primary key that `where` does not give (the update would move the row).
 */
function checkValues(meta: EntityMetadata, where: object, values: object, argument: 'update' | 'create'): void {
  for (const key of Object.keys(values)) {
    const prop = meta.properties[key] as EntityProperty | undefined;
    if (!prop) {
      throw CoasterUsageError.unknownPropertyInValues(METHOD, meta.className, argument, key);
    }
    if (prop.kind === ReferenceKind.ONE_TO_MANY || prop.kind === ReferenceKind.MANY_TO_MANY) {
      throw CoasterUsageError.collectionInValues(METHOD, argument, key);
    }
    if (argument === 'update' && prop.primary && !(key in where)) {
      throw CoasterUsageError.primaryKeyInUpdate(METHOD, meta.className, key);
    }
  }
}
