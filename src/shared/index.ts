/**
 * What every feature shares: the base error class and the configuration error.
 * @module
 */
export { CoasterError, CoasterUsageError, MultipleResultsError, TransactionRetryError } from './errors.js';
export { CoasterConfigError } from './CoasterConfigError.js';
