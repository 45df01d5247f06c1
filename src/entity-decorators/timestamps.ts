import {
  DateTimeType,
  type EntityManager,
  type EntityMetadata,
  type EntityProperty,
  type Opt,
  type Platform,
  type PropertyOptions,
} from '@mikro-orm/core';
import { dialectOf } from '../shared/dialect.js';
import { decorateProperty } from './decoratedProperties.js';
import { TimestampError } from './entityDecoratorErrors.js';
import { requireEntityDecorators } from './entityDecoratorsConfigured.js';

/**
 * Options of {@link CreatedAt}, {@link UpdatedAt}, {@link createdAtProperty} and {@link updatedAtProperty}.
 *
 * @example
 * ```ts
 * @CreatedAt({ timezone: false }) createdAt!: Opt<Date>; // `timestamp` instead of `timestamptz` on PostgreSQL
 * ```
 */
export interface TimestampOptions {
  /**
   * Whether the column stores an instant with its time zone: `timestamptz` on PostgreSQL. `false` makes a
   * naive `timestamp` column holding UTC wall-clock time. SQLite has no time zones: there both store
   * milliseconds since the Unix epoch, as MikroORM does for every `Date` on SQLite. MariaDB and MySQL have
   * no time-zone-aware `datetime`: there both are `datetime(3)` holding UTC wall-clock time. Default: `true`.
   */
  timezone?: boolean;
}

/**
 * Which timestamp a property is, as recorded on its metadata (see {@link TimestampPropertyOptions}).
 *
 * @example
 * ```ts
 * const column: TimestampColumn = { role: 'updatedAt', timezone: true };
 * ```
 */
export interface TimestampColumn {
  /** `createdAt`: set on insert, never changed. `updatedAt`: set on insert and on every update. */
  role: 'createdAt' | 'updatedAt';
  /** See {@link TimestampOptions.timezone}. */
  timezone: boolean;
}

/** Marks the metadata of a timestamp property; kept by MikroORM when it copies property options. */
const TIMESTAMP = Symbol('mikro-orm-coaster:timestamp');

/**
 * Property options of a timestamp column, as {@link createdAtProperty} and {@link updatedAtProperty} return
 * them: MikroORM's own options plus a marker that the discovery hook and {@link TimestampSubscriber} find.
 *
 * @example
 * ```ts
 * const createdAt: TimestampPropertyOptions<Page> = { ...createdAtProperty(), fieldName: 'created' };
 * ```
 */
export type TimestampPropertyOptions<Owner extends object = object> = PropertyOptions<Owner> & {
  /** MikroORM's `DateTimeType`: the column holds a `Date`. */
  type: typeof DateTimeType;
  /** Marks the property as a timestamp column (its role and time zone) for the discovery hook and the subscriber. */
  [TIMESTAMP]: TimestampColumn;
};

/**
 * The SQL default on SQLite, where MikroORM stores dates as milliseconds since the Unix epoch:
 * `CURRENT_TIMESTAMP` would store text that MikroORM reads in the process's local time zone and that
 * sorts after every number. `julianday('now')` has millisecond precision and is fixed for a statement.
 * SQLite reports the default back without its outer parentheses, which MikroORM's schema comparator
 * would see as a change on every diff, so such columns ignore default changes (`ignoreSchemaChanges`).
 */
const SQLITE_NOW = `(cast(round((julianday('now') - 2440587.5) * 86400000) as integer))`;

/** The SQL default of a timestamp column where the database has time zones. */
const CURRENT_TIMESTAMP = 'current_timestamp';

/** The SQL default of a naive column on PostgreSQL: UTC wall-clock time, whatever the session's time zone. */
const UTC_NOW = `timezone('utc'::text, current_timestamp)`;

/**
 * The instant each new entity is inserted at, shared by its `createdAt` and `updatedAt` so that they
 * are equal, whichever MikroORM initialises first.
 */
const insertInstants = new WeakMap<object, number>();

/**
 * The `onCreate` of timestamp columns. Its first call on an ORM initialised without the entity
 * decorators' hook (plain MikroORM options, where no `CoasterEntityManager` could check them at init)
 * throws `CoasterConfigError`, before the flush writes anything.
 */
function insertInstant(entity: object, em?: EntityManager): Date {
  if (em) {
    requireEntityDecorators(em.config, entity.constructor.name);
  }
  let time = insertInstants.get(entity);
  if (time === undefined) {
    time = Date.now();
    insertInstants.set(entity, time);
  }
  return new Date(time);
}

function timestampProperty<Owner extends object>(role: TimestampColumn['role'], options: TimestampOptions): TimestampPropertyOptions<Owner> {
  return {
    // the class rather than 'datetime': MikroORM then types the property 'Date' and compares it by value,
    // which SQLite needs (it snapshots loaded dates as Date but flushed ones as numbers)
    type: DateTimeType,
    nullable: false,
    defaultRaw: CURRENT_TIMESTAMP,
    onCreate: (entity: Owner, em: EntityManager) => insertInstant(entity, em),
    ...(role === 'updatedAt' ? { onUpdate: () => new Date() } : {}),
    [TIMESTAMP]: { role, timezone: options.timezone ?? true },
  };
}

/**
 * The property options of a `created_at` column, for entities defined without decorators
 * (`EntitySchema`, `defineEntity`). `@CreatedAt()` applies the same options. The column is NOT NULL
 * with a database default of the current time; MikroORM sets it on insert (`onCreate`), equal to
 * `updatedAt`. The ORM needs {@link withEntityDecorators} (included in `defineCoasterConfig`).
 *
 * @example
 * ```ts
 * interface Page { id: number; title: string; createdAt: Opt<Date>; updatedAt: Opt<Date> }
 * export const PageSchema = new EntitySchema<Page>({
 *   name: 'Page',
 *   properties: {
 *     id: { type: 'integer', primary: true },
 *     title: { type: 'string' },
 *     createdAt: createdAtProperty(),
 *     updatedAt: updatedAtProperty(),
 *   },
 * });
 * ```
 */
export function createdAtProperty<Owner extends object = object>(options: TimestampOptions = {}): TimestampPropertyOptions<Owner> {
  return timestampProperty('createdAt', options);
}

/**
 * The property options of an `updated_at` column: as {@link createdAtProperty}, plus `onUpdate`, so
 * every flush that updates the row sets it to the current time.
 *
 * @example
 * ```ts
 * properties: { ..., updatedAt: updatedAtProperty({ timezone: false }) }
 * ```
 */
export function updatedAtProperty<Owner extends object = object>(options: TimestampOptions = {}): TimestampPropertyOptions<Owner> {
  return timestampProperty('updatedAt', options);
}

/**
 * Declares a `Date` property as the entity's creation time, a port of the `created_at` column of
 * coaster's `make_timestamp_columns`: NOT NULL, with a database default of the current time
 * (docs/entity-decorators.md gives the column type and default on each database), set on insert and equal to `updatedAt`, never
 * changed afterwards: a flush that would change it throws {@link TimestampError}. Use it alone or with `@Property()` (for `fieldName`, `comment`, ...)
 * in either order. The ORM needs {@link withEntityDecorators} (included in `defineCoasterConfig`).
 *
 * @example
 * ```ts
 * @Entity()
 * class User {
 *   @PrimaryKey({ type: 'integer' }) id!: number;
 *   @CreatedAt() createdAt!: Opt<Date>;
 *   @UpdatedAt() updatedAt!: Opt<Date>;
 * }
 * ```
 */
export function CreatedAt(options: TimestampOptions = {}) {
  return (target: object, propertyName: string): void => decorateProperty(target, propertyName, createdAtProperty(options));
}

/**
 * Declares a `Date` property as the entity's last update time: as {@link CreatedAt}, and every flush
 * that updates the row moves it to the current time.
 *
 * @example
 * ```ts
 * @UpdatedAt({ timezone: false }) updatedAt!: Opt<Date>; // naive `timestamp` on PostgreSQL
 * ```
 */
export function UpdatedAt(options: TimestampOptions = {}) {
  return (target: object, propertyName: string): void => decorateProperty(target, propertyName, updatedAtProperty(options));
}

/**
 * An abstract base class with `createdAt` and `updatedAt` ({@link CreatedAt}, {@link UpdatedAt}),
 * like coaster's `TimestampMixin`. Entities extending it get both columns.
 *
 * @example
 * ```ts
 * @Entity()
 * class Post extends Timestamped {
 *   @PrimaryKey({ type: 'integer' }) id!: number;
 * }
 * ```
 */
export abstract class Timestamped {
  /** When the row was inserted. */
  @CreatedAt()
  createdAt!: Opt<Date>;

  /** When the row was last updated by a flush (or inserted). */
  @UpdatedAt()
  updatedAt!: Opt<Date>;
}

/** The timestamp marker of a property's metadata, if it is a timestamp column. */
export function timestampColumn(prop: Partial<EntityProperty>): TimestampColumn | undefined {
  return (prop as Partial<TimestampPropertyOptions>)[TIMESTAMP];
}

/** The timestamp properties of an entity, by role. */
export interface TimestampProperties {
  createdAt: EntityProperty[];
  updatedAt: EntityProperty[];
}

const propertiesByEntity = new WeakMap<EntityMetadata, TimestampProperties>();

/** The timestamp properties of a discovered entity (found once per metadata). */
export function timestampProperties(meta: EntityMetadata): TimestampProperties {
  let found = propertiesByEntity.get(meta);
  if (!found) {
    found = { createdAt: [], updatedAt: [] };
    for (const prop of meta.props) {
      const column = timestampColumn(prop);
      if (column) {
        found[column.role].push(prop);
      }
    }
    propertiesByEntity.set(meta, found);
  }
  return found;
}

/**
 * The fractional digits of a second that a `Date` holds: the fewest a timestamp column may have, and its
 * length on MariaDB and MySQL, where MikroORM's `datetime` has none and the server truncates.
 */
const MILLISECONDS = 3;

/**
 * The SQL default of a timestamp column on MariaDB and MySQL: UTC wall-clock time, whatever the time zone
 * of the session that inserts (`current_timestamp` follows the session's `time_zone`, so a row inserted
 * by raw SQL from a client in another zone would be hours off). MariaDB reports it back as written, so
 * the schema diff stays empty.
 */
const mysqlUtcNow = (length: number) => `utc_timestamp(${length})`;

/** Whether MikroORM writes and reads dates in UTC with `timezone` (`forceUtcTimezone` gives `'Z'`; `'+00:00'` is MySQL's spelling). */
function isUtc(timezone: string | undefined): boolean {
  return timezone !== undefined && /^(Z|[+-]00(:?00)?)$/.test(timezone);
}

/**
 * Makes MikroORM write and read dates in UTC on MariaDB and MySQL, for their `datetime` columns that
 * hold UTC wall-clock time: sets `forceUtcTimezone`, as MikroORM's PostgreSQL platform does by default,
 * when neither it nor `timezone` was given, and throws {@link TimestampError} when they name another
 * zone. MikroORM passes the zone to the connection when it connects, after discovery.
 */
function requireUtcDates(meta: EntityMetadata, prop: EntityProperty, platform: Platform): void {
  const config = platform.getConfig();
  if (config.get('forceUtcTimezone') == null && config.get('timezone') == null) {
    config.set('forceUtcTimezone', true);
    platform.setConfig(config); // the platform reads the zone from its configuration there
  }
  if (!isUtc(platform.getTimezone())) {
    throw TimestampError.mysqlColumnNeedsUtc(meta.className, prop.name, platform.getTimezone());
  }
}

/**
 * Gives the timestamp columns of an entity the column type and default that suit `platform`. Runs in
 * the `discovery.onMetadata` hook (see {@link withEntityDecorators}), before MikroORM initialises them.
 * On MariaDB and MySQL it also makes MikroORM's dates UTC (see {@link requireUtcDates}).
 */
export function resolveTimestampColumns(meta: EntityMetadata, platform: Platform): void {
  const dialect = dialectOf(platform);
  for (const prop of Object.values<EntityProperty>(meta.properties)) {
    const column = timestampColumn(prop);
    if (!column) {
      continue;
    }
    if (dialect === 'sqlite') {
      prop.defaultRaw = SQLITE_NOW;
      prop.ignoreSchemaChanges = [...new Set([...(prop.ignoreSchemaChanges ?? []), 'default' as const])];
      continue;
    }
    if (prop.length !== undefined && prop.length < MILLISECONDS) {
      throw TimestampError.precisionBelowMilliseconds(meta.className, prop.name, prop.length);
    }
    if (dialect === 'mysql') {
      requireUtcDates(meta, prop, platform);
      prop.length ??= MILLISECONDS;
      prop.defaultRaw = mysqlUtcNow(prop.length);
      continue;
    }
    const aware = platform.getDateTimeTypeDeclarationSQL({ length: prop.length ?? platform.getDefaultDateTimeLength() });
    const naive = aware.replace(/^timestamptz/, 'timestamp');
    if (column.timezone || naive === aware) {
      continue;
    }
    if (!isUtc(platform.getTimezone())) {
      throw TimestampError.naiveColumnNeedsUtc(meta.className, prop.name, platform.getTimezone());
    }
    prop.columnTypes = [naive];
    prop.defaultRaw = UTC_NOW;
  }
}
