import { Reference, ReferenceKind, Utils, wrap, type Dictionary, type EntityData, type EntityKey, type EntityMetadata, type EntityProperty } from '@mikro-orm/core';
import { checkCreatableWhere } from '../creatableWhere.js';
import { CoasterUsageError } from '../errors.js';
import { uniqueKeys } from '../uniqueWhere.js';
import type { ManyOptions } from './manyOptions.js';

/** The unique key a batch identifies its rows by: its properties, in the order given (or declared). */
export interface BatchKey<T> {
  props: EntityProperty<T>[];
  names: string[];
}

/**
 * The key of a batch: `options.uniqueBy` checked against the entity's unique keys, else the one unique key
 * (a generated primary key left out) whose properties every row gives a non-null value. `undefined` only
 * when `optional` (for `failsafeAddMany`) and no key qualifies.
 *
 * @example
 * ```ts
 * resolveBatchKey('getOrCreateMany', meta, [{ name: 'news' }], {}, false); // { names: ['name'], props: [...] }
 * ```
 * @throws {CoasterUsageError} for a `uniqueBy` that is no unique key, or rows that pick none or several.
 */
export function resolveBatchKey<T extends object>(
  method: string,
  meta: EntityMetadata<T>,
  rows: readonly Dictionary[],
  options: ManyOptions<T>,
  optional: boolean,
): BatchKey<T> | undefined {
  const declared = uniqueKeys(meta);
  const describeKeys = () => declared.map(names => names.join(' + '));
  if (options.uniqueBy !== undefined) {
    const names = [...options.uniqueBy] as string[];
    for (const name of names) {
      const prop = meta.properties[name as EntityKey<T>] as EntityProperty<T> | undefined;
      if (!prop || !isKeyColumn(prop)) {
        throw CoasterUsageError.badUniqueByProperty(method, meta.className, name);
      }
    }
    const sorted = [...names].sort().join();
    if (names.length === 0 || (options.checkUnique !== false && !declared.some(key => [...key].sort().join() === sorted))) {
      throw CoasterUsageError.uniqueByNotAKey(method, meta.className, names, describeKeys());
    }
    return keyOf(meta, names);
  }
  const held = declared.filter(
    names =>
      !generatedPrimaryKey(meta, names) &&
      names.every(name => meta.properties[name as EntityKey<T>] && isKeyColumn(meta.properties[name as EntityKey<T>])) &&
      rows.length > 0 &&
      rows.every(row => names.every(name => row[name] != null)),
  );
  if (held.length === 1) {
    return keyOf(meta, held[0]);
  }
  if (held.length === 0 && optional) {
    return undefined;
  }
  throw CoasterUsageError.uniqueByUnresolved(method, meta.className, held.map(names => names.join(' + ')), describeKeys());
}

/**
 * Checks a `getOrCreateMany` row before any SQL: a plain object whose key properties hold plain, non-null values
 * (as `findOrCreate`'s `where`: no operator, array, JSON document or relation lookup) and whose other keys are
 * properties of the entity.
 *
 * @throws {CoasterUsageError} naming the row's index.
 */
export function checkRow<T extends object>(method: string, meta: EntityMetadata<T>, key: BatchKey<T>, row: unknown, index: number): void {
  if (!Utils.isPlainObject(row)) {
    throw CoasterUsageError.rowNotAnObject(method, index, row);
  }
  checkKeyValues(method, meta, key, row, index);
  const where: Dictionary = {};
  const rest: Dictionary = {};
  for (const [name, value] of Object.entries(row)) {
    if (key.names.includes(name)) {
      where[name] = value;
    } else if (name.startsWith('$')) {
      throw CoasterUsageError.operatorInWhere(method, name);
    } else if (!(name in meta.properties)) {
      throw CoasterUsageError.unknownPropertyInWhere(method, meta.className, name);
    } else {
      rest[name] = value;
    }
  }
  checkCreatableWhere(method, meta, where as EntityData<T>, rest as EntityData<T>);
}

/** Checks that `values` (a row, or an entity of `failsafeAddMany`: `input`) gives every key property a non-null value. */
export function checkKeyValues<T extends object>(
  method: string,
  meta: EntityMetadata<T>,
  key: BatchKey<T>,
  values: Dictionary,
  index: number,
  input: 'rows' | 'entities' = 'rows',
): void {
  if (key.names.some(name => values[name] == null)) {
    throw CoasterUsageError.rowWithoutKey(method, meta.className, input, index, key.names, values);
  }
}

/**
 * The identity of a row under `key`, as a string: equal for equal key values, whatever form they come in (an
 * entity or reference or its primary key for a relation, a Date or its time, a number or its digits, as
 * PostgreSQL returns `bigint` columns). Used both on values in entity form (rows, entities) and on rows in
 * database form (`payload`s, returned rows): compare only strings made from the same form. With `byColumn`,
 * `values` is a row as the database returns it, by column name (see {@link columnKeys}).
 *
 * @example
 * ```ts
 * keyString(key, { name: 'news', color: 'red' }); // '["news"]'
 * keyString(key, { id: 7, name: 'news' }, true); // '["news"]', the row as returned
 * ```
 */
export function keyString<T extends object>(key: BatchKey<T>, values: Dictionary, byColumn = false): string {
  return JSON.stringify(key.props.map(prop => normalize(values[byColumn ? prop.fieldNames[0] : prop.name])));
}

/**
 * Whether every property of `key` is one column, so that {@link keyString} can read a returned row by column name
 * as it is, rather than mapped to property names first (one object less per row).
 */
export function columnKeys<T extends object>(key: BatchKey<T>): boolean {
  return key.props.every(prop => prop.fieldNames?.length === 1);
}

/** The key properties' values of `values`, as a filter (in entity form). */
export function keyWhere<T extends object>(key: BatchKey<T>, values: Dictionary): Dictionary {
  return Object.fromEntries(key.names.map(name => [name, values[name]]));
}

function normalize(value: unknown): unknown {
  const unwrapped: unknown = value !== null && typeof value === 'object' ? Reference.unwrapReference(value) : value;
  if (Utils.isEntity<object>(unwrapped as object)) {
    return normalize(wrap(unwrapped as object, true).getPrimaryKey());
  }
  if (unwrapped instanceof Date) {
    return unwrapped.getTime();
  }
  if (Array.isArray(unwrapped)) {
    return unwrapped.map(normalize);
  }
  if (Utils.isPlainObject(unwrapped)) {
    // a composite primary key given as an object
    return Object.values(unwrapped).map(normalize);
  }
  return typeof unwrapped === 'number' || typeof unwrapped === 'bigint' ? String(unwrapped) : unwrapped;
}

/** A property that is one or more columns of the entity's own row: a scalar or an owning to-one relation. */
function isKeyColumn(prop: EntityProperty): boolean {
  return (
    (prop.kind === ReferenceKind.SCALAR || prop.kind === ReferenceKind.MANY_TO_ONE || (prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner)) &&
    prop.persist !== false &&
    !prop.formula
  );
}

/** Whether `names` is the primary key and the database generates it (auto-increment or a default). */
function generatedPrimaryKey(meta: EntityMetadata, names: string[]): boolean {
  if (names.join() !== meta.primaryKeys.join()) {
    return false;
  }
  return names.some(name => {
    const prop = meta.properties[name];
    return prop.autoincrement || prop.defaultRaw != null || prop.default != null;
  });
}

function keyOf<T extends object>(meta: EntityMetadata<T>, names: string[]): BatchKey<T> {
  return { names, props: names.map(name => meta.properties[name as EntityKey<T>] as EntityProperty<T>) };
}
