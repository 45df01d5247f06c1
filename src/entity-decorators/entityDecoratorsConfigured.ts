import type { Configuration, MetadataStorage } from '@mikro-orm/core';
import { CoasterConfigError } from '../shared/CoasterConfigError.js';
import { hasDecoratedProperties } from './decoratedProperties.js';
import { timestampProperties } from './timestamps.js';

/** The ORM configurations whose discovery ran the hook of `withEntityDecorators`. */
const configured = new WeakSet<Configuration>();

/** Records that an ORM's discovery completed the entity decorators' metadata (from the hook). */
export function markEntityDecoratorsConfigured(config: Configuration): void {
  configured.add(config);
}

/**
 * Throws {@link CoasterConfigError} when the ORM of `config` was initialised without the entity
 * decorators' discovery hook, so `entityName`'s decorated properties were discovered incomplete.
 */
export function requireEntityDecorators(config: Configuration, entityName: string): void {
  if (!configured.has(config)) {
    throw CoasterConfigError.entityDecoratorsNotConfigured(entityName);
  }
}

/**
 * Throws {@link CoasterConfigError} when an entity of `metadata` uses the entity decorators or timestamp
 * property options but the ORM of `config` was initialised without {@link withEntityDecorators}' hook.
 */
export function checkEntityDecoratorsConfigured(config: Configuration, metadata: MetadataStorage): void {
  for (const meta of Object.values(metadata.getAll())) {
    const { createdAt, updatedAt } = timestampProperties(meta);
    if (createdAt.length + updatedAt.length > 0 || hasDecoratedProperties(meta.class)) {
      requireEntityDecorators(config, meta.className);
    }
  }
}
