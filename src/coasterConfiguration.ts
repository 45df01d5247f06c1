import type { Configuration, MetadataStorage } from '@mikro-orm/core';
import { checkEntityDecoratorsConfigured } from './entity-decorators/entityDecoratorsConfigured.js';
import { checkPrimaryRelationshipsConfigured } from './primary/primaryRelationship.js';
import { checkOptInTransactionsApplied } from './sessions/optInTransactions.js';

/** The configurations {@link assertCoasterConfiguration} accepted. */
const checked = new WeakSet<Configuration>();

/**
 * Checks, when MikroORM creates the ORM's `CoasterEntityManager` (after discovery, before connecting),
 * that the options hold what each feature's options transformer would have added for the features the
 * entities use, so that `entityManager: CoasterEntityManager` alone fails at `MikroORM.init` rather than
 * running half-configured. Each feature owns its check; this runs them once per configuration (forks pass at
 * once). The primary relationships' check reads only the entities' declarations, never loading
 * `@mikro-orm/migrations`.
 *
 * @example
 * ```ts
 * assertCoasterConfiguration(em.config, em.getMetadata()); // in CoasterEntityManager's constructor
 * ```
 * @throws {CoasterConfigError} for entity decorators without their discovery hook, or `optInTransactions`
 *   given to MikroORM directly.
 * @throws {PrimaryRelationshipError} for a primary relationship whose table the ORM does not know.
 */
export function assertCoasterConfiguration(config: Configuration, metadata: MetadataStorage): void {
  if (checked.has(config)) {
    return;
  }
  checkOptInTransactionsApplied(config);
  checkEntityDecoratorsConfigured(config, metadata);
  checkPrimaryRelationshipsConfigured(metadata);
  checked.add(config);
}
