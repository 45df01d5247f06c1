import { ReferenceKind, Utils, type EntityData, type EntityMetadata, type EntityProperty } from '@mikro-orm/core';
import { CoasterUsageError } from './errors.js';

/** Per entity: whether a unique key covers a set of `where` properties (key: their sorted names). */
const coverage = new WeakMap<EntityMetadata, Map<string, boolean>>();

/**
 * Checks, before any SQL, that one of the entity's unique keys covers `where`, as the race safety of
 * `findOrCreate` / `getOrCreate` needs: only a unique constraint makes the database refuse the second of
 * two racing inserts. Without one, both insert, both report success, and every later call finds two rows.
 *
 * The unique keys are read from the metadata: the primary key, `unique: true` (or `unique: 'name'`)
 * properties, and `@Unique` groups, declared on the class or on an embeddable; for single table
 * inheritance, those of the whole table (the root and every subclass). A key covers `where` when all its
 * properties are in `where` with a non-null value (unique constraints let NULLs repeat); `where` may hold
 * more. A `@Unique({ expression })` key cannot be judged and covers nothing; `@Index` is not unique.
 * Embedded properties count one by one (`{ address: { city } }` gives `address.city`), so a key over the
 * whole embeddable needs each of its properties in `where`. The answer is cached per entity and set of
 * property names, so a repeated call only collects the names.
 *
 * @example
 * ```ts
 * checkUniqueWhere('findOrCreate', em.getMetadata().get('Tag'), { name: 'news' }); // @Unique() name: passes
 * checkUniqueWhere('findOrCreate', em.getMetadata().get('Tag'), { color: 'red' }); // CoasterUsageError
 * ```
 * @throws {CoasterUsageError} naming the entity, the properties of `where` and how to declare the key.
 */
export function checkUniqueWhere<T extends object>(method: string, meta: EntityMetadata<T>, where: EntityData<T>): void {
  const given = new Map<string, string>();
  collectNames(meta.properties, where as Record<string, unknown>, '', given);
  const key = [...given.keys()].sort().join(',');
  let answers = coverage.get(meta);
  if (!answers) {
    answers = new Map();
    coverage.set(meta, answers);
  }
  let covered = answers.get(key);
  if (covered === undefined) {
    covered = uniqueKeys(meta).some(unique => unique.every(name => given.has(name)));
    answers.set(key, covered);
  }
  if (!covered) {
    const keys = uniqueKeys(meta).map(unique => unique.map(name => pathOf(meta, name)).join(' + '));
    throw CoasterUsageError.whereNotUnique(method, meta.className, where, [...given.values()], keys);
  }
}

/**
 * Maps the names of the properties that `values` gives non-null values to their paths in `where`; an
 * embedded property is given by its own properties, named as MikroORM flattens them (`address_city`,
 * path `address.city`), at every depth.
 */
function collectNames(properties: Record<string, EntityProperty>, values: Record<string, unknown>, prefix: string, given: Map<string, string>): void {
  for (const [key, value] of Object.entries(values)) {
    const prop = properties[key] as EntityProperty | undefined;
    if (value == null || !prop) {
      // an embeddable instance may hold fields that are no properties
      continue;
    }
    if (prop.kind === ReferenceKind.EMBEDDED && typeof value === 'object') {
      collectNames(prop.embeddedProps, value as Record<string, unknown>, `${prefix}${key}.`, given);
    } else {
      given.set(prop.name, `${prefix}${key}`);
    }
  }
}

/**
 * The entity's unique keys, each as the names of the properties it spans (an embedded property
 * expanded to its own properties), those of the root too for single table inheritance. An expression
 * key (`@Unique({ expression })`) is left out: which properties it spans cannot be known.
 */
export function uniqueKeys(meta: EntityMetadata): string[][] {
  const metas = meta.root === meta ? [meta] : [meta, meta.root];
  const keys = [
    meta.primaryKeys as string[],
    ...metas.flatMap(m => m.props.filter(prop => prop.unique).map(prop => expand(m, prop.name))),
    ...metas.flatMap(m =>
      m.uniques.filter(unique => !unique.expression).map(unique => Utils.asArray(unique.properties).flatMap(name => expand(m, name as string))),
    ),
  ];
  // a subclass repeats its root's keys
  return [...new Map(keys.filter(names => names.length > 0).map(names => [names.join(), names])).values()];
}

/**
 * The names that `where` gives for the unique key's property `path`: the property's own, or an embedded
 * property's properties' (flattened), also when `path` reaches into an embeddable with dots
 * (`address.city`). A path that is no property (a JSON path such as `data.kind`) is kept as it is: no
 * `where` can give it, since `findOrCreate` refuses JSON documents.
 */
function expand(meta: EntityMetadata, path: string): string[] {
  let prop: EntityProperty | undefined = meta.properties[path];
  if (!prop) {
    const [first, ...rest] = path.split('.');
    prop = meta.properties[first];
    for (const part of rest) {
      prop = prop?.kind === ReferenceKind.EMBEDDED ? prop.embeddedProps[part] : undefined;
    }
  }
  return prop ? leaves(prop) : [path];
}

/** An embedded property's flattened properties, at every depth; any other property's own name. */
function leaves(prop: EntityProperty): string[] {
  return prop.kind === ReferenceKind.EMBEDDED ? Object.values(prop.embeddedProps).flatMap(leaves) : [prop.name];
}

/** A property's path as `where` gives it: an embedded one's (flattened `address_city`) as `address.city`. */
function pathOf(meta: EntityMetadata, name: string): string {
  const embedded = meta.properties[name]?.embedded;
  return embedded ? `${pathOf(meta, embedded[0])}.${embedded[1]}` : name;
}
