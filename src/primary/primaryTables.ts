import type { MetadataStorage } from '@mikro-orm/core';
import { configuredRelationships } from './primaryRelationship.js';
import type { PrimaryTableNames } from './primaryTriggers.js';

/** The primary tables of the relationships of the ORM whose metadata is `metadata`, with that ORM's names. */
export function primaryTablesOf(metadata: MetadataStorage): PrimaryTableNames[] {
  return configuredRelationships(metadata).map(relationship => relationship.names);
}
