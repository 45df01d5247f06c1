import { Utils, type EntityData, type EntityManager, type EntityMetadata, type EntityName, type UpsertOptions } from '@mikro-orm/core';
import { timestampProperties } from './timestamps.js';

/*
 * What makes `em.upsert` and `em.upsertMany` treat timestamp columns like a flush does: both set to one
 * instant on insert, `updatedAt` moved on conflict, `createdAt` left as stored. CoasterEntityManager's
 * `upsert` and `upsertMany` hand their arguments to timestampedUpsert / timestampedUpsertMany.
 */

/** The arguments of `em.upsert` / `em.upsertMany`, as {@link timestampedUpsert} returns them. */
export interface UpsertArguments<Data, Options> {
  data: Data;
  options: Options;
}

/**
 * The `data` and `options` to give MikroORM's `em.upsert(entityNameOrEntity, data, options)` so that it
 * handles `@CreatedAt`/`@UpdatedAt` columns like a flush: missing values set to the current time (an
 * entity passed alone is stamped in place), `createdAt` kept on conflict. Unchanged for other entities.
 *
 * @example
 * ```ts
 * const { data: row, options: upsertOptions } = timestampedUpsert(em, Article, { title: 'a' }, {});
 * await em.upsert(Article, row, upsertOptions);
 * ```
 */
export function timestampedUpsert<Entity extends object, Data extends EntityData<Entity> | Entity | undefined, Options extends { schema?: string }>(
  em: EntityManager,
  entityNameOrEntity: EntityName<Entity> | Entity,
  data: Data,
  options: Options,
): UpsertArguments<Data, Options> {
  if (data === undefined) {
    const meta = em.getMetadata().get<Entity>((entityNameOrEntity as Entity).constructor.name);
    stampUpsertRow(em, meta, entityNameOrEntity as Entity, options.schema);
    return { data, options: timestampUpsertOptions(meta, options) };
  }
  const meta = em.getMetadata().get<Entity>(Utils.className(entityNameOrEntity as EntityName<Entity>));
  return { data: stampUpsertRow(em, meta, data, options.schema) as Data, options: timestampUpsertOptions(meta, options) };
}

/**
 * {@link timestampedUpsert} for `em.upsertMany(entityNameOrEntities, rows, options)`.
 *
 * @example
 * ```ts
 * const { data: rows, options: upsertOptions } = timestampedUpsertMany(em, Article, [{ title: 'a' }], {});
 * ```
 */
export function timestampedUpsertMany<
  Entity extends object,
  Data extends (EntityData<Entity> | Entity)[] | undefined,
  Options extends { schema?: string },
>(em: EntityManager, entityNameOrEntities: EntityName<Entity> | Entity[], data: Data, options: Options): UpsertArguments<Data, Options> {
  if (data === undefined) {
    const entities = entityNameOrEntities as Entity[];
    if (entities.length === 0) {
      return { data, options };
    }
    const meta = em.getMetadata().get<Entity>(entities[0].constructor.name);
    entities.forEach(entity => stampUpsertRow(em, meta, entity, options.schema));
    return { data, options: timestampUpsertOptions(meta, options) };
  }
  const meta = em.getMetadata().get<Entity>(Utils.className(entityNameOrEntities as EntityName<Entity>));
  return { data: data.map(row => stampUpsertRow(em, meta, row, options.schema)) as Data, options: timestampUpsertOptions(meta, options) };
}

/**
 * `row` with its missing `createdAt`/`updatedAt` values set to the current time: a copy of plain data,
 * or the entity itself. `createdAt` is left out for a row already in the identity map, which MikroORM
 * updates in memory instead of upserting.
 */
function stampUpsertRow<Entity extends object>(
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
function timestampUpsertOptions<Options extends object>(meta: EntityMetadata, options: Options): Options {
  const { createdAt } = timestampProperties(meta);
  const { onConflictMergeFields, onConflictExcludeFields = [] }: Pick<UpsertOptions<object, string>, 'onConflictMergeFields'> & {
    onConflictExcludeFields?: readonly string[];
  } = options;
  if (onConflictMergeFields || createdAt.length === 0) {
    return options;
  }
  return { ...options, onConflictExcludeFields: [...new Set([...onConflictExcludeFields, ...createdAt.map(prop => prop.name)])] };
}
