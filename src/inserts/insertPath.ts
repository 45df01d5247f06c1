import {
  EventType,
  type Configuration,
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

/**
 * The databases the fast path serves: PostgreSQL and SQLite (`insert ... on conflict do nothing returning *`)
 * and MariaDB 10.5 or later (`insert ... returning *`, through `@mikro-orm/mariadb` or `@mikro-orm/mysql`).
 */
export type FastPathDialect = 'postgresql' | 'sqlite' | 'mysql';

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
  /**
   * Why updating `properties` of an entity of `meta` needs a flush for this subscriber to see it (`updateOrCreate`
   * then locks the row and flushes instead of sending its one statement on PostgreSQL); `undefined` when it does
   * not. Without this method, a subscriber with flush hooks makes every `updateOrCreate` lock and flush.
   */
  updateNeedsFlush?(meta: EntityMetadata, properties: readonly string[]): string | undefined;
}

/**
 * Why `subscriber` needs inserts of `meta`'s entities to go through a flush, if it does; with `updated`, updates of
 * those properties instead.
 */
function subscriberReason(
  subscriber: EventSubscriber | Constructor<EventSubscriber>,
  meta: EntityMetadata,
  updated?: readonly string[],
): string | undefined {
  if (typeof subscriber === 'function') {
    // MikroORM instantiates subscriber classes when it reads its configuration; a class here is unexpected
    return 'a subscriber listens to flush or transaction events';
  }
  const aware = subscriber as Partial<InsertPathAware>;
  if (updated === undefined ? typeof aware.insertNeedsFlush === 'function' : typeof aware.updateNeedsFlush === 'function') {
    return updated === undefined ? aware.insertNeedsFlush!(meta) : aware.updateNeedsFlush!(meta, updated);
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
 * returning *`, or `insert ... returning *` on MariaDB, see {@link fastInsert}) it returns the database's
 * dialect; otherwise it returns why the savepoint path is used. Chosen from the entity's metadata (cached),
 * its `onLoad` and `afterCreate` listeners (entity hooks and subscribers), the ORM's subscribers (see
 * {@link InsertPathAware}), whether the entity holds a new entity that a flush would cascade to, and, on
 * the MySQL family, whether the server has `INSERT ... RETURNING` ({@link serverVersion}).
 *
 * @example
 * ```ts
 * const path = await insertPath(em, em.getMetadata().get(Tag), tag); // { dialect: 'postgresql' }, or { reason: 'it is versioned (version)' }
 * ```
 */
export async function insertPath(
  em: SqlEntityManager,
  meta: EntityMetadata,
  entity: object,
): Promise<{ dialect: FastPathDialect } | { reason: string }> {
  const dialect = dialectOf(em.getPlatform());
  if (dialect === 'other') {
    return { reason: `the fast path serves PostgreSQL, SQLite and MariaDB, not ${em.getPlatform().constructor.name}` };
  }
  const reason = flushReason(em, meta, entity);
  if (reason !== undefined) {
    return { reason };
  }
  if (dialect === 'mysql' && !(returningServers.get(em.config) ?? (await hasReturning(em)))) {
    return { reason: `the server (${await serverVersion(em)}) has no INSERT ... RETURNING, which MariaDB has from 10.5` };
  }
  return { dialect };
}

/**
 * Why only a flush can insert `entity` as MikroORM would, on any database: its metadata, a new entity it holds
 * on a to-one relation, its `onLoad` and `afterCreate` listeners, the ORM's subscribers; `undefined` when a
 * statement of the library's own may insert it (see {@link insertPath}; batches ask it on MariaDB too). Given
 * several entities of `meta` (a batch), why one of them needs a flush: what concerns their class is asked once.
 *
 * @example
 * ```ts
 * flushReason(em, em.getMetadata().get(Tag), tag); // undefined, or e.g. 'it is versioned (version)'
 * ```
 */
export function flushReason(em: SqlEntityManager, meta: EntityMetadata, entity: object | readonly object[]): string | undefined {
  const entities: readonly object[] = Array.isArray(entity) ? entity : [entity];
  let cascade: string | undefined;
  for (let i = 0; i < entities.length && cascade === undefined; i++) {
    cascade = cascadeReason(meta, entities[i]);
  }
  return (
    metadataReason(meta) ??
    cascade ??
    HOOK_REASONS.find(([event]) => em.getEventManager().hasListeners(event, meta))?.[1] ??
    // the `subscribers` option, not the event manager's: em.transactional registers a subscriber of its own
    // there, whose afterFlush only forgets deleted entities
    [...em.config.get('subscribers')].map(subscriber => subscriberReason(subscriber, meta)).find(reason => reason !== undefined)
  );
}

/**
 * Why only a flush can update `properties` of `meta`'s row as MikroORM would, so that `updateOrCreate` locks the row
 * and flushes instead of sending its one statement on PostgreSQL; `undefined` when that statement may update it.
 * Besides what rules out inserting without a flush (the entity's metadata: versioned, read-only, single table
 * inheritance, embedded properties), that is `beforeUpdate` and `afterUpdate` listeners (entity hooks or
 * subscribers), an `onUpdate` that takes the entity (the statement computes the new values before it reads the
 * row), and the ORM's subscribers with flush hooks that do not say otherwise ({@link InsertPathAware.updateNeedsFlush}).
 *
 * @example
 * ```ts
 * updateFlushReason(em, em.getMetadata().get(Member), ['name']); // undefined, or e.g. 'it has beforeUpdate hooks, ...'
 * ```
 */
export function updateFlushReason(em: SqlEntityManager, meta: EntityMetadata, properties: readonly string[]): string | undefined {
  const events = em.getEventManager();
  return (
    metadataReason(meta) ??
    [EventType.beforeUpdate, EventType.afterUpdate].filter(event => events.hasListeners(event, meta)).map(event => `it has ${event} hooks, which a flush runs`)[0] ??
    meta.props.filter(prop => prop.onUpdate && prop.onUpdate.length > 0).map(prop => `the onUpdate of its ${prop.name} takes the entity`)[0] ??
    [...em.config.get('subscribers')].map(subscriber => subscriberReason(subscriber, meta, properties)).find(reason => reason !== undefined)
  );
}

/** The server version of each ORM on the MySQL family, asked once (`select version()`), by its configuration. */
const serverVersions = new WeakMap<Configuration, Promise<string>>();

/**
 * The MySQL-family server's version string (`10.11.19-MariaDB-0+deb12u1`, `8.0.36`), asked with one
 * `select version()` per ORM (logged like every query), in the caller's transaction if there is one. The
 * driver cannot tell: `@mikro-orm/mysql` may talk to MariaDB and `@mikro-orm/mariadb` to MySQL. A failed
 * query is not remembered: the next call asks again.
 */
function serverVersion(em: SqlEntityManager): Promise<string> {
  let version = serverVersions.get(em.config);
  if (!version) {
    version = em.execute<{ version: string }[]>('select version() as version').then(([row]) => row.version);
    serverVersions.set(em.config, version);
    version.catch(() => serverVersions.delete(em.config));
  }
  return version;
}

/**
 * Whether the MySQL-family server behind `em` has `INSERT ... RETURNING`: MariaDB from 10.5; no MySQL release
 * ({@link serverVersion}, asked once per ORM). Batches ask it too.
 */
export async function hasReturning(em: SqlEntityManager): Promise<boolean> {
  const version = await serverVersion(em);
  const [major, minor] = (/^(\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
  const returning = /mariadb/i.test(version) && (major > 10 || (major === 10 && minor >= 5));
  returningServers.set(em.config, returning);
  return returning;
}

/** {@link hasReturning}'s answer per ORM, once known, so that {@link insertPath} need not wait for it again. */
const returningServers = new WeakMap<Configuration, boolean>();

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

/** Why a find of an entity's metadata loads more than its table's columns, computed once per metadata. */
const loadReasons = new WeakMap<EntityMetadata, string | null>();

/**
 * Why `getOrCreate` cannot look its row up in its insert's statement on PostgreSQL ({@link fastInsert}'s
 * `unlessFound`), so that it sends `em.find`'s select first, then inserts only on a miss; `undefined` when it can.
 * That statement prepares the row to insert before it knows whether one exists, and merges a found row from its
 * table's columns (`select "t0".*`). So it serves neither entities with `beforeCreate` listeners (entity hooks or
 * subscribers: they must not run when the row exists), nor entities whose rows `em.find` loads otherwise: lazy
 * properties (left out), formulas and custom types converted in SQL (selected as expressions), eager relations
 * (populated) and inverse one-to-one relations (joined). Entities that take the savepoint path ({@link insertPath})
 * find first too.
 *
 * @example
 * ```ts
 * findFirstReason(em, em.getMetadata().get(Tag)); // undefined, or e.g. 'it has beforeCreate hooks, ...'
 * ```
 */
export function findFirstReason(em: SqlEntityManager, meta: EntityMetadata): string | undefined {
  if (em.getEventManager().hasListeners(EventType.beforeCreate, meta)) {
    return 'it has beforeCreate hooks, which must not run when the row exists';
  }
  let reason = loadReasons.get(meta);
  if (reason === undefined) {
    const prop = meta.props.find(
      prop => prop.lazy || prop.formula || prop.hasConvertToJSValueSQL || prop.eager || (prop.kind === ReferenceKind.ONE_TO_ONE && !prop.owner),
    );
    reason = prop ? `a find loads its ${prop.name} otherwise than as a column of its row` : null;
    loadReasons.set(meta, reason);
  }
  return reason ?? undefined;
}
