import {
  JsonType,
  Reference,
  ReferenceKind,
  Utils,
  wrap,
  type EntityData,
  type EntityMetadata,
  type EntityProperty,
} from '@mikro-orm/core';
import { CoasterUsageError } from './errors.js';

/**
 * Checks the `where` and `data` of `findOrCreate` / `getOrCreate` before any SQL is sent. `where` is both
 * a filter and the values of the row to create, so it must mean the same thing in both roles: plain
 * values of the entity's own properties (an embeddable as a plain object, a relation as an entity, a
 * reference or a primary key), never an operator, an array, a JSON document, a collection, or a
 * relation described by the related row's other columns (which `em.create` would insert as a new row).
 * `data` may not contradict `where`: the created row must match it.
 *
 * @throws {CoasterUsageError} naming the method and the offending key.
 */
export function checkCreatableWhere<T extends object>(
  method: string,
  meta: EntityMetadata<T>,
  where: EntityData<T>,
  data: EntityData<T> | undefined,
): void {
  if (!Utils.isPlainObject(where) || Object.keys(where).length === 0) {
    throw CoasterUsageError.emptyWhere(method, meta.className);
  }
  for (const [key, value] of Object.entries(where)) {
    checkValue(method, meta, key, value, key);
  }
  for (const key of Object.keys(data ?? {})) {
    if (key in where && !sameValue((where as Record<string, unknown>)[key], (data as Record<string, unknown>)[key])) {
      throw CoasterUsageError.dataContradictsWhere(method, meta.className, key);
    }
  }
}

function checkValue(method: string, meta: EntityMetadata, key: string, value: unknown, path: string): void {
  if (key.startsWith('$')) {
    throw CoasterUsageError.operatorInWhere(method, path);
  }
  const prop = meta.properties[key] as EntityProperty | undefined;
  if (!prop) {
    throw CoasterUsageError.unknownPropertyInWhere(method, meta.className, path);
  }
  if (prop.kind === ReferenceKind.ONE_TO_MANY || prop.kind === ReferenceKind.MANY_TO_MANY) {
    throw CoasterUsageError.collectionInWhere(method, path);
  }
  findOperatorOrArray(method, value, path, prop);
  switch (prop.kind) {
    case ReferenceKind.EMBEDDED:
      if (Utils.isPlainObject(value)) {
        for (const [innerKey, inner] of Object.entries(value)) {
          checkValue(method, prop.targetMeta!, innerKey, inner, `${path}.${innerKey}`);
        }
      }
      return;
    case ReferenceKind.MANY_TO_ONE:
    case ReferenceKind.ONE_TO_ONE:
      if (Utils.isPlainObject(value) && !isPrimaryKeyObject(value, prop.targetMeta!)) {
        throw CoasterUsageError.relationLookupInWhere(method, path, prop.type);
      }
      return;
    default:
      if (value !== null && typeof value === 'object' && (prop.customType instanceof JsonType || Utils.isPlainObject(value))) {
        throw CoasterUsageError.documentInWhere(method, path);
      }
  }
}

/** Operators and arrays at any depth: a filter would read them as `$in` or a condition, `em.create` as a value. */
function findOperatorOrArray(method: string, value: unknown, path: string, prop: EntityProperty): void {
  if (Array.isArray(value)) {
    if (isCompositeKeyTuple(value, prop)) {
      return;
    }
    throw CoasterUsageError.arrayInWhere(method, path);
  }
  if (!Utils.isPlainObject(value)) {
    return;
  }
  for (const [key, inner] of Object.entries(value)) {
    if (key.startsWith('$')) {
      throw CoasterUsageError.operatorInWhere(method, `${path}.${key}`);
    }
    findOperatorOrArray(method, inner, `${path}.${key}`, prop);
  }
}

/** `[1, 'a']` for a relation to an entity with a composite primary key is that entity's key. */
function isCompositeKeyTuple(value: unknown[], prop: EntityProperty): boolean {
  const target = prop.targetMeta;
  return (
    (prop.kind === ReferenceKind.MANY_TO_ONE || prop.kind === ReferenceKind.ONE_TO_ONE) &&
    !!target?.compositePK &&
    value.length === target.primaryKeys.length
  );
}

function isPrimaryKeyObject(value: object, target: EntityMetadata): boolean {
  const keys = Object.keys(value);
  return keys.length === target.primaryKeys.length && keys.every(key => target.primaryKeys.includes(key));
}

/** Equality as a row sees it: an entity or reference equals its primary key, values compare deeply. */
function sameValue(a: unknown, b: unknown): boolean {
  const left = Reference.unwrapReference(a as object);
  const right = Reference.unwrapReference(b as object);
  if (left === right) {
    return true;
  }
  if (Utils.isEntity(left) || Utils.isEntity(right)) {
    const leftKey = Utils.isEntity(left) ? wrap(left, true).getPrimaryKey() : left;
    const rightKey = Utils.isEntity(right) ? wrap(right, true).getPrimaryKey() : right;
    return leftKey != null && Utils.equals(leftKey, rightKey);
  }
  return Utils.equals(left, right);
}
