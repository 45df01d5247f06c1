import type { MetadataStorage } from '@mikro-orm/core';
import { primaryRelationships } from './primaryRelationship.js';
import type { PrimaryTableNames } from './primaryTriggers.js';

/** The primary tables of the relationships whose entity is part of `metadata` (one ORM's). */
export function primaryTablesOf(metadata: MetadataStorage): PrimaryTableNames[] {
  return primaryRelationships()
    .filter(definition => definition.isPartOf(metadata))
    .map(definition => definition.requireNames());
}
