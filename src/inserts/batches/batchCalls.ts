import { Utils, wrap, type Dictionary, type EntityData, type EntityMetadata, type FilterQuery } from '@mikro-orm/core';
import type { SqlEntityManager } from '@mikro-orm/knex';
import { whileProcessing } from '../../shared/internals.js';
import type { FindOrCreateResult } from '../CoasterEntityManager.js';
import { CoasterUsageError, ManagedKeyConflictError } from '../errors.js';
import { checkKeyValues, checkRow, keyString, keyWhere, resolveBatchKey } from './batchKey.js';
import { newEntity } from '../fastInsert.js';
import { resolveBatch, type Slot } from './batchInsert.js';
import type { ManyOptions } from './manyOptions.js';

/** What the batch calls need of `CoasterEntityManager` beyond its public API. */
export interface BatchHelpers<T> {
  /** `em.failsafeAdd` with the call's options. */
  failsafeAdd(entity: T, filters: FilterQuery<T> | undefined): Promise<T | undefined>;
  /** Detaches a rejected entity, as `failsafeAdd` does. */
  forget(entity: T): void;
}

/**
 * `getOrCreateMany`: checks the rows and options before any SQL, flushes the EntityManager's pending changes,
 * resolves each distinct key once (a managed entity with the row's primary key and the same key without SQL),
 * and returns one result per row, in input order.
 */
export async function getOrCreateMany<T extends object>(
  em: SqlEntityManager,
  method: string,
  meta: EntityMetadata<T>,
  rows: readonly EntityData<T>[],
  options: ManyOptions<T>,
  helpers: BatchHelpers<T>,
): Promise<FindOrCreateResult<T>[]> {
  checkArray(method, rows, options);
  if (rows.length === 0) {
    return [];
  }
  rows.forEach((row, index) => {
    if (!Utils.isPlainObject(row)) {
      throw CoasterUsageError.rowNotAnObject(method, index, row);
    }
  });
  const key = resolveBatchKey(method, meta, rows as readonly Dictionary[], options, false)!;
  rows.forEach((row, index) => checkRow(method, meta, key, row, index));
  await em.flush();

  const slots = new Map<string, Slot<T>>();
  const slotOf = rows.map((row, index) => {
    const id = keyString(key, row);
    let slot = slots.get(id);
    if (!slot) {
      slot = { key: id, where: keyWhere(key, row), index };
      slots.set(id, slot);
      const twin = em.getUnitOfWork(false).tryGetById<T>(meta.className, row as FilterQuery<T>, em.schema, false);
      if (twin && keyString(key, twin) !== id) {
        throw ManagedKeyConflictError.managedTwin(method, meta.className, wrap(twin, true).getPrimaryKey(), slot.where);
      }
      Object.assign(slot, twin ? { entity: twin, created: false } : {});
    }
    return slot;
  });
  await resolveBatch(
    {
      em,
      meta,
      key,
      method,
      inputName: 'rows',
      options,
      create: slot => newEntity(em, meta, rows[slot.index]),
      source: index => rows[index],
      ...helpers,
    },
    [...slots.values()].filter(slot => slot.created === undefined),
  );
  return slotOf.map((slot, index) => ({ entity: slot.entity!, created: slot.created === true && slot.index === index }));
}

/**
 * `failsafeAddMany`, for entities already checked to be new, of one class, and standing alone: flushes the
 * EntityManager's other pending changes, then inserts them as one batch by their key, or one by one with
 * `failsafeAdd` when no key is given and none is held by every entity.
 */
export async function failsafeAddMany<T extends object>(
  em: SqlEntityManager,
  method: string,
  meta: EntityMetadata<T>,
  entities: readonly T[],
  options: ManyOptions<T>,
  helpers: BatchHelpers<T>,
): Promise<(T | undefined)[]> {
  const key = resolveBatchKey(method, meta, entities as readonly Dictionary[], options, true);
  if (key) {
    entities.forEach((entity, index) => checkKeyValues(method, meta, key, entity as Dictionary, index, 'entities'));
  }
  const uow = em.getUnitOfWork(false);
  entities.forEach(entity => uow.getPersistStack().delete(entity));
  await whileProcessing(entities, () => em.flush());

  const slots = new Map<string, Slot<T>>();
  const slotOf = entities.map((entity, index) => {
    const id = key ? keyString(key, entity as Dictionary) : String(index);
    let slot = slots.get(id);
    if (!slot) {
      slot = { key: id, where: key && keyWhere(key, entity as Dictionary), index, candidate: entity };
      slots.set(id, slot);
    }
    return slot;
  });
  await resolveBatch(
    {
      em,
      meta,
      key,
      method,
      inputName: 'entities',
      options,
      create: slot => slot.candidate!,
      source: index => entities[index],
      ...helpers,
    },
    [...slots.values()],
  );
  return entities.map((entity, index) => {
    const { entity: result } = slotOf[index];
    if (result !== entity) {
      helpers.forget(entity);
    }
    return result;
  });
}

/** Checks what every batch call takes: an array, and a positive integer `chunkSize` if one is given. */
export function checkArray<T>(method: string, input: unknown, options: ManyOptions<T>): void {
  if (!Array.isArray(input)) {
    throw CoasterUsageError.notAnArray(method, input);
  }
  if (options.chunkSize !== undefined && !(Number.isInteger(options.chunkSize) && options.chunkSize > 0)) {
    throw CoasterUsageError.badChunkSize(method, options.chunkSize);
  }
}
