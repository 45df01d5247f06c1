import type { Platform } from '@mikro-orm/core';
import { dialectOf } from '../shared/dialect.js';
import { PrimaryRelationshipError } from './PrimaryRelationshipError.js';

/*
 * The SQL of the trigger that makes the database refuse a primary child owned by another parent.
 * Every statement is a single line, so MikroORM's schema generator and migrator (which split SQL on
 * lines and on `;\n`) keep each one whole.
 */

/** The message both databases raise; PostgreSQL raises it as `foreign_key_violation`. */
const notAffiliatedMessage = 'The target is not affiliated with this parent';

/** Where the rule reads and writes: the primary table, and the child's table and columns. */
export interface PrimaryTableNames {
  /** Schema of the primary table and of its function, if not the connection's default. */
  schema?: string;
  /** The primary table, `<parent table>_<child table>_primary`. */
  table: string;
  /** The primary table's column holding the parent's key. */
  parentColumn: string;
  /** The primary table's column holding the primary child's key. */
  childColumn: string;
  /** The child's table, schema-qualified if needed, as `[schema, table]`. */
  childTable: [string | undefined, string];
  /** The child's primary key column. */
  childPrimaryKey: string;
  /** The child's column pointing to its parent (the `parentcol` given to `addPrimaryRelationship`). */
  childParentColumn: string;
}

/** How a primary table's comment starts: it marks the table as one, in the schema snapshot and the database. */
const commentPrefix = 'mikro-orm-coaster primary relationship, child column naming the parent: ';

/**
 * The comment of a primary table, `mikro-orm-coaster primary relationship, child column naming the parent: <column>`:
 * it marks the table as a primary one where the entities no longer say so (a migration that drops the table of
 * a relationship removed from them drops PostgreSQL's function too), and records the one name its trigger needs
 * that the table's own keys do not give (a down migration recreating the table recreates the trigger). The
 * column is URI-encoded (an identity for letters, digits and `_`): MikroORM writes comments as string literals,
 * which a backslash would break.
 */
export function primaryTableComment(childParentColumn: string): string {
  return `${commentPrefix}${encodeURIComponent(childParentColumn)}`;
}

/** The child's parent column a primary table's comment records; `undefined` for a comment that is not one. */
export function childParentColumnOf(comment: string | undefined): string | undefined {
  return comment?.startsWith(commentPrefix) ? decodeURIComponent(comment.slice(commentPrefix.length)) : undefined;
}

/** Quotes an identifier for PostgreSQL and SQLite alike: double quotes, embedded ones doubled. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A quoted name, schema-qualified when a schema is given. */
export function qualified(schema: string | undefined, name: string): string {
  return schema ? `${quoteIdentifier(schema)}.${quoteIdentifier(name)}` : quoteIdentifier(name);
}

/** The condition, true when the row names a child whose parent is not the row's parent. */
function violation(names: PrimaryTableNames, distinct: string): string {
  const child = qualified(...names.childTable);
  return (
    `exists (select 1 from ${child} where ${quoteIdentifier(names.childPrimaryKey)} = new.${quoteIdentifier(names.childColumn)} ` +
    `and ${quoteIdentifier(names.childParentColumn)} ${distinct} new.${quoteIdentifier(names.parentColumn)})`
  );
}

/** Name of the PostgreSQL function, `<table>_validate`: the longest name derived from a primary table's. */
export function validateFunctionName(table: string): string {
  return `${table}_validate`;
}

/** Name of the PostgreSQL trigger, `<table>_trigger`, and the prefix of SQLite's two. */
function triggerName(table: string): string {
  return `${table}_trigger`;
}

/** A dollar-quote tag that does not occur in `body`. */
function dollarTag(body: string): string {
  let tag = '$$';
  for (let i = 1; body.includes(tag); i++) {
    tag = `$coaster${i}$`;
  }
  return tag;
}

/** PostgreSQL: the function `<table>_validate` and the trigger `<table>_trigger` calling it. */
function postgresCreateTriggerSQL(names: PrimaryTableNames): string[] {
  const fn = qualified(names.schema, validateFunctionName(names.table));
  const body =
    `begin if ${violation(names, 'is distinct from')} then ` +
    `raise foreign_key_violation using message = '${notAffiliatedMessage}'; end if; return new; end`;
  const tag = dollarTag(body);
  return [
    `create or replace function ${fn}() returns trigger language plpgsql as ${tag} ${body} ${tag};`,
    `create trigger ${quoteIdentifier(triggerName(names.table))} before insert or update on ` +
      `${qualified(names.schema, names.table)} for each row execute function ${fn}();`,
  ];
}

/**
 * PostgreSQL: what dropping the table leaves behind. The trigger goes with the table, the function
 * does not.
 */
function postgresDropTriggerSQL(names: Pick<PrimaryTableNames, 'schema' | 'table'>): string[] {
  return [`drop function if exists ${qualified(names.schema, validateFunctionName(names.table))}();`];
}

/**
 * SQLite: triggers `<table>_trigger_insert` and `<table>_trigger_update` (SQLite has no
 * `insert or update` triggers). The message starts like SQLite's own foreign key error, so MikroORM
 * reports a `ForeignKeyConstraintViolationException` on both databases. They go with the table.
 */
function sqliteCreateTriggerSQL(names: PrimaryTableNames): string[] {
  return (['insert', 'update'] as const).map(
    event =>
      `create trigger ${quoteIdentifier(`${triggerName(names.table)}_${event}`)} before ${event} on ${quoteIdentifier(names.table)} ` +
      `for each row when ${violation(names, 'is not')} ` +
      `begin select raise(abort, 'FOREIGN KEY constraint failed: ${notAffiliatedMessage}'); end;`,
  );
}

/** Which trigger SQL a platform takes; throws for databases other than PostgreSQL and SQLite. */
export function triggerDialect(platform: Platform): 'postgresql' | 'sqlite' {
  const dialect = dialectOf(platform);
  if (dialect !== 'postgresql' && dialect !== 'sqlite') {
    throw PrimaryRelationshipError.unsupportedPlatform(platform.constructor.name);
  }
  return dialect;
}

/** The statements creating the trigger (and PostgreSQL's function) of one primary table. */
export function createTriggerSQL(platform: Platform, names: PrimaryTableNames): string[] {
  return triggerDialect(platform) === 'sqlite' ? sqliteCreateTriggerSQL(names) : postgresCreateTriggerSQL(names);
}

/** The statements to run after dropping a primary table (none on SQLite). */
export function dropTriggerSQL(platform: Platform, names: Pick<PrimaryTableNames, 'schema' | 'table'>): string[] {
  return triggerDialect(platform) === 'sqlite' ? [] : postgresDropTriggerSQL(names);
}
