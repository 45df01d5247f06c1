/**
 * What every feature shares: the base error class, the configuration error, and the error for a MikroORM
 * whose internals changed.
 * @module
 */
export { CoasterError, MikroOrmInternalError } from './errors.js';
export { CoasterConfigError } from './CoasterConfigError.js';
