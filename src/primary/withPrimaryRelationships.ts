import type { AnyEntity, Configuration, EntityMetadata, EntitySchema, MetadataStorage, Options, Platform } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { Migrator } from '@mikro-orm/migrations';
import { afterHook } from '../shared/afterHook.js';
import { dialectOf } from '../shared/dialect.js';
import { CoasterConfigError } from '../shared/CoasterConfigError.js';
import { CoasterMigrator } from './CoasterMigrator.js';
import { CoasterSchemaGenerator } from './CoasterSchemaGenerator.js';
import { checkDiscoveredRelationships, configuredRelationships, discoverPrimaryRelationship, primaryRelationshipsFor } from './primaryRelationship.js';
import { PrimaryRelationshipSubscriber } from './PrimaryRelationshipSubscriber.js';
import { applyOnce, extendOptions } from '../shared/options.js';
import { enforcingForeignKeys } from '../shared/sqliteConnections.js';

/** Whether `value` is `base` or a class extending it. */
function isClass(value: unknown, base: Function): boolean {
  return value === base || (typeof value === 'function' && value.prototype instanceof base);
}

/**
 * Throws {@link CoasterConfigError} when the ORM's extensions hold a Migrator of the application's that
 * extends MikroORM's rather than {@link CoasterMigrator}: the CoasterMigrator that {@link withPrimaryRelationships}
 * adds after it would replace it.
 */
function checkMigrator(config: Configuration): void {
  const own = config
    .get('extensions')
    .filter((extension): extension is typeof Migrator => isClass(extension, Migrator))
    .find(migrator => migrator !== Migrator && !isClass(migrator, CoasterMigrator));
  if (own) {
    throw CoasterConfigError.migratorNotCoasterMigrator(own.name);
  }
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
  const extensions = config.get('extensions');
  if (!extensions.some(extension => isClass(extension, CoasterSchemaGenerator))) {
    throw CoasterConfigError.optionReplaced(feature, 'extensions', 'CoasterSchemaGenerator');
  }
  // the last Migrator listed registers last, and is the ORM's
  if (!isClass(extensions.findLast(extension => isClass(extension, Migrator)), CoasterMigrator)) {
    throw CoasterConfigError.optionReplaced(feature, 'extensions', 'CoasterMigrator, after any Migrator');
  }
}

/**
 * Returns `options` with what primary relationships need from the ORM: the primary tables' entities, the
 * discovery hooks that name them, the flush subscriber that writes them, the schema generator that
 * creates their triggers and the Migrator whose migrations do ({@link CoasterSchemaGenerator} and
 * {@link CoasterMigrator}, in `extensions`); on SQLite, a `pool.afterCreate` that turns foreign keys on
 * for every connection (the primary tables' foreign keys and ON DELETE CASCADE rely on them). The
 * caller's hooks, subscribers, extensions, `pool.afterCreate` and `migrations` options are kept;
 * CoasterMigrator comes after their extensions, so it replaces a MikroORM `Migrator` listed there, and
 * `MikroORM.init` throws {@link CoasterConfigError} for a Migrator of theirs that does not extend
 * CoasterMigrator. Options that replace these after it (spread over its result) make `MikroORM.init`
 * throw {@link CoasterConfigError} too. `defineCoasterConfig` does not apply
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
          checkMigrator(platform.getConfig());
          checkOptions(storage, platform.getConfig());
          // discovery comes before MikroORM opens the pool, and only then is the platform known; withManagedSessions
          // does the same, and the pragma runs once however many of them asked for it
          if (dialectOf(platform) === 'sqlite') {
            platform.getConfig().set('pool', enforcingForeignKeys(platform.getConfig().get('pool')));
          }
        }),
    },
    subscribers: [...(options.subscribers ?? []), new PrimaryRelationshipSubscriber()],
    // after the application's extensions, so that it replaces a Migrator listed there, unless one extends it
    extensions: [
      ...(options.extensions ?? []),
      CoasterSchemaGenerator,
      ...(options.extensions?.some(extension => isClass(extension, CoasterMigrator)) ? [] : [CoasterMigrator]),
    ],
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
