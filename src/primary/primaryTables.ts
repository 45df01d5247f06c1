import type { MetadataStorage, Platform } from '@mikro-orm/core';
import type { DatabaseTable } from '@mikro-orm/knex';
import { configuredRelationships } from './primaryRelationship.js';
import { PrimaryRelationshipError } from './PrimaryRelationshipError.js';
import { childParentColumnOf, type PrimaryTableNames } from './primaryTriggers.js';

/** The primary tables of the relationships of the ORM whose metadata is `metadata`, with that ORM's names. */
export function primaryTablesOf(metadata: MetadataStorage): PrimaryTableNames[] {
  return configuredRelationships(metadata).map(relationship => relationship.names);
}

/*
 * A table of a schema diff (from the entities, the database or a schema snapshot) is a primary table when the
 * entities' relationships name it (`known`, an ORM's primaryTablesOf) or, for one whose relationship they no
 * longer declare, when its comment says so (see primaryTableComment).
 */

/** Whether `names` are those of `table`. */
function naming(table: DatabaseTable): (names: PrimaryTableNames) => boolean {
  return names => names.table === table.name && (!names.schema || names.schema === table.schema);
}

/** `schema`, unless it is the platform's default (PostgreSQL's `public`), which the trigger SQL leaves implicit. */
function explicitSchema(platform: Platform, schema: string | undefined): string | undefined {
  return schema === platform.getDefaultSchemaName() ? undefined : schema;
}

/** The schema and name of `table` if it is a primary table (what dropping it leaves behind needs). */
export function primaryTableOf(platform: Platform, known: readonly PrimaryTableNames[], table: DatabaseTable): Pick<PrimaryTableNames, 'schema' | 'table'> | undefined {
  return known.find(naming(table)) ?? (childParentColumnOf(table.comment) === undefined ? undefined : { schema: explicitSchema(platform, table.schema), table: table.name });
}

/**
 * The names of `table`'s trigger if it is a primary table. Those of a table the entities no longer declare are
 * what it records: the child's parent column in its comment, its parent column as its primary key, its child
 * column, the child's table and primary key in its other foreign key.
 * @throws {PrimaryRelationshipError} for a table with a primary table's comment but not its keys.
 */
export function primaryTableNamesOf(platform: Platform, known: readonly PrimaryTableNames[], table: DatabaseTable): PrimaryTableNames | undefined {
  const childParentColumn = childParentColumnOf(table.comment);
  const names = known.find(naming(table));
  if (names || childParentColumn === undefined) {
    return names;
  }
  const [parentColumn, ...more] = table.getPrimaryKey()?.columnNames ?? [];
  const child = Object.values(table.getForeignKeys()).find(fk => fk.columnNames.length === 1 && fk.columnNames[0] !== parentColumn);
  if (parentColumn === undefined || more.length > 0 || !child || child.referencedColumnNames.length !== 1) {
    throw PrimaryRelationshipError.unrecognisedPrimaryTable(table.name);
  }
  // MikroORM qualifies a referenced table with its schema, if any, as `schema.table`
  const dot = child.referencedTableName.indexOf('.');
  const childSchema = dot < 0 ? undefined : child.referencedTableName.slice(0, dot);
  return {
    schema: explicitSchema(platform, table.schema),
    table: table.name,
    parentColumn,
    childColumn: child.columnNames[0],
    childTable: [explicitSchema(platform, childSchema), child.referencedTableName.slice(dot + 1)],
    childPrimaryKey: child.referencedColumnNames[0],
    childParentColumn,
  };
}
