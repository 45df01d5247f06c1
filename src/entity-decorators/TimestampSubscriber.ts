import { ChangeSetType, type EntityMetadata, type EventArgs, type EventSubscriber, type FlushEventArgs } from '@mikro-orm/core';
import type { InsertPathAware } from '../inserts/insertPath.js';
import { CoasterConfigError } from '../shared/CoasterConfigError.js';
import { CoasterEntityManager } from '../inserts/CoasterEntityManager.js';
import { TimestampError } from './entityDecoratorErrors.js';
import { timestampProperties } from './timestamps.js';

/**
 * Keeps `@CreatedAt` columns unchanged after insert: in `onFlush`, a change set that would update one
 * throws {@link TimestampError} before any SQL is sent (the flush then writes nothing). In
 * `beforeUpsert`, refuses with {@link CoasterConfigError} an `em.upsert` of an entity with timestamp
 * columns on an EntityManager other than `CoasterEntityManager`, which alone sets them on upsert (the
 * event cannot change the conflict clause that must leave `createdAt` alone). Registered by
 * {@link withEntityDecorators} (included in `defineCoasterConfig`).
 *
 * @example
 * ```ts
 * MikroORM.init({ ..., subscribers: [new TimestampSubscriber()] }); // what withEntityDecorators adds
 * ```
 */
export class TimestampSubscriber implements EventSubscriber, InsertPathAware {
  /** Never: `onFlush` only checks updates, so `failsafeAdd` may insert without a flush. */
  insertNeedsFlush(): undefined {
    return undefined;
  }

  /** Only when `properties` include a `@CreatedAt` column: `onFlush` refuses that update (see `updateOrCreate`). */
  updateNeedsFlush(meta: EntityMetadata, properties: readonly string[]): string | undefined {
    const createdAt = timestampProperties(meta).createdAt.find(prop => properties.includes(prop.name));
    return createdAt && `its @CreatedAt ${createdAt.name} would change, which the TimestampSubscriber refuses in a flush`;
  }

  /** Throws {@link TimestampError} before any SQL when a change set of the flush would update a `@CreatedAt` column. */
  onFlush({ uow }: FlushEventArgs): void {
    for (const changeSet of uow.getChangeSets()) {
      if (changeSet.type !== ChangeSetType.UPDATE) {
        continue;
      }
      const changed = timestampProperties(changeSet.meta).createdAt.find(prop => prop.name in changeSet.payload);
      if (changed) {
        throw TimestampError.createdAtChanged(changeSet.meta.className, changed.name);
      }
    }
  }

  /**
   * Throws {@link CoasterConfigError} when `em.upsert` of an entity with timestamp columns runs on an EntityManager
   * other than `CoasterEntityManager`, which alone sets them on upsert.
   */
  beforeUpsert({ em, meta }: EventArgs<object>): void {
    const { createdAt, updatedAt } = timestampProperties(meta);
    if (createdAt.length + updatedAt.length > 0 && !(em instanceof CoasterEntityManager)) {
      throw CoasterConfigError.upsertNeedsCoasterEntityManager(meta.className, em.constructor.name);
    }
  }
}
