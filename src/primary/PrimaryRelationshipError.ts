import { CoasterError } from '../shared/errors.js';

/**
 * A primary relationship was declared or used in a way that cannot work: the message says what to
 * change. Built by the static factories below.
 *
 * @example
 * ```ts
 * try {
 *   user.primaryEmail = someoneElsesEmail;
 * } catch (e) {
 *   if (e instanceof PrimaryRelationshipError) return reply(400, e.message);
 *   throw e;
 * }
 * ```
 */
export class PrimaryRelationshipError extends CoasterError {
  /** The child assigned as primary belongs to another parent, or to none. */
  static notAffiliated(parent: string, property: string, child: string): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `The target is not affiliated with this parent: ${parent}.${property} only takes a ${child} whose ` +
        `parent is this ${parent}. Add the ${child} to this ${parent} first, or pick one of its own.`,
    );
  }

  /** `addPrimaryRelationship` was called twice for the same property. */
  static alreadyRegistered(parent: string, property: string): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `${parent}.${property} is already a primary relationship. Call addPrimaryRelationship() once per property.`,
    );
  }

  /** The ORM has the parent but not its primary table's entity, so it cannot read or write the property. */
  static notConfigured(parent: string, property: string): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `${parent}.${property} is a primary relationship, but this ORM does not know its table. Initialise MikroORM ` +
        `with withPrimaryRelationships(defineCoasterConfig({...})) (withPrimaryRelationships from 'mikro-orm-coaster/primary'), ` +
        `list ${parent} in its entities, and call addPrimaryRelationship() before MikroORM.init().`,
    );
  }

  /** The child's `parentRelation` is not a many-to-one to the parent stored in `parentColumn`. */
  static invalidParentRelation(child: string, parentRelation: string, parentColumn: string, parent: string, actual: string): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `addPrimaryRelationship() needs ${child}.${parentRelation} to be a many-to-one to ${parent} stored in the ` +
        `column '${parentColumn}', but ${actual}. Pass the child's existing many-to-one property and its column.`,
    );
  }

  /** Parent or child has a composite primary key. */
  static compositePrimaryKey(entity: string): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `Primary relationships need single-column primary keys, but ${entity} has a composite one.`,
    );
  }

  /**
   * The primary table's name, or a name derived from it, would be cut by PostgreSQL, whose limit is the
   * narrowest (MariaDB and MySQL take 64 characters): refused on every database.
   */
  static tableNameTooLong(parent: string, property: string, table: string, maxBytes: number): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `The primary table of ${parent}.${property}, '${table}', is ${Buffer.byteLength(table)} bytes long, but PostgreSQL ` +
        `cuts identifiers at 63 bytes and its trigger function adds '_validate': at most ${maxBytes} bytes fit (checked on ` +
        `every database, so that the schema moves to PostgreSQL as it is). Choose a ` +
        `shorter name with the tableName option: addPrimaryRelationship(${parent}, '${property}', ..., { tableName: '...' }) ` +
        `or @PrimaryRelationship(() => Child, ..., { tableName: '...' }).`,
    );
  }

  /** A column of the primary table, named after the parent's or child's table and primary key, would be cut by PostgreSQL (refused on every database). */
  static columnNameTooLong(parent: string, property: string, column: string, maxBytes: number): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `The primary table of ${parent}.${property} would have the column '${column}', named after a table and its primary ` +
        `key, which is ${Buffer.byteLength(column)} bytes long, but PostgreSQL cuts identifiers at ${maxBytes} bytes. ` +
        `Give that entity a shorter tableName or primary key column (fieldName).`,
    );
  }

  /**
   * A table whose comment marks it as a primary table, which a migration recreates, lacks the single-column
   * primary key (the parent) and foreign key (the child) its trigger is built from.
   */
  static unrecognisedPrimaryTable(table: string): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `The table '${table}' has the comment of a primary relationship's table, but not its single-column primary key ` +
        `and foreign key to the child, so the trigger a migration would recreate with it cannot be written. Remove the ` +
        `comment from a table that is not a primary table, or restore its keys in the schema snapshot.`,
    );
  }

  /** The database is none of PostgreSQL, SQLite, MariaDB and MySQL. */
  static unsupportedPlatform(platform: string): PrimaryRelationshipError {
    return new PrimaryRelationshipError(
      `Primary relationships enforce ownership with a trigger on PostgreSQL, SQLite, MariaDB and MySQL only, not on ${platform}.`,
    );
  }
}
