import {
  DeadlockException,
  DriverException,
  IsolationLevel,
  LockWaitTimeoutException,
  TransactionEventBroadcaster,
  UniqueConstraintViolationException,
  type ChangeSet,
  type Dictionary,
  type EntityData,
  type EntityMetadata,
  type FilterQuery,
} from '@mikro-orm/core';
import type { Knex, SqlEntityManager } from '@mikro-orm/knex';
import { dialectOf, type Dialect } from '../../shared/dialect.js';
import { attachCleanupError, cleanupErrorsOf } from '../../shared/errors.js';
import { CoasterUsageError, describe, TransactionRetryError } from '../errors.js';
import { isHiddenConflict, prepareInsert, registerInserted } from '../fastInsert.js';
import { flushReason, hasReturning } from '../insertPath.js';
import type { Statement } from '../statements.js';
import { TransactionLevel } from '../../sessions/transactionLevel.js';
import { columnKeys, keyString, type BatchKey } from './batchKey.js';
import { insertRowsStatements, selectByKeys } from './batchStatements.js';
import { DEFAULT_CHUNK_SIZE, MAX_BOUND_VALUES, type ManyOptions } from './manyOptions.js';

/**
 * One distinct key of a batch (or, for `failsafeAddMany` without a key, one entity), and what became of it.
 * Created with the caller's values; {@link resolveBatch} fills in `entity` and `created`.
 */
export interface Slot<T extends object> {
  /** The key's identity ({@link keyString} of the entity-form values), or the entity's position when there is no key. */
  key: string;
  /** The key properties' values in entity form, the filter that finds the row; `undefined` without a key. */
  where?: Dictionary;
  /** The input position that first gave this key: the one reported as `created`, and named in errors. */
  index: number;
  /** The new entity to insert, if the slot starts with one (`failsafeAddMany`); else made by {@link Batch.create}. */
  candidate?: T;
  /** The candidate's insert as a flush would compute it (`onCreate` values, `beforeCreate` hooks applied), once prepared. */
  changeSet?: ChangeSet<T>;
  /** The row the insert returned, registered once the call's transaction committed. */
  returned?: Dictionary;
  /** The managed entity of the row, once resolved. */
  entity?: T;
  /** Whether this call inserted the row; `undefined` while unresolved, or for a duplicate without a key. */
  created?: boolean;
}

/** What a batch call needs from its caller: the entity, its key, and the ways to make and insert one entity. */
export interface Batch<T extends object> {
  /** The EntityManager the call acts on (its context's), bound to the call's transaction while it runs. */
  em: SqlEntityManager;
  /** The entity's metadata. */
  meta: EntityMetadata<T>;
  /** `undefined` for `failsafeAddMany` without a key: entities are then inserted one by one, in input order. */
  key?: BatchKey<T>;
  /** The method, for messages. */
  method: string;
  /** How messages name an input position: `rows` or `entities`. */
  inputName: string;
  /** The caller's options. */
  options: ManyOptions<T>;
  /** The new entity of a slot that starts without one (`getOrCreateMany`). */
  create(slot: Slot<T>): T;
  /** The caller's source (row or entity) at an input position, for error messages. */
  source(index: number): unknown;
  /** `failsafeAdd` on the caller's EntityManager: the path of entities a multi-row insert cannot serve. */
  failsafeAdd(entity: T, filters: FilterQuery<T> | undefined): Promise<T | undefined>;
  /** Detaches an entity `failsafeAdd` inserted, when the call fails after it. */
  forget(entity: T): void;
}

/**
 * Attempts of a call that runs in a transaction of its own when a deadlock rolls that transaction back. Inserting in
 * key order rules deadlocks out on PostgreSQL, not on InnoDB, where a duplicate-key check leaves a shared next-key
 * lock that also covers the gap below the key, held to the end of the transaction.
 */
const DEADLOCK_ATTEMPTS = 5;

/** Insert-and-select rounds before a key that is neither inserted nor found is inserted without ON CONFLICT. */
const ROUNDS = 2;

/**
 * Thrown inside a call when the database answered for its keys with a row whose key is none of them exactly: the
 * database compares keys otherwise than JavaScript does (a case- or accent-insensitive collation, MariaDB's
 * default; PAD SPACE; `citext`; SQLite's `NOCASE`), or stored another value than the one given (a trigger; a lone
 * surrogate, stored as U+FFFD); or, on MariaDB, by a duplicate-key error that no row explains (`violation`: two
 * keys of the statement equal to the database, or another unique key). The call then resolves its keys one by one
 * with `failsafeAdd`, which finds a row by the database's own equality.
 */
class InexactKeys extends Error {
  constructor(readonly violation?: UniqueConstraintViolationException) {
    super('a row matched none of the keys exactly');
  }
}

/**
 * Resolves every slot: finds its row or inserts its entity, chunk by chunk in key order. First one select per
 * chunk finds the keys that exist, outside any transaction (a call whose keys all exist writes nothing, and
 * makes no entity it would not return); then the keys still missing are inserted in one transaction (a
 * savepoint inside the caller's transaction, none with `savepoint: false`; on MariaDB/MySQL a transaction of
 * its own runs under READ COMMITTED), in key order, so that overlapping batches take their locks in the same
 * order (which rules deadlocks out on PostgreSQL; on InnoDB a call in a transaction of its own retries one, see
 * {@link DEADLOCK_ATTEMPTS}).
 * Inserted entities are registered (managed, with their snapshot) once that transaction committed; on any error
 * nothing of the call is written and nothing new is managed (the rows it found stay managed, as a find leaves them).
 *
 * PostgreSQL and SQLite: `insert ... on conflict (key) do nothing returning *`, then one select of the keys it did
 * not return (inserted meanwhile by another transaction); a key neither inserted nor found (its row deleted
 * meanwhile, or hidden by a filter) gets one more round, then an insert without ON CONFLICT, so that the database
 * names the violation. MariaDB 10.5+: `insert ... returning *`; a duplicate-key error (another transaction
 * inserted one of the keys) undoes only that statement and the keys are selected again; a key that only a locking
 * read sees is hidden by the transaction's snapshot: {@link TransactionRetryError}. Entities a multi-row insert
 * cannot serve (see `flushReason`: afterCreate listeners, flush subscribers, versioning, ...) and other databases:
 * `failsafeAdd` for each missing key, in key order. So do the keys of a call once a row matched none of them
 * exactly ({@link InexactKeys}): after the first select at once; after an insert, once the call's transaction (or
 * savepoint) was rolled back, with new candidates (`failsafeAddMany` takes its entities again, their `beforeCreate`
 * hooks firing again); where nothing can be rolled back (`savepoint: false` inside a transaction, after the call
 * wrote rows), {@link CoasterUsageError.inexactKeys} or, for a duplicate-key error, that error; where the rollback
 * failed, that failure.
 */
export async function resolveBatch<T extends object>(batch: Batch<T>, slots: Slot<T>[]): Promise<void> {
  const { em, options } = batch;
  if (slots.length === 0) {
    return; // every key was resolved without SQL
  }
  const dialect = dialectOf(em.getPlatform());
  const returning = dialect === 'mysql' && (await hasReturning(em));
  const ordered = batch.key ? [...slots].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)) : slots;
  const size = chunkSize(batch);
  const chunks: Slot<T>[][] = [];
  for (let start = 0; start < ordered.length; start += size) {
    chunks.push(ordered.slice(start, start + size));
  }
  const candidatesGiven = slots.some(slot => slot.candidate !== undefined);
  let keyByKey = false;
  if (batch.key) {
    try {
      for (const chunk of chunks) {
        await selectRows(batch, chunk, false);
      }
    } catch (error) {
      if (!(error instanceof InexactKeys)) {
        throw error;
      }
      keyByKey = true;
    }
  }
  const missing = unresolved(ordered);
  const insertChunks = async (state: RunState<T>) => {
    let done = 0;
    for (const chunk of chunks) {
      await insertMissing(batch, dialect, returning, unresolved(chunk), state, keyByKey);
      done += chunk.length;
      options.progress?.(done, ordered.length);
    }
  };
  if (missing.length === 0) {
    return insertChunks({ inserted: [], viaFailsafeAdd: [] }); // nothing to insert: progress only
  }
  const ownTransaction = !em.isInTransaction();
  let state: RunState<T>;
  for (let attempt = 1; ; attempt++) {
    state = { inserted: [], viaFailsafeAdd: [] };
    try {
      await inTransaction(em, dialect, options.savepoint !== false, () => insertChunks(state));
      break;
    } catch (error) {
      for (const entity of state.viaFailsafeAdd) {
        batch.forget(entity);
      }
      if (error instanceof InexactKeys) {
        const [rollbackFailure, ...more] = cleanupErrorsOf(error);
        if (rollbackFailure !== undefined) {
          // the rollback failed: what the call wrote may not be undone, so it cannot start again; that failure
          // (or MariaDB's unexplained 1062, the rollback's failure attached) is the call's error
          if (!error.violation) {
            throw rollbackFailure instanceof DriverException ? rollbackFailure : em.getDriver().convertException(rollbackFailure as Error);
          }
          [rollbackFailure, ...more].forEach(failure => attachCleanupError(error.violation, failure));
          throw error.violation;
        }
        const rolledBack = ownTransaction || options.savepoint !== false;
        if (!rolledBack && (state.inserted.length > 0 || state.viaFailsafeAdd.length > 0)) {
          throw error.violation ?? CoasterUsageError.inexactKeys(batch.method, batch.meta.className);
        }
        // nothing of the call is left: start again key by key, with new candidates where the call makes them
        for (const slot of missing) {
          slot.entity = slot.created = slot.returned = slot.changeSet = undefined;
          slot.candidate = candidatesGiven ? slot.candidate : undefined;
        }
        keyByKey = true;
        continue;
      }
      if (error instanceof DeadlockException && ownTransaction && state.viaFailsafeAdd.length === 0 && attempt < DEADLOCK_ATTEMPTS) {
        // the whole transaction was rolled back, and was the call's own: start again, the rows of the
        // transactions that won now committed (candidates keep their prepared change sets)
        for (const slot of missing) {
          slot.entity = slot.created = slot.returned = undefined;
        }
        continue;
      }
      throw await explained(batch, dialect, state.failing, error);
    }
  }
  for (const slot of state.inserted) {
    registerInserted(em, batch.meta, slot.candidate!, slot.changeSet!, slot.returned!);
  }
}

/** What a call's chunks leave for after its transaction. */
interface RunState<T extends object> {
  /** Slots inserted by a multi-row insert, registered after the commit. */
  inserted: Slot<T>[];
  /** Entities `failsafeAdd` inserted (and registered at once), detached again if the call fails. */
  viaFailsafeAdd: T[];
  /** The slots of the statement being sent, named by the error if it fails. */
  failing?: Slot<T>[];
}

/**
 * Inserts the entities of a chunk's `pending` slots, the keys its select did not find (all of them without a
 * key), or finds the rows other transactions inserted meanwhile.
 */
async function insertMissing<T extends object>(
  batch: Batch<T>,
  dialect: Dialect,
  returning: boolean,
  pending: Slot<T>[],
  state: RunState<T>,
  keyByKey: boolean,
): Promise<void> {
  if (pending.length === 0) {
    return;
  }
  const multiRow = batch.key && !keyByKey && (dialect === 'postgresql' || dialect === 'sqlite' || returning);
  if (!multiRow || flushReason(batch.em, batch.meta, pending.map(slot => candidateOf(batch, slot))) !== undefined) {
    return oneByOne(batch, pending, state);
  }
  for (const slot of pending) {
    slot.changeSet ??= await prepareInsert(batch.em, batch.meta, slot.candidate!);
  }
  if (dialect === 'mysql') {
    return insertSelectingFirst(batch, pending, state);
  }
  let left = pending;
  for (let round = 0; round < ROUNDS && left.length > 0; round++) {
    await insertRows(batch, dialect, left, true, state);
    left = unresolved(left);
    if (left.length > 0) {
      await selectRows(batch, left, false);
      left = unresolved(left);
    }
  }
  if (left.length > 0) {
    await insertRows(batch, dialect, left, false, state);
  }
}

/**
 * MariaDB: inserts the keys a select did not find, selecting again after a duplicate-key error (1062, which
 * undoes only the statement): under READ COMMITTED the select sees the row another transaction committed; a key
 * that only a locking read (`lock in share mode`) sees is hidden by this transaction's snapshot.
 */
async function insertSelectingFirst<T extends object>(batch: Batch<T>, pending: Slot<T>[], state: RunState<T>): Promise<void> {
  let left = pending;
  for (let round = 0; left.length > 0; round++) {
    try {
      await insertRows(batch, 'mysql', left, false, state);
      return;
    } catch (error) {
      if (!(error instanceof UniqueConstraintViolationException) || round === ROUNDS) {
        throw error;
      }
      state.failing = undefined;
      if ((await selectRows(batch, left, false)) === 0) {
        if ((await selectRows(batch, left, true)) > 0) {
          throw TransactionRetryError.hiddenConflict(batch.meta.className, 'repeatable read', error);
        }
        throw new InexactKeys(error); // key by key, the database names the violation or finds the row
      }
      left = unresolved(left);
    }
  }
}

/** Inserts (or finds) each slot's entity with `failsafeAdd`, in the slots' order. */
async function oneByOne<T extends object>(batch: Batch<T>, slots: Slot<T>[], state: RunState<T>): Promise<void> {
  for (const slot of slots) {
    const candidate = candidateOf(batch, slot);
    state.failing = [slot];
    const entity = await batch.failsafeAdd(candidate, slot.where as FilterQuery<T> | undefined);
    state.failing = undefined;
    slot.entity = entity;
    slot.created = entity === candidate;
    if (slot.created) {
      state.viaFailsafeAdd.push(candidate);
    }
  }
}

/**
 * Sends the insert of `slots` (in their order) and marks the slots whose rows came back as created. With
 * `ignoreConflicts`, `on conflict (key) do nothing`: a key that exists is skipped without an error. SQLite gets
 * one statement per set of columns: its multi-row insert binds NULL, not the column's default, to a missing value.
 */
async function insertRows<T extends object>(batch: Batch<T>, dialect: Dialect, slots: Slot<T>[], ignoreConflicts: boolean, state: RunState<T>): Promise<void> {
  const groups = new Map<string, Slot<T>[]>();
  for (const slot of slots) {
    const columns = dialect === 'sqlite' ? Object.keys(slot.changeSet!.payload).sort().join() : '';
    const group = groups.get(columns);
    if (group) {
      group.push(slot);
    } else {
      groups.set(columns, [slot]);
    }
  }
  for (const group of groups.values()) {
    state.failing = group;
    const returned = await sendInsert(batch, dialect, group, ignoreConflicts);
    state.failing = undefined;
    const byKey = new Map(group.map(slot => [keyString(batch.key!, slot.changeSet!.payload), slot]));
    const byColumn = columnKeys(batch.key!);
    for (const row of returned) {
      const slot = byKey.get(
        byColumn ? keyString(batch.key!, row, true) : keyString(batch.key!, batch.em.getDriver().mapResult(row as EntityData<T>, batch.meta)!),
      );
      if (!slot) {
        throw new InexactKeys(); // a row stored under another key than the one given
      }
      slot.returned = row;
      slot.entity = slot.candidate;
      slot.created = true;
      state.inserted.push(slot);
    }
  }
}

/** The multi-row insert of `slots` (in their order), with `returning *`; resolves to the rows returned. */
async function sendInsert<T extends object>(batch: Batch<T>, dialect: Dialect, slots: Slot<T>[], ignoreConflicts: boolean): Promise<Dictionary[]> {
  const payloads = slots.map(slot => slot.changeSet!.payload as Dictionary);
  return executeAll(batch.em, insertRowsStatements(batch.em, batch.meta, batch.key!, payloads, ignoreConflicts, dialect));
}

/** Sends `statements` one after the other; resolves to all the rows they returned. */
async function executeAll(em: SqlEntityManager, statements: readonly Statement[]): Promise<Dictionary[]> {
  const rows: Dictionary[][] = [];
  for (const { sql, params } of statements) {
    rows.push(await em.execute<Dictionary[]>(sql, params as unknown[], 'all'));
  }
  return rows.flat();
}

/**
 * Selects the rows of `slots`' keys (the entity's enabled filters applied, on the primary), resolves the slots
 * they match to their managed entities (the one already in the identity map, unchanged, where there is one) and
 * resolves to how many it resolved. With `locking`, a locking read (`lock in share mode`) that only counts: it
 * sees rows committed after the transaction's snapshot, which a plain read of a REPEATABLE READ transaction hides.
 */
async function selectRows<T extends object>(batch: Batch<T>, slots: Slot<T>[], locking: boolean): Promise<number> {
  if (slots.length === 0) {
    return 0;
  }
  const { em, meta, key } = batch;
  const rows = await executeAll(em, await selectByKeys(em, meta, key!, slots.map(slot => slot.where!), locking));
  if (locking) {
    return rows.length;
  }
  const byKey = new Map(slots.map(slot => [slot.key, slot]));
  const driver = em.getDriver();
  const factory = em.getEntityFactory();
  let resolved = 0;
  for (const row of rows) {
    const data = driver.mapResult(row as EntityData<T>, meta)!;
    const slot = byKey.get(keyString(key!, data));
    if (!slot) {
      throw new InexactKeys(); // the database's equality matched the row to a key given otherwise
    }
    if (slot.created === undefined) {
      slot.entity = factory.create<T>(meta.className, data, { merge: true, schema: em.schema, convertCustomTypes: true });
      slot.created = false;
      resolved++;
    }
  }
  return resolved;
}

/** The slot's new entity, made on first use. */
function candidateOf<T extends object>(batch: Batch<T>, slot: Slot<T>): T {
  slot.candidate ??= batch.create(slot);
  return slot.candidate;
}

function unresolved<T extends object>(slots: Slot<T>[]): Slot<T>[] {
  return slots.filter(slot => slot.created === undefined);
}

/**
 * Rows per chunk: `chunkSize`, fewer if the entity's columns times the rows would bind more than
 * {@link MAX_BOUND_VALUES} values. (On SQLite, a chunk written value by value is sent as statements of 500 rows.)
 */
function chunkSize<T extends object>(batch: Batch<T>): number {
  const columns = batch.meta.props.reduce((sum, prop) => sum + (prop.fieldNames?.length ?? 0), 0);
  return Math.max(1, Math.min(batch.options.chunkSize ?? DEFAULT_CHUNK_SIZE, Math.floor(MAX_BOUND_VALUES / Math.max(1, columns))));
}

/**
 * Runs `fn` with `em` in a transaction: a savepoint inside the caller's (none with `savepoint` false), else a
 * transaction of its own, under READ COMMITTED on MariaDB/MySQL (whose default, REPEATABLE READ, would hide rows
 * that racing transactions commit). `em` itself is bound to it, not a fork, so that the entities it finds and
 * inserts are this EntityManager's, their unflushed changes untouched (`em.transactional` merges a fork's entities
 * back, taking their current values as loaded).
 */
async function inTransaction(em: SqlEntityManager, dialect: Dialect, savepoint: boolean, fn: () => Promise<void>): Promise<void> {
  const outer = em.getTransactionContext<Knex.Transaction>();
  if (outer && !savepoint) {
    return fn();
  }
  // watched as CoasterEntityManager.transactional watches its levels: a failed ROLLBACK attached to the error, and
  // on MariaDB a savepoint that lost the whole transaction (a deadlock) failing the caller's enclosing levels
  let level: TransactionLevel | undefined;
  try {
    await em.getConnection('write').transactional(
      async trx => {
        em.setTransactionContext(trx);
        try {
          level = TransactionLevel.start(em, outer);
          await fn();
          level.beforeCommit();
        } finally {
          if (outer) {
            em.setTransactionContext(outer);
          } else {
            em.resetTransactionContext();
          }
        }
      },
      {
        ctx: outer,
        isolationLevel: !outer && dialect === 'mysql' ? IsolationLevel.READ_COMMITTED : undefined,
        eventBroadcaster: new TransactionEventBroadcaster(em, undefined, { topLevelTransaction: !outer }),
      },
    );
  } catch (error) {
    throw level ? await level.failed(error) : error;
  }
}

/**
 * The error a failed call rejects with: a hidden conflict (PostgreSQL's 40001 from ON CONFLICT) as
 * {@link TransactionRetryError}; a statement's other error (a foreign key, NOT NULL or CHECK violation, a value
 * too long) as it is, its message prefixed with the input position and values of the row the database refused
 * (for a multi-row insert, found by inserting halves of it again in savepoints that are rolled back), unless no
 * single row fails alone, or the call ran in the caller's transaction without a savepoint (`savepoint: false`).
 */
async function explained<T extends object>(
  batch: Batch<T>,
  dialect: Dialect,
  failing: Slot<T>[] | undefined,
  error: unknown,
): Promise<unknown> {
  // with `savepoint: false` in a transaction, PostgreSQL's transaction is aborted: no statement can run
  const aborted = batch.options.savepoint === false && batch.em.isInTransaction();
  if (isHiddenConflict(error)) {
    const [row] = aborted
      ? [{ level: 'repeatable read or serializable' }]
      : await batch.em.execute<{ level: string }[]>(`select current_setting('transaction_isolation') as level`);
    return TransactionRetryError.hiddenConflict(batch.meta.className, row.level, error);
  }
  if (
    aborted ||
    !failing ||
    !(error instanceof DriverException) ||
    error instanceof UniqueConstraintViolationException ||
    error instanceof DeadlockException ||
    error instanceof LockWaitTimeoutException
  ) {
    return error;
  }
  let range = failing;
  while (range.length > 1) {
    const half = range.slice(0, Math.ceil(range.length / 2));
    range = (await refused(batch, dialect, half)) ? half : range.slice(half.length);
  }
  const slot = range[0];
  if (failing.length > 1 && !(await refused(batch, dialect, [slot]))) {
    return error; // no single row is refused: the statement as a whole was (a limit of the database's)
  }
  error.message = `${batch.method}(${batch.meta.className}): the database refused ${batch.inputName}[${slot.index}] ${describe(batch.source(slot.index))}: ${error.message}`;
  return error;
}

/** Whether inserting `slots` alone fails; tried in a transaction (or savepoint) that is always rolled back. */
async function refused<T extends object>(batch: Batch<T>, dialect: Dialect, slots: Slot<T>[]): Promise<boolean> {
  const rollback = new Error('rolled back on purpose');
  let failed = false;
  try {
    await inTransaction(batch.em, dialect, true, async () => {
      failed = await sendInsert(batch, dialect, slots, dialect !== 'mysql').then(
        () => false,
        () => true,
      );
      throw rollback;
    });
  } catch (error) {
    if (error !== rollback) {
      throw error;
    }
  }
  return failed;
}
