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
export { CoasterEntityManager, type FindOrCreateResult } from './CoasterEntityManager.js';
export { CoasterEntityRepository } from './CoasterEntityRepository.js';
export { type FailsafeAddOptions } from './inserts/failsafeAddOptions.js';
export { defineCoasterConfig, type CoasterOptions } from './defineCoasterConfig.js';
export { CoasterError, CoasterUsageError, MultipleResultsError, TransactionRetryError } from './errors.js';
export { CoasterConfigError } from './CoasterConfigError.js';
export { initOrm, getOrm, closeOrm, type CoasterOrm } from './orm.js';
export { managedSession, type ManagedSessionOptions, type SessionCallback } from './managedSession.js';
export { ManagedSession } from './ManagedSessionDecorator.js';
export { onCommit, type OnCommitCallback } from './onCommit.js';
export { type OptInTransactionOptions } from './optInTransactions.js';
export { ManagedSessionError } from './ManagedSessionError.js';
export { AutoInitDefault } from './autoInitDefault.js';
export { AutoInitDefaultError, TimestampError } from './entityDecoratorErrors.js';
export {
  CreatedAt,
  Timestamped,
  UpdatedAt,
  createdAtProperty,
  updatedAtProperty,
  type TimestampColumn,
  type TimestampOptions,
  type TimestampPropertyOptions,
} from './timestamps.js';
export { TimestampSubscriber } from './TimestampSubscriber.js';
export { withEntityDecorators } from './withEntityDecorators.js';
export { addPrimaryRelationship, PrimaryRelationship, type PrimaryLink, type PrimaryRelationshipOptions } from './primaryRelationship.js';
export { PrimaryRelationshipError } from './PrimaryRelationshipError.js';
export { CoasterSchemaGenerator } from './CoasterSchemaGenerator.js';
export { CoasterMigrationGenerator } from './CoasterMigrationGenerator.js';
