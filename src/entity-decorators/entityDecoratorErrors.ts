import { CoasterError } from '../shared/errors.js';

/**
 * A timestamp column (`@CreatedAt`, `@UpdatedAt`) was used in a way that would store a wrong value.
 * Built by the static factories below; the message says what to do instead.
 *
 * @example
 * ```ts
 * user.createdAt = new Date(0);
 * await em.flush(); // TimestampError: User.createdAt is set when the row is inserted and never changes ...
 * ```
 */
export class TimestampError extends CoasterError {
  /** A flush would update the `@CreatedAt` column of a row that is already in the database. */
  static createdAtChanged(entityName: string, propertyName: string): TimestampError {
    return new TimestampError(
      `${entityName}.${propertyName} is set when the row is inserted and never changes, but it was modified on an ` +
        `entity that is already in the database. Nothing was written. Restore the loaded value (or em.refresh() the ` +
        `entity) before flushing; to correct historical data on purpose, use em.nativeUpdate(${entityName}, where, ` +
        `{ ${propertyName}: value }).`,
    );
  }

  /** A naive `@CreatedAt`/`@UpdatedAt` column on PostgreSQL, with MikroORM not writing dates in UTC. */
  static naiveColumnNeedsUtc(entityName: string, propertyName: string, timezone: string | undefined): TimestampError {
    return new TimestampError(
      `${entityName}.${propertyName} is a timestamp column without time zone ({ timezone: false }), which holds UTC ` +
        `wall-clock time, but MikroORM is configured to write dates in the time zone '${timezone ?? 'local'}'. ` +
        `Remove the forceUtcTimezone: false / timezone options, or drop { timezone: false } to use timestamptz.`,
    );
  }

  /**
   * A `@CreatedAt`/`@UpdatedAt` column on MariaDB or MySQL, whose `datetime` holds UTC wall-clock time,
   * with MikroORM's `timezone` / `forceUtcTimezone: false` options writing dates in another zone.
   */
  static mysqlColumnNeedsUtc(entityName: string, propertyName: string, timezone: string | undefined): TimestampError {
    return new TimestampError(
      `${entityName}.${propertyName} is a datetime column on MariaDB/MySQL, which has no time zone and holds UTC ` +
        `wall-clock time, but MikroORM is configured to write dates in the time zone '${timezone ?? 'local'}'. Remove ` +
        `the timezone and forceUtcTimezone: false options (the entity decorators then set forceUtcTimezone: true), or ` +
        `set timezone: '+00:00'.`,
    );
  }

  /** A `@CreatedAt`/`@UpdatedAt` column declared with fewer fractional digits than a `Date`'s milliseconds. */
  static precisionBelowMilliseconds(entityName: string, propertyName: string, length: number): TimestampError {
    return new TimestampError(
      `${entityName}.${propertyName} is declared with length ${length}: ${length} fractional digits of a second, so the ` +
        `database would drop the milliseconds of every timestamp written and a reloaded value would differ from the ` +
        `one in memory. Remove the length option (3 on MariaDB/MySQL, 6 on PostgreSQL), or give 3 or more.`,
    );
  }
}

/**
 * An `@AutoInitDefault` property was read on a new entity, but its default cannot be computed in the
 * application. Built by the static factories below.
 *
 * @example
 * ```ts
 * @Property({ type: 'datetime', defaultRaw: 'current_timestamp' }) @AutoInitDefault() seenAt!: Date;
 * new Visit().seenAt; // AutoInitDefaultError: Visit.seenAt has a SQL default (current_timestamp) ...
 * ```
 */
export class AutoInitDefaultError extends CoasterError {
  /** The property's only default is a SQL expression, which only the database evaluates. */
  static sqlDefault(entityName: string, propertyName: string, sql: string): AutoInitDefaultError {
    return new AutoInitDefaultError(
      `${entityName}.${propertyName} has a SQL default (${sql}), which only the database can compute, so ` +
        `@AutoInitDefault cannot set it before the insert. Pass the default to the decorator, e.g. ` +
        `@AutoInitDefault(() => new Date()), or remove @AutoInitDefault and read the value after em.flush().`,
    );
  }
}
