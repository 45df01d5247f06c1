import {
  MetadataStorage,
  ReferenceKind,
  type Dictionary,
  type EntityMetadata,
  type EntityProperty,
  type PropertyOptions,
} from '@mikro-orm/core';

/** Property options that a decorator of this library owns, by property name, per decorated class. */
const decoratedOptions = new WeakMap<Function, Map<string, PropertyOptions<object>>>();

/**
 * Merges `options` into the metadata of a decorated property, like MikroORM's own property decorators
 * do, and remembers them so that {@link applyDecoratedProperties} merges them again at discovery.
 *
 * MikroORM's `@Property()` and `@PrimaryKey()` replace the property's metadata with their own options,
 * and legacy decorators of one property run bottom-up. Merging now keeps the options when this
 * decorator runs last (written above `@Property`); merging again at discovery keeps them when it runs
 * first (written below). Options other decorators set and these do not (`fieldName`, `comment`, ...) stay.
 */
export function decorateProperty(target: object, propertyName: string, options: PropertyOptions<object>): void {
  const meta = MetadataStorage.getMetadataFromDecorator<Dictionary>(target.constructor as Dictionary);
  const existing: EntityProperty | undefined = meta.properties[propertyName];
  meta.properties[propertyName] = {
    ...(existing ?? { name: propertyName, kind: ReferenceKind.SCALAR }),
    ...options,
  } as EntityProperty;

  let byProperty = decoratedOptions.get(target.constructor);
  if (!byProperty) {
    byProperty = new Map();
    decoratedOptions.set(target.constructor, byProperty);
  }
  byProperty.set(propertyName, { ...byProperty.get(propertyName), ...options });
}

/**
 * Merges the options recorded by {@link decorateProperty} into an entity's metadata during discovery,
 * before MikroORM initialises its properties. Run from the `discovery.onMetadata` hook (see
 * {@link withEntityDecorators}). Inherited properties are handled on the base class's own metadata,
 * which MikroORM discovers too and copies into its subclasses afterwards.
 */
export function applyDecoratedProperties(meta: EntityMetadata): void {
  const byProperty = meta.class ? decoratedOptions.get(meta.class) : undefined;
  for (const [name, options] of byProperty ?? []) {
    Object.assign((meta as EntityMetadata<Dictionary>).properties[name], options);
  }
}

/** Whether `entityClass` or a class it extends has properties decorated by this library. */
export function hasDecoratedProperties(entityClass: Function | undefined): boolean {
  for (let current = entityClass; current && current !== Function.prototype; current = Object.getPrototypeOf(current)) {
    if (decoratedOptions.has(current)) {
      return true;
    }
  }
  return false;
}
