import type { Constructor, IMigrationGenerator, MaybePromise, MigrationDiff, MigrationsOptions, NamingStrategy } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { JSMigrationGenerator, type Migrator, TSMigrationGenerator } from '@mikro-orm/migrations';
import { schemaFromSnapshot } from '../shared/internals.js';
import { CoasterSchemaGenerator } from './CoasterSchemaGenerator.js';
import { primaryTablesOf } from './primaryTables.js';
import { createTriggerSQL, dropTriggerSQL } from './primaryTriggers.js';

/**
 * A migration generator that adds the triggers of primary relationships to what another generator
 * writes: where a migration creates a primary table it also creates its trigger (and PostgreSQL's
 * function), and where it drops one it also drops the function. The file itself is written by the
 * generator MikroORM picks for `migrations.emit` (`TSMigrationGenerator` for `'ts'`,
 * `JSMigrationGenerator` for `'js'` and `'cjs'`), or by the one given to {@link CoasterMigrationGenerator.around}.
 * `withPrimaryRelationships` sets it as `migrations.generator`, around yours if you give one, so
 * `mikro-orm migration:create` writes the triggers; a later diff never sees them, so the next
 * `migration:create` emits nothing for them again.
 *
 * On SQLite, where MikroORM writes no `down()`, a migration created from a schema diff gets the down
 * SQL of {@link CoasterSchemaGenerator.getUpdateSchemaMigrationSQL}: it drops the tables the
 * migration created (their triggers go with them) and undoes added columns and indexes, unless the
 * diff needs SQLite to rebuild a table; then, as before, `migration:down` refuses to revert it.
 *
 * @example
 * ```ts
 * export default withPrimaryRelationships(defineCoasterConfig({
 *   driver: PostgreSqlDriver,
 *   extensions: [Migrator],
 *   migrations: { path: 'migrations', emit: 'js' }, // generator: CoasterMigrationGenerator around JSMigrationGenerator
 * }));
 * ```
 */
export class CoasterMigrationGenerator implements IMigrationGenerator {
  /** The class of {@link CoasterMigrationGenerator.inner}, when set by {@link CoasterMigrationGenerator.around}. */
  protected static readonly innerClass?: Constructor<IMigrationGenerator>;

  /** The generator that writes the migration files. */
  protected readonly inner: IMigrationGenerator;

  constructor(
    protected readonly driver: AbstractSqlDriver,
    namingStrategy: NamingStrategy,
    protected readonly options: MigrationsOptions,
  ) {
    const Inner =
      (new.target as typeof CoasterMigrationGenerator).innerClass ??
      (options.emit === 'js' || options.emit === 'cjs' ? JSMigrationGenerator : TSMigrationGenerator);
    this.inner = new Inner(driver, namingStrategy, options);
  }

  /**
   * The generator class that adds the triggers to the files `generator` writes (a generator of your
   * own, say); `CoasterMigrationGenerator` itself for none. A generator that already adds them is
   * returned as it is. `withPrimaryRelationships` applies it to `migrations.generator`.
   *
   * @example
   * ```ts
   * class HeaderGenerator extends TSMigrationGenerator {
   *   override generateMigrationFile(className: string, diff: MigrationDiff) {
   *     return `// generated\n${super.generateMigrationFile(className, diff)}`;
   *   }
   * }
   * migrations: { generator: CoasterMigrationGenerator.around(HeaderGenerator) }
   * ```
   */
  static around(generator: Constructor<IMigrationGenerator> | undefined): Constructor<IMigrationGenerator> {
    if (!generator) {
      return CoasterMigrationGenerator;
    }
    if (generator === CoasterMigrationGenerator || generator.prototype instanceof CoasterMigrationGenerator) {
      return generator;
    }
    let wrapped = wrappedGenerators.get(generator);
    if (!wrapped) {
      wrapped = class extends CoasterMigrationGenerator {
        protected static override readonly innerClass = generator;
      };
      wrappedGenerators.set(generator, wrapped);
    }
    return wrapped;
  }

  /** Writes the migration file of `diff` with the inner generator, the triggers added (and SQLite's down). */
  async generate(diff: MigrationDiff, path?: string, name?: string): Promise<[string, string]> {
    const withTriggers = this.withPrimaryTriggers(diff);
    const down = withTriggers.down.length > 0 ? withTriggers.down : await this.sqliteDown(withTriggers.up);
    return this.inner.generate({ up: withTriggers.up, down }, path, name);
  }

  /** The inner generator's statement line. */
  createStatement(sql: string, padLeft: number): string {
    return this.inner.createStatement(sql, padLeft);
  }

  /** The inner generator's file for `diff` as given: {@link CoasterMigrationGenerator.generate} adds the triggers. */
  generateMigrationFile(className: string, diff: MigrationDiff): MaybePromise<string> {
    return this.inner.generateMigrationFile(className, diff);
  }

  /**
   * Adds trigger statements after each direction's statements that create or drop a primary table,
   * creations first, as `CoasterSchemaGenerator.diffToSQL` does.
   */
  withPrimaryTriggers(diff: MigrationDiff): MigrationDiff {
    const driver = this.driver;
    const knex = driver.getConnection().getKnex();
    const platform = driver.getPlatform();
    const withTriggers = (statements: string[]) => {
      const quoted = (table: { schema?: string; table: string }) =>
        knex.raw('??', [table.schema ? `${table.schema}.${table.table}` : table.table]).toQuery();
      const tables = primaryTablesOf(driver.getMetadata());
      const added = [
        ...tables
          .filter(table => statements.some(sql => sql.startsWith(`create table ${quoted(table)} (`)))
          .flatMap(table => createTriggerSQL(platform, table)),
        ...tables
          .filter(table => statements.some(sql => sql.startsWith(`drop table if exists ${quoted(table)}`)))
          .flatMap(table => dropTriggerSQL(platform, table)),
      ];
      return added.length === 0 ? statements : [...statements, '', ...added];
    };
    return { up: withTriggers(diff.up), down: withTriggers(diff.down) };
  }

  /**
   * The down statements MikroORM leaves out on SQLite: the inverse of the diff the Migrator computed
   * from its schema snapshot (or the database), provided `up` is that diff's SQL (an initial
   * migration's need not be); otherwise none.
   */
  private async sqliteDown(up: string[]): Promise<string[]> {
    const platform = this.driver.getPlatform();
    if (platform.supportsDownMigrations()) {
      return []; // MikroORM computed the down itself, and found none (as for initial migrations)
    }
    // the Migrator running this generator (the extension `orm.migrator` resolves), for its snapshot
    const em = this.driver.createEntityManager();
    const migrator = platform.getExtension<Migrator>('Migrator', '@mikro-orm/migrator', '@mikro-orm/migrations', em);
    const fromSchema = schemaFromSnapshot(migrator);
    const sql = await new CoasterSchemaGenerator(this.driver).getUpdateSchemaMigrationSQL({
      wrap: false,
      safe: this.options.safe,
      dropTables: this.options.dropTables,
      fromSchema,
    });
    const squashed = (text: string) => text.replace(/\s+/g, '');
    if (squashed(sql.up) !== squashed(up.join(''))) {
      return [];
    }
    // one statement a line, a blank line between groups, as the Migrator splits the up SQL
    const statements = sql.down.split(/(?<=;)\n/).flatMap(chunk => (chunk.startsWith('\n') ? ['', chunk.trim()] : [chunk.trim()]));
    while (statements.length > 0 && statements[statements.length - 1] === '') {
      statements.pop();
    }
    return statements;
  }
}

/** The classes {@link CoasterMigrationGenerator.around} made, so each generator gets one. */
const wrappedGenerators = new WeakMap<Constructor<IMigrationGenerator>, Constructor<IMigrationGenerator>>();
