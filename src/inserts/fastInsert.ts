import {
  ChangeSetComputer,
  DriverException,
  EventType,
  Utils,
  wrap,
  type ChangeSet,
  type Dictionary,
  type EntityData,
  type EntityDictionary,
  type EntityMetadata,
  type FilterQuery,
} from '@mikro-orm/core';
import type { SqlEntityManager } from '@mikro-orm/knex';
import { attachCleanupError } from '../shared/errors.js';
import { postgresRoutine, registerManaged } from '../shared/internals.js';
import type { FailsafeAddOptions } from './failsafeAddOptions.js';
import type { FastPathDialect } from './insertPath.js';
import { MultipleResultsError } from './errors.js';
import { createdFlag, insertStatement, insertUnlessFoundStatement, selectStatement, type Statement } from './statements.js';

/**
 * What `getOrCreate` hands {@link fastInsert} on PostgreSQL to insert its candidate only when its `filters` find no
 * row, in the same statement (see {@link insertUnlessFoundStatement}).
 */
export interface UnlessFound<T extends object> {
  /** The method called (`getOrCreate`, `findOrCreate`), named by the {@link MultipleResultsError} of several rows found. */
  method: string;
  /** The candidate's insert, prepared by {@link prepareInsert} before any SQL. */
  changeSet: ChangeSet<T>;
}

/** The savepoint the fast path opens inside a transaction; always released before it returns. */
const SAVEPOINT = 'failsafe_add';

/**
 * Inserts a new, unmanaged `entity` with `insert ... on conflict do nothing returning *` (MariaDB:
 * `insert ... returning *`), leaving it as a flush would: `onCreate` values set, validated, `beforeCreate`
 * hooks fired, managed with every column the database returned, its snapshot taken (a later flush sends
 * nothing). Entities with `afterCreate`
 * listeners never come here ({@link insertPath}): their hook's error must roll the insert back. Anything
 * that throws before the insert (an `onCreate`, a `beforeCreate` hook, validation) throws before any SQL.
 *
 * On PostgreSQL, the insert and the select of `filters` (`limit 2`) go as one string, one round trip;
 * inside a transaction wrapped in `savepoint failsafe_add; ...; release savepoint failsafe_add` unless
 * `options.savepoint` is `false`. A duplicate raises no error on the server. On SQLite the insert goes
 * alone (a failed statement leaves the transaction usable there), the select only after a conflict.
 * On MariaDB (10.5 or later: {@link insertPath} asks the server) the insert is `insert ... returning *`
 * alone, without ON CONFLICT (which the MySQL family does not have; `insert ignore` would hide other errors
 * too) and without a savepoint: a duplicate is the server's 1062, which rolls back that statement only, and
 * then the select of `filters` is sent. If that does not find exactly one row (or there are no `filters`),
 * the 1062 propagates as MikroORM's `UniqueConstraintViolationException`, for `failsafeAdd` to handle as
 * on the savepoint path (resolve to `undefined`, tell a row a snapshot hides, or rethrow).
 *
 * Resolves to `entity` when it was inserted, to the managed row that `filters` match when it was a
 * duplicate, to `undefined` for a duplicate without `filters` (PostgreSQL, SQLite). When `filters` match no row or
 * several there, the same row is inserted again without ON CONFLICT, so that the database names the violated
 * constraint: that `UniqueConstraintViolationException` propagates for the caller's recovery (or the
 * row is inserted, if the conflicting one went away meanwhile). Errors propagate as MikroORM's
 * exceptions, the savepoint rolled back first (if that fails too, its error is attached to theirs: see
 * `cleanupErrorsOf`); {@link isHiddenConflict} tells the one a snapshot causes.
 *
 * With `unlessFound` (`getOrCreate` on PostgreSQL, with `filters`), the insert runs only when `filters` find no row,
 * in the same statement ({@link insertUnlessFoundStatement}, in the savepoint as above): one found row resolves as a
 * duplicate does, without taking a sequence value; several throw {@link MultipleResultsError} (nothing inserted).
 * When the statement neither finds nor inserts a row (its ON CONFLICT met a row committed after its snapshot, or by
 * a transaction it waited for), the select of `filters` is sent next, and resolves as after a duplicate above.
 *
 * @example
 * ```ts
 * const row = await fastInsert(em, meta, tag, { name: 'news' }, 'postgresql', {});
 * // savepoint failsafe_add; insert into "tag" ("name") values ('news') on conflict do nothing returning *;
 * //   select "t0".* from "tag" as "t0" where "t0"."name" = 'news' limit 2; release savepoint failsafe_add
 * ```
 */
export async function fastInsert<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  entity: T,
  filters: FilterQuery<T> | undefined,
  dialect: FastPathDialect,
  options: FailsafeAddOptions,
  unlessFound?: UnlessFound<T>,
): Promise<T | undefined> {
  const changeSet = unlessFound?.changeSet ?? (await prepareInsert(em, meta, entity));
  const schema = wrap(entity, true).getSchema();
  const mysql = dialect === 'mysql';
  // the MySQL family's ON CONFLICT is `insert ignore`, which hides other errors too: a 1062 is the duplicate there
  const insert = insertStatement(em, meta, changeSet.payload, schema, !mysql);
  const select = filters === undefined ? undefined : await selectStatement(em, meta, filters, schema);
  const savepoint = dialect === 'postgresql' && em.isInTransaction() && options.savepoint !== false;

  let inserted: Dictionary[] = [];
  let matched: Dictionary[] | undefined;
  if (dialect === 'postgresql' && unlessFound !== undefined && select) {
    const [rows] = await run(em, [insertUnlessFoundStatement(meta, insert, select)], savepoint);
    const found: Dictionary[] = [];
    for (const { [createdFlag(meta)]: created, ...row } of rows) {
      (created ? inserted : found).push(row);
    }
    if (found.length > 1) {
      found.forEach(row => merged(em, meta, row, schema)); // as em.find leaves them
      throw MultipleResultsError.onFind(unlessFound.method, meta.className, filters, found.length);
    }
    // neither found nor inserted: the insert met a row committed after the statement's snapshot
    matched = rows.length > 0 ? found : (await run(em, [select], false))[0];
  } else if (dialect === 'postgresql') {
    [inserted, matched] = await run(em, select ? [insert, select] : [insert], savepoint);
  } else if (mysql) {
    [inserted, matched] = await insertOrSelect(em, insert, select);
  } else {
    [inserted] = await run(em, [insert], false);
    matched = select && inserted.length === 0 ? (await run(em, [select], false))[0] : undefined;
  }
  if (inserted.length > 0) {
    return registerInserted(em, meta, entity, changeSet, inserted[0]);
  }
  if (!matched) {
    return undefined;
  }
  if (matched.length === 1) {
    return merged(em, meta, matched[0], schema);
  }
  return insertPlainly(em, meta, entity, changeSet, schema, dialect);
}

/** The entity of a found `row`, as em.find builds its results: the managed instance, if any, returned unchanged. */
function merged<T extends object>(em: SqlEntityManager, meta: EntityMetadata<T>, row: Dictionary, schema: string | undefined): T {
  const data = em.getDriver().mapResult(row as EntityDictionary<T>, meta)!;
  return em.getEntityFactory().create(meta.className, data, { merge: true, schema, convertCustomTypes: true });
}

/**
 * Whether `error` is PostgreSQL's 40001 from ON CONFLICT finding a conflicting row that the
 * transaction's REPEATABLE READ or SERIALIZABLE snapshot cannot see (raised by its executor routine
 * `ExecCheckTupleVisible`), as opposed to any other serialization failure, which is never recovered.
 *
 * @example
 * ```ts
 * if (isHiddenConflict(error)) return loadExisting(meta, entity, filters, error); // TransactionRetryError
 * ```
 */
export function isHiddenConflict(error: unknown): error is DriverException {
  return error instanceof DriverException && error.code === '40001' && postgresRoutine(error) === 'ExecCheckTupleVisible';
}

/**
 * A new, unmanaged entity of `meta` made from `values`, as `em.create(entityName, values, { persist: false })` makes
 * it (MikroORM's entity factory, `onInit` hooks fired), without the copy of its options `em.create` takes on every
 * call: the candidate of a row that `getOrCreate` or a batch may insert.
 *
 * @example
 * ```ts
 * const candidate = newEntity(em, meta, { name: 'news' }); // then prepareInsert(em, meta, candidate)
 * ```
 */
export function newEntity<T extends object>(em: SqlEntityManager, meta: EntityMetadata<T>, values: EntityData<T>): T {
  return em.getEntityFactory().create<T>(meta.className, values, { newEntity: true, normalizeAccessors: true, schema: em.schema });
}

/**
 * What a flush does to a new entity before its insert: `onCreate` values and validation (MikroORM's
 * own `ChangeSetComputer`), `beforeCreate` hooks with their changes merged into the payload (as the
 * unit of work's `runHooks` does), then the `validateRequired` check.
 */
export async function prepareInsert<T extends object>(em: SqlEntityManager, meta: EntityMetadata<T>, entity: T): Promise<ChangeSet<T>> {
  const computer = new ChangeSetComputer(em.getValidator(), new Set(), em.getMetadata(), em.getPlatform(), em.config, em);
  // never null: read-only entities take the savepoint path, and a new entity has no snapshot yet
  const changeSet = computer.computeChangeSet(entity)!;
  const events = em.getEventManager();
  if (events.hasListeners(EventType.beforeCreate, meta)) {
    const comparator = em.getComparator();
    const before = comparator.prepareEntity(entity);
    await events.dispatchEvent(EventType.beforeCreate, { entity, meta, em, changeSet });
    Object.assign(changeSet.payload, comparator.diffEntities(meta.className, before, comparator.prepareEntity(entity)));
  }
  if (em.config.get('validateRequired')) {
    em.getValidator().validateRequired(entity);
  }
  return changeSet;
}

/**
 * Sends `statements` as one string (the simple query protocol runs them in order and returns each
 * result; node-postgres uses it because MikroORM inlines the values), inside a savepoint if asked. If
 * one fails, the rest are skipped; the savepoint is then rolled back and released and the error, as
 * MikroORM's exception, rethrown, with the rollback's own error attached if that failed too (a lost
 * connection fails both: see `CleanupErrors`). Resolves to the rows of each statement.
 *
 * The string goes to the write connection's `execute` (logged like every query), as `em.execute` sends it
 * without its two layers of promises; the error is converted here, as `em.execute`'s driver converts it.
 */
export async function run(em: SqlEntityManager, statements: Statement[], savepoint: boolean): Promise<Dictionary[][]> {
  const all = savepoint
    ? [{ sql: `savepoint ${SAVEPOINT}`, params: [] }, ...statements, { sql: `release savepoint ${SAVEPOINT}`, params: [] }]
    : statements;
  try {
    const sql = all.length === 1 ? all[0].sql : all.map(s => s.sql).join('; ');
    const params = all.length === 1 ? [...all[0].params] : all.flatMap(s => s.params);
    const result = await em.getConnection('write').execute<Dictionary[]>(sql, params, 'all', em.getTransactionContext());
    const results = (all.length === 1 ? [result] : result) as Dictionary[][];
    return savepoint ? results.slice(1, -1) : results;
  } catch (thrown) {
    const error = em.getDriver().convertException(thrown as Error);
    if (savepoint) {
      await em
        .execute(`rollback to savepoint ${SAVEPOINT}; release savepoint ${SAVEPOINT}`, [], 'run')
        .catch((cleanupError: unknown) => attachCleanupError(error, cleanupError));
    }
    throw error;
  }
}

/** MariaDB's (and MySQL's) ER_DUP_ENTRY: the one error the fast path takes for a duplicate there. */
const ER_DUP_ENTRY = 1062;

/**
 * MariaDB: sends `insert` alone (a 1062 undoes that statement only, InnoDB's statement-level rollback, so no
 * savepoint), and after a 1062 the `select`; resolves to the rows of each (`[[], rows]` after a duplicate). When
 * the insert fails otherwise, or the select does not find exactly one row (or there is none), the insert's error
 * propagates as MikroORM's exception (a 1062 as `UniqueConstraintViolationException`), for `failsafeAdd` to
 * recover from as on the savepoint path, or to tell that a snapshot hid the row.
 *
 * The insert goes through the connection's `execute`, logged like every query, which hands the driver's error
 * over unconverted: MikroORM's exception is made only when the error propagates. Making it formats the stack
 * traces of both errors, which cost a duplicate more Node CPU than the select that follows it.
 */
async function insertOrSelect(em: SqlEntityManager, insert: Statement, select: Statement | undefined): Promise<[Dictionary[], Dictionary[] | undefined]> {
  try {
    return [await em.getConnection('write').execute<Dictionary[]>(insert.sql, [...insert.params], 'all', em.getTransactionContext()), undefined];
  } catch (error) {
    const matched = (error as { errno?: unknown }).errno === ER_DUP_ENTRY && select ? (await run(em, [select], false))[0] : undefined;
    if (matched?.length !== 1) {
      throw em.getDriver().convertException(error as Error);
    }
    return [[], matched];
  }
}

/**
 * Inserts the prepared row without ON CONFLICT (in a savepoint inside a PostgreSQL transaction), so
 * that a conflict the fast path could not resolve comes out as the database's own unique violation.
 */
export async function insertPlainly<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  entity: T,
  changeSet: ChangeSet<T>,
  schema: string | undefined,
  dialect: FastPathDialect,
): Promise<T> {
  // a savepoint even with `savepoint: false`: this insert is expected to fail
  const savepoint = dialect === 'postgresql' && em.isInTransaction();
  const [rows] = await run(em, [insertStatement(em, meta, changeSet.payload, schema, false)], savepoint);
  return registerInserted(em, meta, entity, changeSet, rows[0]);
}

/**
 * Makes the inserted entity managed as a flush leaves it: the returned columns hydrated, registered in
 * the identity map with a fresh snapshot (as `em.upsert` does), marked populated. No `afterCreate` to
 * fire: entities with such listeners take the savepoint path (see {@link insertPath}).
 */
export function registerInserted<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  entity: T,
  changeSet: ChangeSet<T>,
  row: Dictionary,
): T {
  const uow = em.getUnitOfWork(false);
  // MikroORM maps returned rows only where its platform sends RETURNING, and for em.upsert's row (its last
  // flag), as for MariaDB's `insert ... returning *` here; the payload it then converts is not used again
  uow.getChangeSetPersister().mapReturnedValues(entity, changeSet.payload, row, meta, !em.getPlatform().usesReturningStatement());
  registerManaged(uow, entity, em.getComparator().prepareEntity(entity));
  if (em.config.get('populateAfterFlush')) {
    // what the flush's (private) ChangeSetPersister.markAsPopulated does
    wrap(entity, true).populated();
    for (const prop of meta.relations) {
      const value = (entity as Dictionary)[prop.name];
      if (Utils.isEntity(value, true)) {
        wrap(value, true).populated();
      } else if (Utils.isCollection(value)) {
        value.populated();
      }
    }
  }
  changeSet.persisted = true;
  return entity;
}
