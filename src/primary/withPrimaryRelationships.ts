import type { AnyEntity, Configuration, EntityMetadata, EntitySchema, MetadataStorage, Options, Platform } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { afterHook } from '../shared/afterHook.js';
import { dialectOf } from '../shared/dialect.js';
import { CoasterConfigError } from '../shared/CoasterConfigError.js';
import { CoasterMigrationGenerator } from './CoasterMigrationGenerator.js';
import { CoasterSchemaGenerator } from './CoasterSchemaGenerator.js';
import { checkDiscoveredRelationships, configuredRelationships, discoverPrimaryRelationship, primaryRelationshipsFor } from './primaryRelationship.js';
import { PrimaryRelationshipSubscriber } from './PrimaryRelationshipSubscriber.js';
import { applyOnce, extendOptions } from '../shared/options.js';
import { runningOnEveryConnection } from '../shared/sqliteConnections.js';

/** Whether `value` is `base` or a class extending it. */
function isClass(value: unknown, base: Function): boolean {
  return value === base || (typeof value === 'function' && value.prototype instanceof base);
}

/**
 * Checks, once discovery is done, that what {@link withPrimaryRelationships} added for the
 * relationships of this ORM was not replaced since (options spread over its result).
 */
function checkOptions(storage: MetadataStorage, config: Configuration): void {
  if (configuredRelationships(storage).length === 0) {
    return;
  }
  const feature = 'Primary relationships';
  if (![...config.get('subscribers')].some(s => s instanceof PrimaryRelationshipSubscriber)) {
    throw CoasterConfigError.optionReplaced(feature, 'subscribers', 'a PrimaryRelationshipSubscriber');
  }
  if (!config.get('extensions').some(extension => isClass(extension, CoasterSchemaGenerator))) {
    throw CoasterConfigError.optionReplaced(feature, 'extensions', 'CoasterSchemaGenerator');
  }
  if (!isClass(config.get('migrations').generator, CoasterMigrationGenerator)) {
    throw CoasterConfigError.optionReplaced(feature, 'migrations', 'generator: CoasterMigrationGenerator');
  }
}

/**
 * Returns `options` with what primary relationships need from the ORM: the primary tables' entities, the
 * discovery hooks that name them, the flush subscriber that writes them, the schema generator that
 * creates their triggers and the migration generator that emits them; on SQLite, a `pool.afterCreate`
 * that turns foreign keys on for every connection (the primary tables' foreign keys and ON DELETE CASCADE
 * rely on them). The caller's hooks, subscribers, extensions and `pool.afterCreate` are kept, and a
 * `migrations.generator` of theirs writes the files, with the triggers added (see
 * {@link CoasterMigrationGenerator.around}). Options that replace these after it (spread over its
 * result) make `MikroORM.init` throw {@link CoasterConfigError}. `defineCoasterConfig` does not apply
 * it, so an application without primary relationships needs no `@mikro-orm/migrations`; an ORM whose
 * entities declare one without it fails at `MikroORM.init` with `PrimaryRelationshipError`.
 * Options it already went through are returned as they are, and it may wrap `defineCoasterConfig`'s
 * result or go inside its argument.
 *
 * `entities` (and `entitiesTs`) are read when MikroORM reads the options, so a relationship declared
 * after `withPrimaryRelationships()` but before `MikroORM.init()` is included.
 *
 * @example
 * ```ts
 * import { defineCoasterConfig } from 'mikro-orm-coaster';
 * import { withPrimaryRelationships } from 'mikro-orm-coaster/primary';
 *
 * export default withPrimaryRelationships(defineCoasterConfig({ driver: SqliteDriver, dbName: 'app.sqlite', entities: [User, UserEmail] }));
 * ```
 */
export function withPrimaryRelationships<O extends Options<AbstractSqlDriver>>(options: O): O {
  return applyOnce('primary relationships', options, addPrimaryRelationships);
}

function addPrimaryRelationships<O extends Options<AbstractSqlDriver>>(options: O): O {
  const withLinks = (list: NonNullable<O['entities']>) => {
    const links = primaryRelationshipsFor([...list, ...(options.entitiesTs ?? [])]).map(d => d.link as EntitySchema<AnyEntity>);
    return [...list, ...links.filter(link => !list.includes(link))];
  };
  const discovery = options.discovery ?? {};
  const result = extendOptions<Options<AbstractSqlDriver>>(options, {
    discovery: {
      ...discovery,
      onMetadata: (meta: EntityMetadata, platform: Platform) =>
        afterHook(discovery.onMetadata?.(meta, platform), () => discoverPrimaryRelationship(meta, platform)),
      afterDiscovered: (storage, platform) =>
        afterHook(discovery.afterDiscovered?.(storage, platform), () => {
          checkDiscoveredRelationships(storage, platform);
          checkOptions(storage, platform.getConfig());
          // discovery comes before MikroORM opens the pool, and only then is the platform known. MikroORM turns
          // foreign keys on once, when it connects, so a connection the pool opens later would not enforce them.
          if (dialectOf(platform) === 'sqlite') {
            platform.getConfig().set('pool', runningOnEveryConnection(platform.getConfig().get('pool'), 'foreign_keys = on'));
          }
        }),
    },
    subscribers: [...(options.subscribers ?? []), new PrimaryRelationshipSubscriber()],
    extensions: [...(options.extensions ?? []), CoasterSchemaGenerator],
    migrations: { ...options.migrations, generator: CoasterMigrationGenerator.around(options.migrations?.generator) },
  }) as O;
  for (const key of ['entities', 'entitiesTs'] as const) {
    let list = options[key];
    if (key === 'entities' || list) {
      Object.defineProperty(result, key, {
        get: () => withLinks(list ?? []),
        set: (value: O[typeof key]) => (list = value),
        enumerable: true,
        configurable: true,
      });
    }
  }
  return result;
}
