/**
 * Primary relationships, the `mikro-orm-coaster/primary` entry point: a parent's primary child, stored in
 * a `<parent>_<child>_primary` table whose trigger refuses a child of another parent, and
 * `withPrimaryRelationships`, the options transformer that wires it (schema generator and Migrator
 * included, so this entry point needs `@mikro-orm/migrations`).
 *
 * @example
 * ```ts
 * import { defineCoasterConfig } from 'mikro-orm-coaster';
 * import { addPrimaryRelationship, withPrimaryRelationships } from 'mikro-orm-coaster/primary';
 *
 * addPrimaryRelationship(User, 'primaryEmail', UserEmail, 'user', 'user_id');
 * export default withPrimaryRelationships(defineCoasterConfig({ driver: SqliteDriver, dbName, entities: [User, UserEmail] }));
 * ```
 * @module mikro-orm-coaster/primary
 */
export { addPrimaryRelationship, PrimaryRelationship, type PrimaryLink, type PrimaryRelationshipOptions } from './primaryRelationship.js';
export { PrimaryRelationshipError } from './PrimaryRelationshipError.js';
export { CoasterSchemaGenerator } from './CoasterSchemaGenerator.js';
export { CoasterMigrator } from './CoasterMigrator.js';
export { withPrimaryRelationships } from './withPrimaryRelationships.js';
