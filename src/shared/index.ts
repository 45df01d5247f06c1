/**
 * What every feature shares: the base error class and the configuration error.
 * @module
 */
export { CoasterError } from './errors.js';
export { CoasterConfigError } from './CoasterConfigError.js';
