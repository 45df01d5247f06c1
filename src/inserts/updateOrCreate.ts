import {
  DriverException,
  IsolationLevel,
  LockMode,
  Reference,
  ReferenceKind,
  TransactionPropagation,
  Utils,
  wrap,
  type ChangeSet,
  type Dictionary,
  type EntityData,
  type EntityDictionary,
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
import { insertPlainly, isHiddenConflict, registerInserted, run as sendStatements } from './fastInsert.js';
import { updateFlushReason } from './insertPath.js';
import { createdFlag, insertStatement, insertUnlessFoundStatement, plainColumn, updateReturningStatement, valueKind, type Statement } from './statements.js';
import { checkUniqueWhere } from './uniqueWhere.js';

const METHOD = 'updateOrCreate';

/** PostgreSQL's SQLSTATE for a scalar subquery that returned several rows, which the one statement's guard raises. */
const CARDINALITY_VIOLATION = '21000';

/**
 * How many times a call looks for the row with its locking read, at most. A second look follows only when the
 * insert found a row that the first locking read had not (a concurrent insert committed in between); a
 * row that a plain read finds twice and the locking read never is one this transaction's snapshot still
 * shows after its deletion (or one deleted and inserted over and over), and a third look could not help.
 */
const LOOKS = 2;

/**
 * `CoasterEntityManager.updateOrCreate`: locks the row `where` matches and updates it with `update`, or
 * inserts `where` + `update` + `create` race-safely (as `getOrCreate` does). `em` is the EntityManager of the
 * current context (its pending changes are flushed first, outside the call's transaction or savepoint).
 *
 * On PostgreSQL the common case is one statement ({@link OneStatement}): the UPDATE, which locks the row it updates,
 * and the insert only when it updated nothing, autocommitted outside a transaction, in a savepoint inside one.
 * Where that statement cannot do what a flush would (see {@link OneStatement.prepare}), and always on SQLite and
 * MariaDB, the call locks and flushes, in a READ COMMITTED transaction of its own (on PostgreSQL and MariaDB; SQLite
 * has one isolation level) or in a savepoint of the caller's, as follows.
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
  // as failsafeAdd does: the call's transaction or savepoint holds its own work only (a flush of nothing is skipped)
  if (!em.nothingToFlush()) {
    await em.flush();
  }
  const values = { ...where, ...update, ...create } as EntityData<T>;
  const statement = await OneStatement.prepare(em, meta, where, update, values, options);
  if (statement) {
    return statement.run();
  }
  // only on the MySQL family under REPEATABLE READ (in a caller's transaction) can a plain read see a row that the
  // locking read does not (one deleted since the snapshot): getOrCreate's plain select finds it, and the call
  // throws TransactionRetryError instead of inserting a row the snapshot already shows
  const plainReadToo = dialectOf(em.getPlatform()) === 'mysql' && em.isInTransaction();
  const looks = new Looks(em, meta, where, update, values, options, plainReadToo);
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
 * The one statement of `updateOrCreate` on PostgreSQL: `update ... returning *` as the CTE `found`, and the insert of
 * the new row only when it updated none (see {@link insertUnlessFoundStatement}), in `savepoint failsafe_add; ...;
 * release savepoint failsafe_add` inside a transaction (unless `options.savepoint` is `false`), autocommitted outside.
 * The UPDATE locks the row it updates, as the locking read does; a row inserted by a concurrent transaction that
 * has not committed is not seen by the update, and the insert waits for it, then does nothing: the statement returns
 * no row and is sent once more, when the update finds the committed row. Returning no row again (the insert met a row
 * that `where` does not match: another unique key), the row is inserted without ON CONFLICT, so that the database
 * names the violated constraint (as `getOrCreate`'s statement does).
 */
class OneStatement<T extends object> {
  private constructor(
    private readonly em: CoasterEntityManager,
    private readonly meta: EntityMetadata<T>,
    private readonly where: EntityData<T>,
    private readonly candidate: T,
    private readonly changeSet: ChangeSet<T>,
    private readonly statement: Statement,
    private readonly savepoint: boolean,
  ) {}

  /**
   * The statement for this call, its new row's entity created and its insert prepared (`onCreate` values, validation);
   * `undefined` when the call must lock and flush instead: off PostgreSQL, with an empty `update`, an entity whose
   * update needs a flush
   * ({@link updateFlushReason}) or whose row `getOrCreate`'s statement cannot insert (`preparedCandidate`), and
   * `update` values the statement cannot bind as they are ({@link boundValues}).
   */
  static async prepare<T extends object>(
    em: CoasterEntityManager,
    meta: EntityMetadata<T>,
    where: EntityData<T>,
    update: EntityData<T>,
    values: EntityData<T>,
    options: FailsafeAddOptions,
  ): Promise<OneStatement<T> | undefined> {
    if (dialectOf(em.getPlatform()) !== 'postgresql' || Utils.isEmpty(update)) {
      return undefined;
    }
    const set = boundValues(meta, update);
    if (!set || updateFlushReason(em, meta, Object.keys(update)) !== undefined) {
      return undefined;
    }
    const prepared = await em.preparedCandidate(meta, values);
    if (!prepared) {
      return undefined;
    }
    const { candidate, changeSet } = prepared;
    const schema = wrap(candidate, true).getSchema();
    // what a flush's onUpdate sets when it writes something (updateFlushReason: none takes the entity)
    const stamps = Object.fromEntries(meta.props.filter(prop => prop.onUpdate && !(prop.name in update)).map(prop => [prop.name, prop.onUpdate!(candidate, em)]));
    const updated = await updateReturningStatement(em, meta, where as FilterQuery<T>, set, stamps, schema);
    const statement = insertUnlessFoundStatement(meta, insertStatement(em, meta, changeSet.payload, schema, true), updated, true);
    return new OneStatement(em, meta, where, candidate, changeSet, statement, em.isInTransaction() && options.savepoint !== false);
  }

  /** Sends the statement (twice at most), then the plain insert if needed; see the class comment. */
  async run(): Promise<FindOrCreateResult<T>> {
    try {
      for (let look = 0; look < LOOKS; look++) {
        const [rows] = await sendStatements(this.em, [this.statement], this.savepoint);
        const result = rows.length > 0 ? this.result(rows) : undefined;
        if (result) {
          return result;
        }
      }
      const schema = wrap(this.candidate, true).getSchema();
      return { entity: await insertPlainly(this.em, this.meta, this.candidate, this.changeSet, schema, 'postgresql'), created: true };
    } catch (error) {
      if (isHiddenConflict(error) && this.savepoint) {
        // under REPEATABLE READ, a row committed after the snapshot: TransactionRetryError (or the conflict itself)
        await this.em.loadExisting(this.meta, this.candidate, this.where as FilterQuery<T>, error);
      }
      this.em.forget(this.meta, this.candidate);
      if (error instanceof DriverException && error.code === CARDINALITY_VIOLATION) {
        // the UPDATE matched several rows: the unique key `where` covers is declared in the entity but missing in
        // the table, and the statement failed before anything was written (see insertUnlessFoundStatement)
        throw MultipleResultsError.onUpdate(METHOD, this.meta.className, this.where, error);
      }
      throw error;
    }
  }

  /** The entity of the row inserted (the candidate) or updated (the managed instance, refreshed). */
  private result(rows: Dictionary[]): FindOrCreateResult<T> {
    const flag = createdFlag(this.meta);
    const inserted = rows.find(row => row[flag]);
    const { [flag]: _, ...row } = inserted ?? rows[0];
    if (inserted) {
      return { entity: registerInserted(this.em, this.meta, this.candidate, this.changeSet, row), created: true };
    }
    this.em.forget(this.meta, this.candidate);
    const data = this.em.getDriver().mapResult(row as EntityDictionary<T>, this.meta)!;
    const schema = wrap(this.candidate, true).getSchema();
    const entity = this.em.getEntityFactory().create<T>(this.meta.className, data, { merge: true, refresh: true, schema, convertCustomTypes: true });
    return { entity, created: false };
  }
}

/**
 * The values of `update` as the statement binds them, in database form: the value of a plain column
 * ({@link plainColumn}), a to-one relation's as its managed entity's primary key. `undefined` when one is not
 * (a custom type, an embeddable, an entity not yet inserted, an object), is `null` for a property that may not hold
 * it (MikroORM's assign refuses it) or has an `onUpdate` (a flush would overwrite it): the flush handles those.
 */
function boundValues(meta: EntityMetadata, update: Dictionary): Dictionary | undefined {
  const bound: Dictionary = {};
  for (const [key, given] of Object.entries(update)) {
    const prop = meta.properties[key] as EntityProperty;
    let value: unknown = Reference.unwrapReference(given as object);
    if (prop.kind !== ReferenceKind.SCALAR && Utils.isEntity(value)) {
      const wrapped = wrap(value, true);
      value = wrapped.isManaged() ? wrapped.getPrimaryKey() : undefined;
    }
    const refused = value === null ? !prop.nullable : valueKind(value) === undefined;
    if (refused || !plainColumn(prop) || prop.persist === false || prop.onUpdate) {
      return undefined;
    }
    bound[key] = value;
  }
  return bound;
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
