import { Utils, type EntityData, type EntityManager, type EntityMetadata, type UpsertOptions } from '@mikro-orm/core';
import { timestampProperties } from './timestamps.js';

/*
 * What makes `em.upsert` and `em.upsertMany` treat timestamp columns like a flush does: both set to one
 * instant on insert, `updatedAt` moved on conflict, `createdAt` left as stored. Used by CoasterEntityManager.
 */

/**
 * `row` with its missing `createdAt`/`updatedAt` values set to the current time: a copy of plain data,
 * or the entity itself. `createdAt` is left out for a row already in the identity map, which MikroORM
 * updates in memory instead of upserting.
 */
export function stampUpsertRow<Entity extends object>(
  em: EntityManager,
  meta: EntityMetadata<Entity>,
  row: EntityData<Entity> | Entity,
  schema?: string,
): EntityData<Entity> | Entity {
  const { createdAt, updatedAt } = timestampProperties(meta);
  if (createdAt.length + updatedAt.length === 0) {
    return row;
  }
  const isEntity = Utils.isEntity<Entity>(row);
  const stamped = (isEntity ? row : { ...row }) as Record<string, unknown>;
  const pk = isEntity ? null : Utils.extractPK(row, meta);
  const inIdentityMap = pk != null && em.getUnitOfWork().getById(meta.className, pk, schema) !== undefined;
  const now = Date.now();
  for (const prop of inIdentityMap ? updatedAt : [...createdAt, ...updatedAt]) {
    stamped[prop.name] ??= new Date(now);
  }
  return stamped as EntityData<Entity> | Entity;
}

/**
 * `options` with the `createdAt` columns added to `onConflictExcludeFields`, so that a conflict does not
 * overwrite them and MikroORM reads the stored values back; unchanged when `onConflictMergeFields`
 * already says which columns a conflict updates.
 */
export function timestampUpsertOptions<Options extends object>(meta: EntityMetadata, options: Options): Options {
  const { createdAt } = timestampProperties(meta);
  const { onConflictMergeFields, onConflictExcludeFields = [] }: Pick<UpsertOptions<object, string>, 'onConflictMergeFields'> & {
    onConflictExcludeFields?: readonly string[];
  } = options;
  if (onConflictMergeFields || createdAt.length === 0) {
    return options;
  }
  return { ...options, onConflictExcludeFields: [...new Set([...onConflictExcludeFields, ...createdAt.map(prop => prop.name)])] };
}
