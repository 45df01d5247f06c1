/**
 * mikro-orm-coaster: race-safe inserts, timestamp and default decorators, primary relationships and
 * managed sessions for MikroORM 6.
 *
 * @example
 * ```ts
 * import { MikroORM } from '@mikro-orm/core';
 * import { defineCoasterConfig } from 'mikro-orm-coaster';
 *
 * const orm = await MikroORM.init(defineCoasterConfig({ driver: SqliteDriver, dbName: ':memory:', entities }));
 * const tag = await orm.em.fork().findOrCreate(Tag, { name: 'news' });
 * ```
 * @module
 */
export { CoasterEntityManager, type FindOrCreateResult } from './inserts/CoasterEntityManager.js';
export { CoasterEntityRepository } from './inserts/CoasterEntityRepository.js';
export { type FailsafeAddOptions } from './inserts/failsafeAddOptions.js';
export { defineCoasterConfig, type CoasterOptions } from './defineCoasterConfig.js';
export { CoasterError, CoasterUsageError, MultipleResultsError, TransactionRetryError } from './shared/errors.js';
export { CoasterConfigError } from './shared/CoasterConfigError.js';
export { initOrm, getOrm, closeOrm, type CoasterOrm } from './sessions/orm.js';
export { managedSession, type ManagedSessionOptions, type SessionCallback } from './sessions/managedSession.js';
export { ManagedSession } from './sessions/ManagedSessionDecorator.js';
export { onCommit, type OnCommitCallback } from './sessions/onCommit.js';
export { type OptInTransactionOptions } from './sessions/optInTransactions.js';
export { ManagedSessionError } from './sessions/ManagedSessionError.js';
export { AutoInitDefault } from './entity-decorators/autoInitDefault.js';
export { AutoInitDefaultError, TimestampError } from './entity-decorators/entityDecoratorErrors.js';
export {
  CreatedAt,
  Timestamped,
  UpdatedAt,
  createdAtProperty,
  updatedAtProperty,
  type TimestampColumn,
  type TimestampOptions,
  type TimestampPropertyOptions,
} from './entity-decorators/timestamps.js';
export { TimestampSubscriber } from './entity-decorators/TimestampSubscriber.js';
export { withEntityDecorators } from './entity-decorators/withEntityDecorators.js';
export { addPrimaryRelationship, PrimaryRelationship, type PrimaryLink, type PrimaryRelationshipOptions } from './primary/primaryRelationship.js';
export { PrimaryRelationshipError } from './primary/PrimaryRelationshipError.js';
export { CoasterSchemaGenerator } from './primary/CoasterSchemaGenerator.js';
export { CoasterMigrationGenerator } from './primary/CoasterMigrationGenerator.js';
