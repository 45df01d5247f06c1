import type { Configuration } from '@mikro-orm/core';
import { CoasterConfigError } from '../shared/CoasterConfigError.js';

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
