import type { EntityMetadata, Options, Platform } from '@mikro-orm/core';
import { afterHook } from './afterHook.js';
import { keepDeclaredDefaults } from './autoInitDefault.js';
import { applyDecoratedProperties } from './decoratedProperties.js';
import { TimestampSubscriber } from './TimestampSubscriber.js';
import { resolveTimestampColumns } from './timestamps.js';

/** Completes the metadata of an entity that uses this library's decorators or property options. */
function completeMetadata(meta: EntityMetadata, platform: Platform): void {
  applyDecoratedProperties(meta);
  keepDeclaredDefaults(meta);
  resolveTimestampColumns(meta, platform);
}

/**
 * Returns `options` with what `@CreatedAt`, `@UpdatedAt`, `createdAtProperty`, `updatedAtProperty` and
 * `@AutoInitDefault` need: a `discovery.onMetadata` hook that completes their metadata for the
 * database platform (after the hook given in `options`, if any), and a {@link TimestampSubscriber}
 * (after the given `subscribers`). `defineCoasterConfig` applies it; call it yourself only for an ORM
 * configured without `defineCoasterConfig`.
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init(withEntityDecorators({ driver: PostgreSqlDriver, clientUrl, entities: [User] }));
 * ```
 */
export function withEntityDecorators<O extends Options>(options: O): O {
  const onMetadata = options.discovery?.onMetadata;
  return {
    ...options,
    subscribers: [...(options.subscribers ?? []), new TimestampSubscriber()],
    discovery: {
      ...options.discovery,
      onMetadata: (meta: EntityMetadata, platform: Platform) =>
        afterHook(onMetadata?.(meta, platform), () => completeMetadata(meta, platform)),
    },
  };
}
