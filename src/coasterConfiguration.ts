import type { Configuration, MetadataStorage, MikroORMOptions } from '@mikro-orm/core';
import { CoasterConfigError } from './shared/CoasterConfigError.js';
import { hasDecoratedProperties } from './entity-decorators/decoratedProperties.js';
import { requireEntityDecorators } from './entity-decorators/entityDecoratorsConfigured.js';
import type { OptInTransactionOptions } from './sessions/optInTransactions.js';
import { primaryRelationships } from './primary/primaryRelationship.js';
import { PrimaryRelationshipError } from './primary/PrimaryRelationshipError.js';
import { timestampProperties } from './entity-decorators/timestamps.js';

/** The configurations {@link assertCoasterConfiguration} accepted. */
const checked = new WeakSet<Configuration>();

/**
 * Checks, when MikroORM creates the ORM's `CoasterEntityManager` (after discovery, before connecting),
 * that the options hold what `defineCoasterConfig` would have added for the features the entities use,
 * so that `entityManager: CoasterEntityManager` alone fails at `MikroORM.init` rather than running
 * half-configured. Once per configuration: forks pass at once.
 *
 * @throws {CoasterConfigError} for entity decorators without their discovery hook, or `optInTransactions`
 *   given to MikroORM directly.
 * @throws {PrimaryRelationshipError} for a primary relationship whose table the ORM does not know.
 */
export function assertCoasterConfiguration(config: Configuration, metadata: MetadataStorage): void {
  if (checked.has(config)) {
    return;
  }
  if ((config.getAll() as MikroORMOptions & OptInTransactionOptions).optInTransactions) {
    throw CoasterConfigError.optInTransactionsIgnored();
  }
  for (const meta of Object.values(metadata.getAll())) {
    const { createdAt, updatedAt } = timestampProperties(meta);
    if (createdAt.length + updatedAt.length > 0 || hasDecoratedProperties(meta.class)) {
      requireEntityDecorators(config, meta.className);
    }
  }
  for (const definition of primaryRelationships()) {
    if (metadata.find(definition.parent.name)?.class === definition.parent && !definition.isPartOf(metadata)) {
      throw PrimaryRelationshipError.notConfigured(definition.parent.name, definition.property);
    }
  }
  checked.add(config);
}
