import type { MigrationDiff } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { TSMigrationGenerator } from '@mikro-orm/migrations';
import { primaryTablesOf } from './primaryTables.js';
import { createTriggerSQL, dropTriggerSQL } from './primaryTriggers.js';

/**
 * MikroORM's TypeScript migration generator, plus the triggers of primary relationships: where a
 * migration creates a primary table it also creates its trigger (and PostgreSQL's function), and
 * where it drops one it also drops the function. Set by `defineCoasterConfig` as
 * `migrations.generator`, so `mikro-orm migration:create` writes them; a later diff never sees the
 * triggers, so the next `migration:create` emits nothing for them again.
 *
 * @example
 * ```ts
 * export default defineCoasterConfig({
 *   driver: PostgreSqlDriver,
 *   extensions: [Migrator],
 *   migrations: { path: 'migrations', emit: 'ts' }, // generator: CoasterMigrationGenerator is the default
 * });
 * ```
 */
export class CoasterMigrationGenerator extends TSMigrationGenerator {
  override generateMigrationFile(className: string, diff: MigrationDiff): string {
    return super.generateMigrationFile(className, this.withPrimaryTriggers(diff));
  }

  /** Adds trigger statements after each direction's statements that create or drop a primary table. */
  withPrimaryTriggers(diff: MigrationDiff): MigrationDiff {
    const driver = this.driver as AbstractSqlDriver;
    const knex = driver.getConnection().getKnex();
    const platform = driver.getPlatform();
    const withTriggers = (statements: string[]) => {
      const added: string[] = [];
      for (const table of primaryTablesOf(driver.getMetadata())) {
        const quoted = knex.raw('??', [table.schema ? `${table.schema}.${table.table}` : table.table]).toQuery();
        if (statements.some(sql => sql.startsWith(`create table ${quoted} (`))) {
          added.push(...createTriggerSQL(platform, table));
        }
        if (statements.some(sql => sql.startsWith(`drop table if exists ${quoted}`))) {
          added.push(...dropTriggerSQL(platform, table));
        }
      }
      return added.length === 0 ? statements : [...statements, '', ...added];
    };
    return { up: withTriggers(diff.up), down: withTriggers(diff.down) };
  }
}
