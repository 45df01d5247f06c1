import {
  MetadataStorage,
  RawQueryFragment,
  type Dictionary,
  type EntityManager,
  type EntityMetadata,
  type EntityProperty,
} from '@mikro-orm/core';
import { entityState } from '../shared/internals.js';
import { decorateProperty } from './decoratedProperties.js';
import { AutoInitDefaultError } from './entityDecoratorErrors.js';
import { requireEntityDecorators } from './entityDecoratorsConfigured.js';

/**
 * Whether `entity` has never been inserted nor loaded: a `new` instance or one from `em.create`,
 * before its flush. Entities loaded from the database (also partially, or as references) are not.
 */
function isNew(entity: object): boolean {
  const state = entityState(entity); // undefined until an ORM has been initialised with the entity's class
  return !state || !(state.managed || state.loaded);
}

/** The decorator metadata and `@AutoInitDefault` property names of each decorated class. */
const decoratedClasses = new WeakMap<Function, { declared: EntityMetadata<Dictionary>; names: Set<string> }>();

/**
 * Keeps the `default` of `@AutoInitDefault` properties as declared. MikroORM's discovery instantiates
 * each entity class twice and reads every property to infer defaults (`discovery.inferDefaultValues`);
 * reading an `@AutoInitDefault` property computes its default, which MikroORM would otherwise turn into
 * a column default whenever both instances got equal values. Runs in the `discovery.onMetadata` hook
 * (see {@link withEntityDecorators}), after that inference.
 */
export function keepDeclaredDefaults(meta: EntityMetadata): void {
  const decorated = meta.class ? decoratedClasses.get(meta.class) : undefined;
  if (!decorated) {
    return;
  }
  for (const name of decorated.names) {
    const declared: EntityProperty | undefined = decorated.declared.properties[name];
    const prop: EntityProperty = (meta as EntityMetadata<Dictionary>).properties[name];
    if (declared?.default === undefined) {
      delete prop.default;
    } else {
      prop.default = declared.default;
    }
  }
}

/**
 * Sets a property to its default the first time it is read on a new entity, rather than when the
 * entity is inserted; a port of coaster's `auto_init_default`. The value then stays: read it twice,
 * get the same value, and that value is inserted.
 *
 * The default is `value` (a function is called once per entity, with the entity), else the property's
 * `default` option, else its `onCreate` callback (with the entity and, when it has one, its
 * EntityManager). A property whose only default is SQL (`defaultRaw`, or a `raw()`/`sql` `default`)
 * throws {@link AutoInitDefaultError} when read; one with no default at all reads `undefined` and
 * stays unset. An explicitly set value (constructor, assignment, `em.create` data) is never replaced,
 * and entities loaded from the database keep theirs, also when the property was not selected.
 *
 * The property becomes a get/set accessor on the prototype, declared to MikroORM with its own
 * `accessor: true` option. Combine it with `@Property()` or `@PrimaryKey()` in either order; the ORM
 * needs {@link withEntityDecorators} (included in `defineCoasterConfig`).
 *
 * @example
 * ```ts
 * @Entity()
 * class Document {
 *   @PrimaryKey({ type: 'uuid' })
 *   @AutoInitDefault(() => randomUUID())
 *   id!: Opt<string>;
 *
 *   @Property({ type: 'string', default: 'draft' })
 *   @AutoInitDefault()
 *   state!: Opt<string>;
 * }
 *
 * const doc = em.create(Document, {});
 * const url = `/documents/${doc.id}`; // known before the insert, and inserted as is
 * ```
 */
export function AutoInitDefault(value?: unknown) {
  return (target: object, propertyName: string): void => {
    const meta = MetadataStorage.getMetadataFromDecorator<Dictionary>(target.constructor as Dictionary);
    const values = new WeakMap<object, unknown>();
    const decorated = decoratedClasses.get(target.constructor) ?? { declared: meta, names: new Set<string>() };
    decorated.names.add(propertyName);
    decoratedClasses.set(target.constructor, decorated);

    /**
     * The default of a new entity, from the decorator or the property options, read when first needed;
     * on an ORM initialised without the entity decorators' hook, a `CoasterConfigError`.
     */
    const initialValue = (entity: object): unknown => {
      const state = entityState(entity); // undefined before any ORM discovered the class
      if (state) {
        requireEntityDecorators(state.config, meta.className);
      }
      if (typeof value === 'function') {
        return value(entity);
      }
      if (value !== undefined) {
        return value;
      }
      const prop: EntityProperty = meta.properties[propertyName];
      const declared: unknown = prop.default;
      const fragment =
        typeof declared === 'string' || declared instanceof RawQueryFragment
          ? RawQueryFragment.getKnownFragment(declared, false)
          : undefined;
      const rawDefault = prop.defaultRaw ?? fragment?.sql;
      if (rawDefault !== undefined) {
        throw AutoInitDefaultError.sqlDefault(meta.className, propertyName, rawDefault);
      }
      if (prop.default !== undefined) {
        return prop.default;
      }
      // a `new` entity not yet persisted has no EntityManager; onCreate callbacks rarely need one
      return prop.onCreate?.(entity, state?.em as EntityManager);
    };

    Object.defineProperty(target, propertyName, {
      get(this: object) {
        if (values.has(this) || !isNew(this)) {
          return values.get(this);
        }
        const initial = initialValue(this);
        if (initial !== undefined) {
          values.set(this, initial);
        }
        return initial;
      },
      set(this: object, newValue: unknown) {
        values.set(this, newValue);
      },
      configurable: true,
    });
    decorateProperty(target, propertyName, { accessor: true });
  };
}
