import type { Platform } from '@mikro-orm/core';
import { dialectOf } from '../shared/dialect.js';
import { PrimaryRelationshipError } from './PrimaryRelationshipError.js';

/*
 * The SQL of the trigger that makes the database refuse a primary child owned by another parent.
 * Every statement is a single line, so MikroORM's schema generator and migrator (which split SQL on
 * lines and on `;\n`) keep each one whole.
 */

/**
 * The message every database raises, as a foreign key violation: PostgreSQL's `foreign_key_violation`,
 * MariaDB's errno 1452 (`ER_NO_REFERENCED_ROW_2`), after SQLite's own foreign key message.
 */
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

/** The databases primary relationships have a trigger for. */
export type TriggerDialect = 'postgresql' | 'sqlite' | 'mysql';

/**
 * Quotes an identifier as `dialect` does: backticks on MariaDB and MySQL, double quotes on PostgreSQL and
 * SQLite, the quote character doubled inside. (MikroORM's `platform.quoteIdentifier` splits a name at a dot.)
 */
export function quoteIdentifier(dialect: TriggerDialect, name: string): string {
  const quote = dialect === 'mysql' ? '`' : '"';
  return `${quote}${name.replaceAll(quote, quote + quote)}${quote}`;
}

/** A quoted name, schema-qualified when a schema is given. */
export function qualified(dialect: TriggerDialect, schema: string | undefined, name: string): string {
  return schema ? `${quoteIdentifier(dialect, schema)}.${quoteIdentifier(dialect, name)}` : quoteIdentifier(dialect, name);
}

/** The condition, true when the row names a child whose parent is not the row's parent. */
function violation(dialect: TriggerDialect, names: PrimaryTableNames): string {
  const quote = (name: string) => quoteIdentifier(dialect, name);
  const [childParent, rowParent] = [quote(names.childParentColumn), `new.${quote(names.parentColumn)}`];
  // null-safe inequality: a child without a parent is no child of the row's parent
  const differs = {
    postgresql: `${childParent} is distinct from ${rowParent}`,
    sqlite: `${childParent} is not ${rowParent}`,
    mysql: `not (${childParent} <=> ${rowParent})`,
  }[dialect];
  return (
    `exists (select 1 from ${qualified(dialect, ...names.childTable)} where ${quote(names.childPrimaryKey)} = ` +
    `new.${quote(names.childColumn)} and ${differs})`
  );
}

/** Name of the PostgreSQL function, `<table>_validate`: the longest name derived from a primary table's. */
export function validateFunctionName(table: string): string {
  return `${table}_validate`;
}

/** Name of the PostgreSQL trigger, `<table>_trigger`, and the prefix of SQLite's two (MariaDB's are shorter). */
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
  const fn = qualified('postgresql', names.schema, validateFunctionName(names.table));
  const body =
    `begin if ${violation('postgresql', names)} then ` +
    `raise foreign_key_violation using message = '${notAffiliatedMessage}'; end if; return new; end`;
  const tag = dollarTag(body);
  return [
    `create or replace function ${fn}() returns trigger language plpgsql as ${tag} ${body} ${tag};`,
    `create trigger ${quoteIdentifier('postgresql', triggerName(names.table))} before insert or update on ` +
      `${qualified('postgresql', names.schema, names.table)} for each row execute function ${fn}();`,
  ];
}

/**
 * PostgreSQL: what dropping the table leaves behind. The trigger goes with the table, the function
 * does not.
 */
function postgresDropTriggerSQL(names: Pick<PrimaryTableNames, 'schema' | 'table'>): string[] {
  return [`drop function if exists ${qualified('postgresql', names.schema, validateFunctionName(names.table))}();`];
}

/**
 * SQLite: triggers `<table>_trigger_insert` and `<table>_trigger_update` (SQLite has no
 * `insert or update` triggers). The message starts like SQLite's own foreign key error, so MikroORM
 * reports a `ForeignKeyConstraintViolationException` there as on PostgreSQL. They go with the table.
 */
function sqliteCreateTriggerSQL(names: PrimaryTableNames): string[] {
  return (['insert', 'update'] as const).map(
    event =>
      `create trigger ${quoteIdentifier('sqlite', `${triggerName(names.table)}_${event}`)} before ${event} on ${quoteIdentifier('sqlite', names.table)} ` +
      `for each row when ${violation('sqlite', names)} ` +
      `begin select raise(abort, 'FOREIGN KEY constraint failed: ${notAffiliatedMessage}'); end;`,
  );
}

/**
 * MariaDB and MySQL: triggers `<table>_insert` and `<table>_update` (no `insert or update` triggers there
 * either; a `_trigger` infix would take a 54-byte table name past the 64-character identifiers). They
 * signal SQLSTATE 23000 with errno 1452, a foreign key error's, so MikroORM's exception converter (which
 * reads the errno) reports a `ForeignKeyConstraintViolationException` through either driver. Each is one
 * line, a single statement needing no `DELIMITER`. They go with the table.
 */
function mysqlCreateTriggerSQL(names: PrimaryTableNames): string[] {
  return (['insert', 'update'] as const).map(
    event =>
      `create trigger ${qualified('mysql', names.schema, mysqlTriggerName(names.table, event))} before ${event} on ` +
      `${qualified('mysql', names.schema, names.table)} for each row begin if ${violation('mysql', names)} then ` +
      `signal sqlstate '23000' set message_text = '${notAffiliatedMessage}', mysql_errno = 1452; end if; end;`,
  );
}

/** Name of a MariaDB/MySQL trigger, `<table>_insert` or `<table>_update`. */
function mysqlTriggerName(table: string, event: 'insert' | 'update'): string {
  return `${table}_${event}`;
}

/**
 * Which trigger SQL a platform takes: PostgreSQL's, SQLite's, or that of the MySQL family (MariaDB and MySQL
 * through `@mikro-orm/mariadb` or `@mikro-orm/mysql`); throws for other databases.
 */
export function triggerDialect(platform: Platform): TriggerDialect {
  const dialect = dialectOf(platform);
  if (dialect === 'other') {
    throw PrimaryRelationshipError.unsupportedPlatform(platform.constructor.name);
  }
  return dialect;
}

/** The statements creating the triggers (and PostgreSQL's function) of one primary table. */
export function createTriggerSQL(platform: Platform, names: PrimaryTableNames): string[] {
  const create = { postgresql: postgresCreateTriggerSQL, sqlite: sqliteCreateTriggerSQL, mysql: mysqlCreateTriggerSQL };
  return create[triggerDialect(platform)](names);
}

/** The statements to run after dropping a primary table: PostgreSQL's function (the triggers go with the table). */
export function dropTriggerSQL(platform: Platform, names: Pick<PrimaryTableNames, 'schema' | 'table'>): string[] {
  return triggerDialect(platform) === 'postgresql' ? postgresDropTriggerSQL(names) : [];
}
