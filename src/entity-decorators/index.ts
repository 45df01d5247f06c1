/**
 * Entity decorators: `@CreatedAt`, `@UpdatedAt`, `Timestamped`, their property options for `EntitySchema`,
 * `@AutoInitDefault`, and `withEntityDecorators`, the options transformer they need.
 * @module
 */
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
