import type { MikroORM } from '@mikro-orm/core';
import { SchemaComparator, type SchemaDifference, SqlSchemaGenerator, type TableDifference } from '@mikro-orm/knex';
import { forgetCachedService, schemasForComparison } from '../shared/internals.js';
import { primaryTableNamesOf, primaryTableOf, primaryTablesOf } from './primaryTables.js';
import { createTriggerSQL, dropTriggerSQL } from './primaryTriggers.js';

/**
 * MikroORM's schema generator, plus the triggers of primary relationships: `createSchema()`,
 * `refreshDatabase()` and `updateSchema()` create them with their tables, and `dropSchema()` drops
 * PostgreSQL's functions (the triggers go with their tables). Registered by `withPrimaryRelationships`
 * through the `extensions` option, so `orm.schema` is one of these, and `CoasterMigrator` computes
 * migrations with one, so `migration:create` writes the triggers too. On SQLite, where MikroORM writes
 * no down migrations, `getUpdateSchemaMigrationSQL()` also gives the down SQL when it can be
 * reverted safely (see {@link CoasterSchemaGenerator.getUpdateSchemaMigrationSQL}).
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init(withPrimaryRelationships(defineCoasterConfig({ ...options }))); // or extensions: [CoasterSchemaGenerator]
 * await orm.schema.refreshDatabase(); // tables, functions and triggers
 * ```
 */
export class CoasterSchemaGenerator extends SqlSchemaGenerator {
  /**
   * Makes `orm.schema` a `CoasterSchemaGenerator`: MikroORM calls it for each class in the `extensions` option,
   * which `withPrimaryRelationships` fills.
   */
  static override register(orm: MikroORM): void {
    const name = '@mikro-orm/schema-generator';
    orm.config.registerExtension(name, () => new CoasterSchemaGenerator(orm.em));
    // MikroORM.init() connects (and, with `ensureDatabase`, caches the default generator) before it
    // registers `extensions`: forget that instance so `orm.schema` builds this one.
    forgetCachedService(orm.config, name);
  }

  /** MikroORM's SQL that creates the schema, plus the triggers (and PostgreSQL's functions) of the primary tables. */
  override async getCreateSchemaSQL(options: Parameters<SqlSchemaGenerator['getCreateSchemaSQL']>[0] = {}): Promise<string> {
    const sql = await super.getCreateSchemaSQL(options);
    return this.append(sql, primaryTablesOf(this.metadata).flatMap(table => createTriggerSQL(this.platform, table)));
  }

  /** MikroORM's SQL that drops the schema, plus PostgreSQL's trigger functions of the primary tables (the triggers go with their tables). */
  override async getDropSchemaSQL(options: Parameters<SqlSchemaGenerator['getDropSchemaSQL']>[0] = {}): Promise<string> {
    const sql = await super.getDropSchemaSQL(options);
    return this.append(sql, primaryTablesOf(this.metadata).flatMap(table => dropTriggerSQL(this.platform, table)));
  }

  /**
   * MikroORM's SQL for `schemaDiff`, plus the triggers (and PostgreSQL's functions) of the primary tables it
   * creates and, with `dropTables` and not `safe`, the functions of those it drops (their triggers go with
   * them): the entities' primary tables, and those of relationships they no longer declare, which the tables'
   * comments mark in schema snapshots and in PostgreSQL's and MariaDB's databases (SQLite keeps no comments).
   */
  override async diffToSQL(schemaDiff: SchemaDifference, options: Parameters<SqlSchemaGenerator['diffToSQL']>[1]): Promise<string> {
    const sql = await super.diffToSQL(schemaDiff, options);
    const known = primaryTablesOf(this.metadata);
    const created = Object.values(schemaDiff.newTables).flatMap(table => primaryTableNamesOf(this.platform, known, table) ?? []);
    const dropped =
      options.dropTables && !options.safe ? Object.values(schemaDiff.removedTables).flatMap(table => primaryTableOf(this.platform, known, table) ?? []) : [];
    return this.append(sql, [
      ...created.flatMap(table => createTriggerSQL(this.platform, table)),
      ...dropped.flatMap(table => dropTriggerSQL(this.platform, table)),
    ]);
  }

  /**
   * MikroORM's up and down SQL from the database (or `options.fromSchema`) to the entities. Where the
   * platform writes no down migrations (SQLite), the down SQL is computed as MikroORM computes it for
   * the others, from the inverse schema diff, with the tables the up creates dropped in reverse
   * dependency order (SQLite checks foreign keys when it drops a table with rows, and has no
   * `cascade`); their triggers go with them. It stays empty when the inverse diff changes columns,
   * foreign keys or checks of an existing table: SQLite can only rebuild such a table (copy,
   * drop, rename), which inside a migration's transaction cannot turn foreign keys off, so the drop
   * would delete or refuse the rows referencing it and lose the table's triggers. It also stays
   * empty when it would add back a `not null` column without a default, which SQLite refuses, and when
   * it would recreate a table the up drops: SQLite keeps no table comments, so a schema read from the
   * database (as the Migrator's snapshot is after `migration:up`) cannot tell a primary table, whose
   * trigger the down would have to recreate, from another.
   *
   * @example
   * ```ts
   * const { up, down } = await orm.schema.getUpdateSchemaMigrationSQL({ wrap: false }); // down on SQLite too
   * ```
   */
  override async getUpdateSchemaMigrationSQL(
    options: Parameters<SqlSchemaGenerator['getUpdateSchemaMigrationSQL']>[0] = {},
  ): Promise<{
    /** The SQL from the database's schema to the entities'. */
    up: string;
    /** The SQL back; empty where it cannot be reverted safely (above). */
    down: string;
  }> {
    if (this.platform.supportsDownMigrations()) {
      return super.getUpdateSchemaMigrationSQL(options);
    }
    if (!options.fromSchema) {
      await this.ensureDatabase();
    }
    // MikroORM's own (private) preparation, so both diffs see the schemas super's would
    const { fromSchema, toSchema } = await schemasForComparison(this, options);
    const comparator = new SchemaComparator(this.platform);
    const diffUp = comparator.compare(fromSchema, toSchema);
    const diffDown = comparator.compare(toSchema, fromSchema, diffUp);
    const revertible =
      Object.keys(diffDown.newTables).length === 0 &&
      Object.values(diffDown.changedTables).every(
        table =>
          rebuildingChanges.every(key => Object.keys(table[key]).length === 0) &&
          Object.values(table.addedColumns).every(column => column.nullable || column.default != null),
      );
    return {
      up: await this.diffToSQL(diffUp, options),
      down: revertible
        ? await this.diffToSQL({ ...diffDown, removedTables: Object.fromEntries(Object.entries(diffDown.removedTables).reverse()) }, options)
        : '',
    };
  }

  /** Adds statements as a group of their own, after what MikroORM generated. */
  private append(sql: string, statements: string[]): string {
    return statements.length === 0 ? sql : `${sql}${sql.endsWith('\n') || sql === '' ? '' : '\n'}\n${statements.join('\n')}\n`;
  }
}

/** The changes of an existing table that SQLite can only make by rebuilding it. */
const rebuildingChanges = [
  'changedColumns',
  'addedForeignKeys',
  'changedForeignKeys',
  'removedForeignKeys',
  'addedChecks',
  'changedChecks',
  'removedChecks',
] as const satisfies readonly (keyof TableDifference)[];
