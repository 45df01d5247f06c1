import type { MikroORM } from '@mikro-orm/core';
import { type SchemaDifference, SqlSchemaGenerator } from '@mikro-orm/knex';
import { primaryTablesOf } from './primaryTables.js';
import { createTriggerSQL, dropTriggerSQL, type PrimaryTableNames } from './primaryTriggers.js';

/**
 * MikroORM's schema generator, plus the triggers of primary relationships: `createSchema()`,
 * `refreshDatabase()` and `updateSchema()` create them with their tables, and `dropSchema()` drops
 * PostgreSQL's functions (the triggers go with their tables). Registered by `defineCoasterConfig`
 * through the `extensions` option, so `orm.schema` is one of these.
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init(defineCoasterConfig({ ...options })); // or extensions: [CoasterSchemaGenerator]
 * await orm.schema.refreshDatabase(); // tables, functions and triggers
 * ```
 */
export class CoasterSchemaGenerator extends SqlSchemaGenerator {
  static override register(orm: MikroORM): void {
    const name = '@mikro-orm/schema-generator';
    orm.config.registerExtension(name, () => new CoasterSchemaGenerator(orm.em));
    // MikroORM.init() connects (and, with `ensureDatabase`, caches the default generator) before it
    // registers `extensions`: forget that instance so `orm.schema` builds this one.
    (orm.config as unknown as { cache: Map<string, unknown> }).cache.delete(name);
  }

  override async getCreateSchemaSQL(options: Parameters<SqlSchemaGenerator['getCreateSchemaSQL']>[0] = {}): Promise<string> {
    const sql = await super.getCreateSchemaSQL(options);
    return this.append(sql, primaryTablesOf(this.metadata).flatMap(table => createTriggerSQL(this.platform, table)));
  }

  override async getDropSchemaSQL(options: Parameters<SqlSchemaGenerator['getDropSchemaSQL']>[0] = {}): Promise<string> {
    const sql = await super.getDropSchemaSQL(options);
    return this.append(sql, primaryTablesOf(this.metadata).flatMap(table => dropTriggerSQL(this.platform, table)));
  }

  override async diffToSQL(schemaDiff: SchemaDifference, options: Parameters<SqlSchemaGenerator['diffToSQL']>[1]): Promise<string> {
    const sql = await super.diffToSQL(schemaDiff, options);
    const named = (tables: SchemaDifference['newTables']) => (table: PrimaryTableNames) =>
      Object.values(tables).some(t => t.name === table.table && (!table.schema || t.schema === table.schema));
    const primaryTables = primaryTablesOf(this.metadata);
    const dropped = options.dropTables && !options.safe ? primaryTables.filter(named(schemaDiff.removedTables)) : [];
    return this.append(sql, [
      ...primaryTables.filter(named(schemaDiff.newTables)).flatMap(table => createTriggerSQL(this.platform, table)),
      ...dropped.flatMap(table => dropTriggerSQL(this.platform, table)),
    ]);
  }

  /** Adds statements as a group of their own, after what MikroORM generated. */
  private append(sql: string, statements: string[]): string {
    return statements.length === 0 ? sql : `${sql}${sql.endsWith('\n') || sql === '' ? '' : '\n'}\n${statements.join('\n')}\n`;
  }
}
