import type { AnyEntity, EntityMetadata, EntitySchema, MaybePromise, Options, Platform } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { CoasterMigrationGenerator } from './CoasterMigrationGenerator.js';
import { CoasterSchemaGenerator } from './CoasterSchemaGenerator.js';
import { primaryRelationships, primaryRelationshipsFor } from './primaryRelationship.js';
import { PrimaryRelationshipSubscriber } from './PrimaryRelationshipSubscriber.js';

function then(first: MaybePromise<void> | undefined, next: () => void): MaybePromise<void> {
  return first instanceof Promise ? first.then(next) : next();
}

/**
 * What primary relationships need from the ORM's options, for `defineCoasterConfig`: the primary
 * tables' entities, the discovery hooks that name them, the flush subscriber that writes them, the
 * schema generator that creates their triggers and the migration generator that emits them.
 * The caller's hooks, subscribers, extensions and `migrations.generator` are kept. The hooks and the
 * subscriber see every relationship declared so far, so one declared too late is reported at discovery.
 */
export function withPrimaryRelationships<O extends Options<AbstractSqlDriver>>(options: O): O {
  const entities = [...(options.entities ?? []), ...(options.entitiesTs ?? [])];
  const links = primaryRelationshipsFor(entities).map(definition => definition.link as EntitySchema<AnyEntity>);
  const discovery = options.discovery ?? {};
  return {
    ...options,
    entities: [...(options.entities ?? []), ...links],
    ...(options.entitiesTs ? { entitiesTs: [...options.entitiesTs, ...links] } : {}),
    discovery: {
      ...discovery,
      onMetadata: (meta: EntityMetadata, platform: Platform) =>
        then(discovery.onMetadata?.(meta, platform), () => primaryRelationships().forEach(r => r.onMetadata(meta, platform))),
      afterDiscovered: (storage, platform) =>
        then(discovery.afterDiscovered?.(storage, platform), () => primaryRelationships().forEach(r => r.afterDiscovered(storage, platform))),
    },
    subscribers: [...(options.subscribers ?? []), new PrimaryRelationshipSubscriber()],
    extensions: [...(options.extensions ?? []), CoasterSchemaGenerator],
    migrations: { generator: CoasterMigrationGenerator, ...options.migrations },
  };
}
