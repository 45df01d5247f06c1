import type { EntityMetadata, MetadataStorage, Options, Platform } from '@mikro-orm/core';
import { afterHook } from '../shared/afterHook.js';
import { applyOnce, extendOptions } from '../shared/options.js';
import { keepDeclaredDefaults } from './autoInitDefault.js';
import { CoasterConfigError } from '../shared/CoasterConfigError.js';
import { applyDecoratedProperties } from './decoratedProperties.js';
import { markEntityDecoratorsConfigured } from './entityDecoratorsConfigured.js';
import { TimestampSubscriber } from './TimestampSubscriber.js';
import { resolveTimestampColumns, timestampProperties } from './timestamps.js';

/** Completes the metadata of an entity that uses this library's decorators or property options. */
function completeMetadata(meta: EntityMetadata, platform: Platform): void {
  markEntityDecoratorsConfigured(platform.getConfig());
  applyDecoratedProperties(meta);
  keepDeclaredDefaults(meta);
  resolveTimestampColumns(meta, platform);
}

/** Checks, once discovery is done, that the subscriber added with the hook was not replaced since. */
function checkSubscriber(storage: MetadataStorage, platform: Platform): void {
  const timestamped = Object.values(storage.getAll()).some(meta => timestampProperties(meta).createdAt.length > 0);
  if (timestamped && ![...platform.getConfig().get('subscribers')].some(s => s instanceof TimestampSubscriber)) {
    throw CoasterConfigError.optionReplaced('@CreatedAt columns', 'subscribers', 'a TimestampSubscriber');
  }
}

/**
 * Returns `options` with what `@CreatedAt`, `@UpdatedAt`, `createdAtProperty`, `updatedAtProperty` and
 * `@AutoInitDefault` need: a `discovery.onMetadata` hook that completes their metadata for the
 * database platform (after the hook given in `options`, if any), and a {@link TimestampSubscriber}
 * (after the given `subscribers`). On MariaDB and MySQL, an ORM with timestamp columns gets
 * `forceUtcTimezone: true` at discovery when neither it nor `timezone` is set (another zone throws
 * `TimestampError`). `defineCoasterConfig` applies it; call it yourself only for an ORM
 * configured without `defineCoasterConfig`. Options it already went through are returned as they are. `MikroORM.init` throws {@link CoasterConfigError} when
 * that subscriber was taken out of the options again, and a `CoasterEntityManager` throws it at init
 * when the hook is missing. `em.upsert` of an entity with timestamp columns needs a
 * `CoasterEntityManager`: on another EntityManager it throws {@link CoasterConfigError}.
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init(withEntityDecorators({ driver: PostgreSqlDriver, clientUrl, entities: [User] }));
 * ```
 */
export function withEntityDecorators<O extends Options>(options: O): O {
  return applyOnce('entity decorators', options, given => {
    const { onMetadata, afterDiscovered } = given.discovery ?? {};
    return extendOptions<Options>(given, {
      subscribers: [...(given.subscribers ?? []), new TimestampSubscriber()],
      discovery: {
        ...given.discovery,
        onMetadata: (meta: EntityMetadata, platform: Platform) =>
          afterHook(onMetadata?.(meta, platform), () => completeMetadata(meta, platform)),
        afterDiscovered: (storage: MetadataStorage, platform: Platform) =>
          afterHook(afterDiscovered?.(storage, platform), () => checkSubscriber(storage, platform)),
      },
    }) as O;
  });
}
