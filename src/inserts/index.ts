/**
 * Race-safe inserts: `CoasterEntityManager` (`failsafeAdd`, `addAndCommit`, `findOrCreate`, `getOrCreate`,
 * `updateOrCreate`), its repository, and `withRaceSafeInserts`, the options transformer that installs it.
 * @module
 */
export { CoasterEntityManager, type FindOrCreateResult } from './CoasterEntityManager.js';
export { CoasterEntityRepository } from './CoasterEntityRepository.js';
export { CoasterUsageError, ManagedKeyConflictError, MultipleResultsError, TransactionRetryError } from './errors.js';
export { type FailsafeAddOptions } from './failsafeAddOptions.js';
export { type ManyOptions } from './batches/manyOptions.js';
export { type InsertPathAware } from './insertPath.js';
export { withRaceSafeInserts } from './withRaceSafeInserts.js';
