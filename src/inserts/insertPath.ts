import {
  EventType,
  ReferenceKind,
  Reference,
  Utils,
  wrap,
  type Constructor,
  type EntityMetadata,
  type EventSubscriber,
} from '@mikro-orm/core';
import type { SqlEntityManager } from '@mikro-orm/knex';
import { dialectOf } from '../shared/dialect.js';

/** The databases whose `insert ... on conflict do nothing returning *` the fast path sends. */
export type FastPathDialect = 'postgresql' | 'sqlite';

/**
 * Subscriber hooks that run only inside a flush or a transaction that the flush opens: a subscriber with
 * any of them expects to see every insert, and the fast path sends no flush and opens no transaction.
 */
const FLUSH_EVENTS = [
  EventType.beforeFlush,
  EventType.onFlush,
  EventType.afterFlush,
  EventType.beforeTransactionStart,
  EventType.afterTransactionStart,
  EventType.beforeTransactionCommit,
  EventType.afterTransactionCommit,
  EventType.beforeTransactionRollback,
  EventType.afterTransactionRollback,
] as const;

/**
 * Lifecycle events, entity hooks or subscribers', that the fast path cannot fire as a flush does. A
 * flush runs `afterCreate` inside its transaction (the savepoint path's own, or its savepoint), so the
 * hook's error rolls the insert back; by the time the fast path has a row to hand to the hook, its
 * insert is committed (outside a transaction), its savepoint released (sent in the same string on
 * PostgreSQL), or it is part of the caller's transaction with no savepoint around it (SQLite).
 */
const HOOK_REASONS = [
  [EventType.onLoad, 'it has onLoad hooks, which only a find fires'],
  [EventType.afterCreate, 'it has afterCreate hooks, whose errors must roll the insert back'],
] as const;

/**
 * A subscriber with flush hooks that can tell which inserts need them, so that the others may take the
 * fast path: this library's `TimestampSubscriber` (which only checks updates) and
 * `PrimaryRelationshipSubscriber` (which only needs the entities of primary relationships) implement it.
 *
 * @example
 * ```ts
 * class AuditSubscriber implements EventSubscriber, InsertPathAware {
 *   afterFlush(args: FlushEventArgs) { ... }
 *   insertNeedsFlush(meta: EntityMetadata) { return meta.className === 'Invoice' ? 'invoices are audited' : undefined; }
 * }
 * ```
 */
export interface InsertPathAware {
  /** Why inserting an entity of `meta` needs a flush for this subscriber to see it; `undefined` when it does not. */
  insertNeedsFlush(meta: EntityMetadata): string | undefined;
}

/** Why `subscriber` needs inserts of `meta`'s entities to go through a flush, if it does. */
function subscriberReason(subscriber: EventSubscriber | Constructor<EventSubscriber>, meta: EntityMetadata): string | undefined {
  if (typeof subscriber === 'function') {
    // MikroORM instantiates subscriber classes when it reads its configuration; a class here is unexpected
    return 'a subscriber listens to flush or transaction events';
  }
  if ('insertNeedsFlush' in subscriber && typeof subscriber.insertNeedsFlush === 'function') {
    return (subscriber as InsertPathAware).insertNeedsFlush(meta);
  }
  return FLUSH_EVENTS.some(event => typeof subscriber[event] === 'function') ? 'a subscriber listens to flush or transaction events' : undefined;
}

/** Why an entity's metadata rules the fast path out, computed once per metadata (that is, per ORM). */
const metadataReasons = new WeakMap<EntityMetadata, string | null>();

function metadataReason(meta: EntityMetadata): string | undefined {
  let reason = metadataReasons.get(meta);
  if (reason === undefined) {
    reason = computeMetadataReason(meta) ?? null;
    metadataReasons.set(meta, reason);
  }
  return reason ?? undefined;
}

function computeMetadataReason(meta: EntityMetadata): string | undefined {
  if (meta.readonly) {
    return 'it is a read-only entity';
  }
  if (meta.versionProperty) {
    return `it is versioned (${meta.versionProperty})`;
  }
  if (meta.discriminatorColumn || meta.root !== meta) {
    return 'it uses single table inheritance';
  }
  if (meta.props.some(prop => prop.kind === ReferenceKind.EMBEDDED)) {
    return 'it has embedded properties';
  }
  const deferrable = meta.uniques.find(unique => unique.deferMode != null);
  if (deferrable) {
    return `its unique constraint ${deferrable.name ?? Utils.asArray(deferrable.properties).join(', ')} is deferrable, which ON CONFLICT cannot use`;
  }
  return undefined;
}

/**
 * Which way `failsafeAdd` inserts `entity`: on the fast path (`insert ... on conflict do nothing
 * returning *`, see {@link fastInsert}) it returns the database's dialect; otherwise it returns why
 * the savepoint path is used. Chosen from the entity's metadata (cached), its `onLoad` and `afterCreate`
 * listeners (entity hooks and subscribers), the ORM's subscribers (see {@link InsertPathAware}), and
 * whether the entity holds a new entity that a flush would cascade to.
 *
 * @example
 * ```ts
 * const path = insertPath(em, em.getMetadata().get(Tag), tag); // 'postgresql', or e.g. 'it is versioned (version)'
 * ```
 */
export function insertPath(em: SqlEntityManager, meta: EntityMetadata, entity: object): { dialect: FastPathDialect } | { reason: string } {
  const dialect = fastPathDialect(em);
  if (!dialect) {
    return { reason: `the fast path serves PostgreSQL and SQLite, not ${em.getPlatform().constructor.name}` };
  }
  const reason = flushReason(em, meta, entity);
  return reason === undefined ? { dialect } : { reason };
}

/**
 * Why only a flush can insert `entity` as MikroORM would, on any database: its metadata, a new entity it holds
 * on a to-one relation, its `onLoad` and `afterCreate` listeners, the ORM's subscribers; `undefined` when a
 * statement of the library's own may insert it (see {@link insertPath}; batches ask it on MariaDB too).
 *
 * @example
 * ```ts
 * flushReason(em, em.getMetadata().get(Tag), tag); // undefined, or e.g. 'it is versioned (version)'
 * ```
 */
export function flushReason(em: SqlEntityManager, meta: EntityMetadata, entity: object): string | undefined {
  return (
    metadataReason(meta) ??
    cascadeReason(meta, entity) ??
    HOOK_REASONS.find(([event]) => em.getEventManager().hasListeners(event, meta))?.[1] ??
    // the `subscribers` option, not the event manager's: em.transactional registers a subscriber of its own
    // there, whose afterFlush only forgets deleted entities
    [...em.config.get('subscribers')].map(subscriber => subscriberReason(subscriber, meta)).find(reason => reason !== undefined)
  );
}

function fastPathDialect(em: SqlEntityManager): FastPathDialect | undefined {
  const dialect = dialectOf(em.getPlatform());
  return dialect === 'postgresql' || dialect === 'sqlite' ? dialect : undefined;
}

/** A new entity on a to-one relation would be inserted by the flush too (cascade persist). */
function cascadeReason(meta: EntityMetadata, entity: object): string | undefined {
  const prop = meta.relations.find(prop => {
    if (prop.kind !== ReferenceKind.MANY_TO_ONE && !(prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner)) {
      return false;
    }
    const value = Reference.unwrapReference((entity as Record<string, object | undefined>)[prop.name] as object);
    return Utils.isEntity(value) && !wrap(value, true).isManaged();
  });
  return prop && `its ${prop.name} is a new ${prop.type}, which a flush inserts with it`;
}
