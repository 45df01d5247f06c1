import { ChangeSetType, type EventSubscriber, type FlushEventArgs } from '@mikro-orm/core';
import { TimestampError } from './entityDecoratorErrors.js';
import { timestampProperties } from './timestamps.js';

/**
 * Keeps `@CreatedAt` columns unchanged after insert: in `onFlush`, a change set that would update one
 * throws {@link TimestampError} before any SQL is sent (the flush then writes nothing). Registered by
 * {@link withEntityDecorators} (included in `defineCoasterConfig`).
 *
 * @example
 * ```ts
 * MikroORM.init({ ..., subscribers: [new TimestampSubscriber()] }); // what withEntityDecorators adds
 * ```
 */
export class TimestampSubscriber implements EventSubscriber {
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
}
