import type { MikroORM } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { Migrator } from '@mikro-orm/migrations';
import { useSchemaGenerator } from '../shared/internals.js';
import { CoasterSchemaGenerator } from './CoasterSchemaGenerator.js';

/**
 * MikroORM's Migrator, computing its migrations with {@link CoasterSchemaGenerator} instead of a plain
 * `SqlSchemaGenerator`: an initial migration (`--initial`) creates every primary table's trigger (and
 * PostgreSQL's function), a migration from a schema diff creates those of the tables it creates and drops
 * the functions of the tables it drops, and on SQLite, where MikroORM writes no `down()`, it gets the down
 * SQL of {@link CoasterSchemaGenerator.getUpdateSchemaMigrationSQL}. The file is written by the generator
 * MikroORM picks for `migrations.emit`, or by your `migrations.generator`. `withPrimaryRelationships` adds it
 * to `extensions`, after yours, so `orm.migrator` and `mikro-orm migration:create` use it. To customise the
 * Migrator, extend this class (and list yours in `extensions`), not MikroORM's.
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init(withPrimaryRelationships(defineCoasterConfig({ ...options }))); // or extensions: [CoasterMigrator]
 * await orm.migrator.createMigration(); // triggers included
 * ```
 */
export class CoasterMigrator extends Migrator {
  constructor(em: EntityManager) {
    super(em);
    useSchemaGenerator(this, new CoasterSchemaGenerator(em));
  }

  /** Registers this class (or the subclass it is called on) as the ORM's Migrator, `orm.migrator`. */
  static override register(orm: MikroORM): void {
    orm.config.registerExtension('@mikro-orm/migrator', () => new this(orm.em as EntityManager));
  }
}
