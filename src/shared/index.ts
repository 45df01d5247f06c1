/**
 * What every feature shares: the base error class, the configuration error, the error for a MikroORM
 * whose internals changed, and the clean-up errors an error can carry.
 * @module
 */
export { CoasterError, MikroOrmInternalError, cleanupErrorsOf, type CleanupErrors } from './errors.js';
export { CoasterConfigError } from './CoasterConfigError.js';
