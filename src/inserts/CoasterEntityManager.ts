import {
  EventType,
  Reference,
  ReferenceKind,
  TransactionPropagation,
  UniqueConstraintViolationException,
  Utils,
  wrap,
  type ChangeSet,
  type Dictionary,
  type DriverException,
  type EntityData,
  type EntityMetadata,
  type EntityName,
  type EntityProperty,
  type FilterQuery,
  type NoInfer,
  type RequiredEntityData,
  type TransactionOptions,
  type UpsertManyOptions,
  type UpsertOptions,
} from '@mikro-orm/core';
import { SqlEntityManager, type AbstractSqlDriver, type Knex } from '@mikro-orm/knex';
import { dialectOf } from '../shared/dialect.js';
import { cleanupErrorsOf } from '../shared/errors.js';
import { contextEntityManager, metadataOf, whileProcessing } from '../shared/internals.js';
import { assertCoasterConfiguration } from '../coasterConfiguration.js';
import { checkCreatableWhere } from './creatableWhere.js';
import { CoasterUsageError, ManagedKeyConflictError, MultipleResultsError, TransactionRetryError } from './errors.js';
import { type FailsafeAddOptions } from './failsafeAddOptions.js';
import { fastInsert, isHiddenConflict, newEntity, prepareInsert, type UnlessFound } from './fastInsert.js';
import { findFirstReason, insertPath } from './insertPath.js';
import { selectStatement } from './statements.js';
import { checkUniqueWhere } from './uniqueWhere.js';
import { TransactionLevel } from '../sessions/transactionLevel.js';
import { updateOrCreate } from './updateOrCreate.js';
import { TimestampSubscriber } from '../entity-decorators/TimestampSubscriber.js';
import { withCommitLevel } from '../sessions/onCommit.js';
import { timestampedUpsert, timestampedUpsertMany } from '../entity-decorators/timestampUpsert.js';
import { checkArray, failsafeAddMany, getOrCreateMany } from './batches/batchCalls.js';
import type { ManyOptions } from './batches/manyOptions.js';

/** What {@link CoasterEntityManager.getOrCreate} resolves to. */
export interface FindOrCreateResult<T> {
  /** The row, managed by the EntityManager that was called. */
  entity: T;
  /** `true` when this call inserted the row, `false` when it found it (before or after a conflict). */
  created: boolean;
}

/** The events of a flush that writes nothing. */
const FLUSH_ONLY_EVENTS = [EventType.beforeFlush, EventType.onFlush, EventType.afterFlush] as const;

/** Isolation levels, as PostgreSQL's `transaction_isolation` names them, whose snapshot can hide a conflicting row. */
const SNAPSHOT_ISOLATION_LEVELS = new Set(['repeatable read', 'serializable']);

/**
 * An `EntityManager` with race-safe inserts. Enable it with `entityManager: CoasterEntityManager` in the
 * MikroORM options (or use {@link defineCoasterConfig}); `orm.em`, its forks and the `em` handed to
 * `transactional` callbacks are then all of this class.
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init<PostgreSqlDriver, CoasterEntityManager<PostgreSqlDriver>>(
 *   defineCoasterConfig({ driver: PostgreSqlDriver, clientUrl, entities: [User] }),
 * );
 * const em = orm.em.fork();                       // CoasterEntityManager<PostgreSqlDriver>
 * const user = await em.findOrCreate(User, { email: 'ada@example.com' }, { name: 'Ada' });
 * ```
 */
export class CoasterEntityManager<Driver extends AbstractSqlDriver = AbstractSqlDriver> extends SqlEntityManager<Driver> {
  /**
   * MikroORM's constructor. The first one of an ORM, which `MikroORM.init` makes after discovery,
   * checks that the options hold what the entities' features need (see `defineCoasterConfig`), so
   * that `MikroORM.init` rejects an ORM configured with `entityManager: CoasterEntityManager` alone
   * whose entities use the entity decorators or primary relationships.
   *
   * @example
   * ```ts
   * await MikroORM.init({ driver, entities: [User], entityManager: CoasterEntityManager }); // CoasterConfigError if User has @CreatedAt
   * ```
   * @throws {CoasterConfigError} or `PrimaryRelationshipError`, naming the options transformer to add.
   */
  constructor(...args: ConstructorParameters<typeof SqlEntityManager<Driver>>) {
    super(...args);
    assertCoasterConfiguration(this.config, this.getMetadata());
  }

  /**
   * Inserts a new entity in a nested transaction, surviving a concurrent insert of the same row.
   * A port of coaster's `failsafe_add`.
   *
   * 1. The entity must be new: one this EntityManager already manages is refused with
   *    {@link CoasterUsageError} (see {@link CoasterUsageError.alreadyPersisted} for the `em.create` trap).
   *    So is an entity that other pending entities reference, or whose own collections or inverse
   *    one-to-one hold entities: they would be written without it, or lost with it on a conflict.
   *    Nothing is written then.
   * 2. This EntityManager's other pending changes are flushed first, outside the savepoint.
   * 3. On PostgreSQL and SQLite most entities take the fast path (`fastInsert`): one
   *    `insert ... on conflict do nothing returning *`, sent with the select of `filters` as one string on
   *    PostgreSQL, inside a savepoint only in a transaction (none with `options.savepoint: false`). A
   *    duplicate raises no error on the server. On MariaDB 10.5+ (asked once per ORM) the fast path is
   *    `insert ... returning *` alone, without a savepoint (a 1062 rolls back that statement only), then the
   *    select of `filters` after a 1062. Entities whose flush it cannot reproduce (`insertPath`:
   *    versioned, STI, embedded, deferrable uniques, primary relationships, onLoad or afterCreate listeners,
   *    flush subscribers, new related entities, MySQL-family servers without RETURNING, other drivers) are
   *    inserted by a flush in `transactional`
   *    with propagation `NESTED`: a SAVEPOINT inside an open transaction, a transaction of its own otherwise.
   * 4. On success the same instance is returned, now managed by this EntityManager.
   * 5. On a `UniqueConstraintViolationException` only the savepoint is rolled back; the caller's
   *    transaction and earlier work stay. With `filters`, the row they match is loaded (on the primary,
   *    in the same transaction) and returned, as the instance already in the identity map where there is
   *    one (its unflushed changes kept). No match rethrows the violation; more than one throws
   *    {@link MultipleResultsError}. Without `filters`, the duplicate is ignored: resolves to `undefined`.
   *    If this EntityManager already manages an entity with the same primary key, no insert is sent: that
   *    is the duplicate, and it keeps its place and its changes. When the filters then match nothing, the
   *    error is {@link ManagedKeyConflictError}, a `UniqueConstraintViolationException` like the database's
   *    own when no such entity is loaded, so the identity map never changes which error class comes out.
   * 6. Every other error, including foreign key, NOT NULL and CHECK violations, rolls the savepoint back
   *    and propagates as MikroORM's exception, the caller's transaction still usable. If that rollback fails
   *    too (the connection was lost while the insert waited), the first error still propagates, the
   *    rollback's attached to it ({@link cleanupErrorsOf}); a conflict is then not recovered from either.
   * 7. The rejected instance is detached: a later `flush` never inserts it. A call that rejects leaves no
   *    row behind: an `onCreate` or `beforeCreate` that throws does so before the insert is sent (on the
   *    savepoint path, inside the savepoint, which is rolled back), and `afterCreate` runs inside the
   *    savepoint path's nested transaction, so its error rolls the insert back. Only a subscriber's
   *    `afterTransactionCommit` comes too late: outside a transaction it runs after the savepoint path's
   *    commit, and its error rejects the call with the row committed, as it rejects a plain `flush`.
   * 8. Under REPEATABLE READ or SERIALIZABLE (PostgreSQL), when the filters match nothing and no row with
   *    any of the candidate's unique keys is visible, the conflicting row was committed after the snapshot:
   *    {@link TransactionRetryError} (on the fast path, ON CONFLICT's 40001 for that hidden row is its cause).
   *    A visible row rethrows the violation (retrying cannot help). On the MySQL family, inside a transaction,
   *    a locking read of the filters (`lock in share mode`) that finds the row the plain read missed means a
   *    REPEATABLE READ snapshot hides it: {@link TransactionRetryError}; finding nothing rethrows the 1062.
   *    Serialization failures and deadlocks (MariaDB's 1213 and 1020 roll the whole transaction back) are
   *    never caught.
   *
   * Inside a transaction it emits (PostgreSQL, fast path, one round trip whether the row is new or not):
   * ```sql
   * savepoint failsafe_add; insert into "tag" ("name") values ('news') on conflict do nothing returning *;
   *   select "t0".* from "tag" as "t0" where "t0"."name" = 'news' limit 2; release savepoint failsafe_add
   * ```
   * and on the savepoint path, for a conflict:
   * ```sql
   * savepoint trx2
   * insert into "tag" ("name") values ('news') returning "id"   -- 23505 unique_violation
   * rollback to savepoint trx2
   * select "t0".* from "tag" as "t0" where "t0"."name" = 'news' limit 2
   * ```
   *
   * @example
   * ```ts
   * const tag = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' });
   * await em.failsafeAdd(new Visit(page, day)); // ignore a duplicate: resolves to undefined on conflict
   * ```
   * @throws {CoasterUsageError} when `entity` is not an instance of a discovered entity class.
   */
  failsafeAdd<T extends object>(entity: T, filters: FilterQuery<T>, options?: FailsafeAddOptions): Promise<T>;
  failsafeAdd<T extends object>(entity: T, filters?: FilterQuery<T>, options?: FailsafeAddOptions): Promise<T | undefined>;
  async failsafeAdd<T extends object>(entity: T, filters?: FilterQuery<T>, options: FailsafeAddOptions = {}): Promise<T | undefined> {
    const em = contextEntityManager(this);
    return em.insertNew(em.entityMetadata('failsafeAdd', entity), entity, filters, options);
  }

  /** {@link failsafeAdd}; with `unlessFound`, the PostgreSQL fast path inserts only if `filters` find no row (see {@link fastInsert}). */
  private async insertNew<T extends object>(
    meta: EntityMetadata<T>,
    entity: T,
    filters: FilterQuery<T> | undefined,
    options: FailsafeAddOptions,
    unlessFound?: UnlessFound<T>,
  ): Promise<T | undefined> {
    const em = contextEntityManager(this);
    em.assertInsertableAlone('failsafeAdd', meta, entity);
    await em.flushAllBut(meta, entity);
    const twin = em.managedTwin(meta, entity);
    if (twin) {
      // no insert: the managed entity is the duplicate, its key the one the database would refuse
      if (filters === undefined) {
        return undefined;
      }
      const conflict = ManagedKeyConflictError.managedTwin('failsafeAdd', meta.className, wrap(twin, true).getPrimaryKey(), filters);
      return em.loadExisting(meta, entity, filters, conflict);
    }

    // `getOrCreate` asked for its candidate before preparing it; the flush since can only have made related entities managed
    const path = unlessFound ? { dialect: 'postgresql' as const } : await insertPath(em, meta, entity);
    try {
      if ('dialect' in path) {
        const result = await fastInsert(em, meta, entity, filters, path.dialect, options, unlessFound);
        if (result !== entity) {
          em.forget(meta, entity);
        }
        return result;
      }
      await em.transactional(
        // flushed here, not only by `transactional`, for ORMs with `disableTransactions` (no savepoint needed:
        // every statement commits on its own there) where `transactional` merely calls back
        fork => fork.persist(entity).flush(),
        { propagation: TransactionPropagation.NESTED },
      );
      return entity;
    } catch (error) {
      em.forget(meta, entity);
      // a conflict hidden by the snapshot is recovered only where a savepoint kept the transaction usable
      const hidden = isHiddenConflict(error) && (options.savepoint !== false || !em.isInTransaction());
      // nor is any conflict whose savepoint (or transaction) could not be rolled back: what is left is unknown
      if ((!(error instanceof UniqueConstraintViolationException) && !hidden) || cleanupErrorsOf(error).length > 0) {
        throw error;
      }
      return filters === undefined ? undefined : em.loadExisting(meta, entity, filters, error);
    }
  }

  /**
   * Inserts and commits a new entity, or returns the row that a concurrent insert got in first.
   * A port of coaster's `CoasterSession.add_and_commit`: {@link failsafeAdd} with `filters` required.
   * Outside a transaction the row is committed when the promise resolves (another connection sees
   * it); inside one, its savepoint is released.
   *
   * Outside a transaction it emits (PostgreSQL, fast path; one implicit transaction):
   * ```sql
   * insert into "user" ("email", "name") values ('ada@example.com', 'Ada') on conflict do nothing returning *;
   *   select "u0".* from "user" as "u0" where "u0"."email" = 'ada@example.com' limit 2
   * ```
   *
   * @example
   * ```ts
   * const user = await em.addAndCommit(em.create(User, { email, name }), { email });
   * ```
   */
  async addAndCommit<T extends object>(entity: T, filters: FilterQuery<T>, options?: FailsafeAddOptions): Promise<T> {
    if (filters == null) {
      throw CoasterUsageError.filtersRequired('addAndCommit');
    }
    return this.failsafeAdd(entity, filters, options);
  }

  /**
   * Finds the entity matching `where`, or creates it from `where` plus `data` and inserts it with
   * {@link failsafeAdd}, so two concurrent callers end with one row and both get it. A port of fictive's
   * `find_or_create`. To learn whether the row was created, use {@link getOrCreate}.
   *
   * - `where` is both the filter and the new row's values, so it takes plain values of the entity's
   *   properties at every depth: an embeddable as a plain object, a relation as an entity, a reference or
   *   a primary key. Operators, arrays, JSON documents, collections, a relation given by other columns
   *   of the related row, unknown properties and an empty `where` throw {@link CoasterUsageError} before
   *   any SQL.
   * - `data` is used only on create and may not contradict `where` ({@link CoasterUsageError}).
   * - A unique key declared in the entity's metadata must cover `where`: the primary key, a `unique`
   *   property or an `@Unique` group, all of whose properties `where` gives non-null values (it may give
   *   more). Otherwise two racing calls would both insert, so {@link CoasterUsageError} is thrown before any
   *   SQL, unless `options.checkUnique` is `false` (for a constraint that exists only in the database).
   * - Several rows matching `where` throw {@link MultipleResultsError}; it never picks one.
   * - The whole call reads from the primary, never from a `replicas` connection, so it cannot miss a row
   *   that was just written or find one just deleted.
   * - It never changes a managed entity's in-memory state: the entity that matches `where` is returned
   *   as it is; if none matches but the new row's primary key is that of a managed entity, nothing is
   *   sent and {@link ManagedKeyConflictError} is thrown: a `UniqueConstraintViolationException`, as the
   *   database's violation is when that entity is not loaded.
   *
   * On PostgreSQL's fast path it emits one statement, whose insert runs only when its select finds nothing, so a
   * row that exists takes no sequence value (in a transaction, inside `savepoint failsafe_add; ...; release
   * savepoint failsafe_add`, as {@link failsafeAdd}'s statements):
   * ```sql
   * with "found" as (select "t0".* from "tag" as "t0" where "t0"."name" = 'news' limit 2),
   *   "inserted" as (insert into "tag" ("name") select 'news' where not exists (select 1 from "found") on conflict do nothing returning *)
   *   select *, true as "created" from "inserted" union all select *, false from "found"
   * ```
   * then, only when it neither found nor inserted a row (a concurrent transaction committed it meanwhile), the
   * select alone. The row to insert is created (`em.create`, `onCreate` values) before the database tells whether
   * it exists. Elsewhere, and on PostgreSQL where that statement cannot serve (`beforeCreate` listeners, properties
   * a find loads otherwise than as columns, the savepoint path's entities, a new row that cannot be created,
   * changes waiting for a flush: see `findFirstReason` and docs/race-safe-inserts.md), it emits, when the row exists:
   * ```sql
   * select "t0".* from "tag" as "t0" where "t0"."name" = 'news' limit 2
   * ```
   * and when it does not, that select followed by {@link failsafeAdd}'s statements.
   *
   * @example
   * ```ts
   * const tag = await em.findOrCreate(Tag, { name: 'news' }, { color: 'red' });
   * ```
   */
  async findOrCreate<T extends object>(
    entityName: EntityName<T>,
    where: EntityData<T>,
    data?: EntityData<T>,
    options?: FailsafeAddOptions,
  ): Promise<T> {
    const { entity } = await contextEntityManager(this).findOrInsert('findOrCreate', entityName, where, data, options);
    return entity;
  }

  /**
   * {@link findOrCreate}, telling whether this call inserted the row (like Django's `get_or_create`).
   *
   * @example
   * ```ts
   * const { entity: tag, created } = await em.getOrCreate(Tag, { name: 'news' });
   * if (created) await audit('tag created', tag);
   * ```
   */
  async getOrCreate<T extends object>(
    entityName: EntityName<T>,
    where: EntityData<T>,
    data?: EntityData<T>,
    options?: FailsafeAddOptions,
  ): Promise<FindOrCreateResult<T>> {
    return contextEntityManager(this).findOrInsert('getOrCreate', entityName, where, data, options);
  }

  /**
   * Updates the row matching `where` with `update`, or creates it from `where` + `update` + `create`, and
   * tells which (like Django's `update_or_create`, `create` being its `create_defaults`). Two concurrent
   * callers never both insert, and never overwrite each other unseen: the found row is locked before it is
   * read, so each update applies to the row as the previous one left it.
   *
   * - `where`: as {@link getOrCreate}'s (plain values, covered by a declared unique key unless
   *   `options.checkUnique` is `false`; several matching rows throw {@link MultipleResultsError}).
   * - `update` is written whether the row is found or created; `create` only to a new row, over `update`
   *   where both give a property. Neither may contradict `where`, name an unknown property or a collection,
   *   and `update` may not give a primary key that `where` does not: {@link CoasterUsageError} before any SQL.
   * - This EntityManager's pending changes are flushed first, as {@link failsafeAdd} does.
   * - On PostgreSQL, one statement updates the row and inserts the new one only when it updated none (see below):
   *   the UPDATE locks the row, sets `update` and, only when that changes a column, the `onUpdate` values
   *   (`@UpdatedAt`); the stored row's values come back and are those of the entity returned. It serves entities
   *   that {@link getOrCreate}'s one statement serves (no `beforeCreate` listeners, ...), without `beforeUpdate`
   *   or `afterUpdate` listeners, an `onUpdate` that takes the entity, or subscribers whose flush hooks need the
   *   update (`InsertPathAware.updateNeedsFlush`), for an `update` of plain column values (a to-one relation as a
   *   managed entity or its key) whose new row can be created. Several rows matching `where` make the statement
   *   fail as a whole: {@link MultipleResultsError}, nothing written. The rest, and every call on SQLite and
   *   MariaDB, lock and flush:
   * - Found: the row is read with `LockMode.PESSIMISTIC_WRITE` (`select ... for update` on PostgreSQL and
   *   MariaDB; on SQLite, whose transactions lock the whole database for writing, the lock is the write lock:
   *   see docs/race-safe-inserts.md), `update` is assigned to it and flushed, so hooks run, `@UpdatedAt` moves and `@CreatedAt`
   *   does not. When `update` changes nothing, no UPDATE is sent and `@UpdatedAt` stays (as a flush does).
   *   The entity this EntityManager already manages for the row is the one returned and updated, its values
   *   now those of the locked row plus `update`. Resolves to `{ entity, created: false }`.
   * - Not found: inserted by {@link getOrCreate} (so {@link failsafeAdd}'s fast or savepoint path), resolves
   *   to `{ entity, created: true }`. If a concurrent caller inserted the row in between, it is locked and
   *   updated as above.
   * - Outside a transaction the call runs in a READ COMMITTED transaction of its own (SQLite: a transaction;
   *   PostgreSQL's one statement: autocommitted), committed when the promise resolves; inside yours, in a
   *   savepoint (none with `options.savepoint: false`).
   *   Either way an error (a foreign key or CHECK violation as MikroORM's exception, MikroORM's own refusal of
   *   `null` for a NOT NULL property, a hook's) leaves nothing of the call written, your transaction usable,
   *   and the managed entity reloaded from the row.
   * - Under REPEATABLE READ or SERIALIZABLE on PostgreSQL, a row committed after your transaction's snapshot
   *   throws {@link TransactionRetryError} (as {@link getOrCreate} does), and PostgreSQL's own serialization
   *   failure for a row changed since propagates. On MariaDB the locking read sees the latest committed row
   *   and updates it; a row your snapshot shows but that was deleted since throws {@link TransactionRetryError}.
   *
   * Emits on PostgreSQL, outside a transaction, whether the row exists or not (inside one, between
   * `savepoint failsafe_add` and `release savepoint failsafe_add` in the same string):
   * ```sql
   * with "found" as (update "tag" set "color" = 'blue', "updated_at" = case when ("color") is distinct from ('blue')
   *     then '2026-12-07T14:20:00.000Z' else "updated_at" end where "name" = 'news' returning *),
   *   "inserted" as (insert into "tag" ("color", "created_at", "name", "updated_at") select 'blue', ..., 'news', ...
   *     where not exists (select 1 from "found") on conflict do nothing returning *)
   *   select *, true as "created" from "inserted" union all select *, false from "found" where (select 1 from "found") = 1
   * ```
   * then, only when that returned no row (a concurrent transaction inserted the row; the second statement finds it),
   * the same statement again, and after a second empty one the insert without ON CONFLICT, for the database to name
   * the unique key it violates. Where it locks and flushes, when the row exists:
   * ```sql
   * start transaction isolation level read committed
   * select "t0".* from "tag" as "t0" where "t0"."name" = 'news' limit 2 for update
   * update "tag" set "color" = 'blue' where "id" = 1
   * commit
   * ```
   * and when it does not, the same locking select, then {@link getOrCreate}'s statements, then `commit`.
   *
   * @example
   * ```ts
   * const { entity: user, created } = await em.updateOrCreate(User, { email }, { name }, { plan: 'free' });
   * ```
   */
  async updateOrCreate<T extends object>(
    entityName: EntityName<T>,
    where: EntityData<T>,
    update: EntityData<T>,
    create?: EntityData<T>,
    options: FailsafeAddOptions = {},
  ): Promise<FindOrCreateResult<T>> {
    return updateOrCreate(contextEntityManager(this), entityName, where, update, create, options);
  }

  /**
   * {@link getOrCreate} for many rows at once (Django's `get_or_create` in bulk, with a `created` flag per row):
   * one result per row, in input order. Each row holds a new row's values; `options.uniqueBy` (default: the one
   * unique key whose properties every row holds, a generated primary key left out) picks the key that identifies it.
   *
   * - A found row is returned as stored: the row's other values are not applied. An entity this EntityManager
   *   already manages under that key is returned as that instance, its unflushed changes kept.
   * - Rows repeating a key are one row: every position gets the same instance, `created` true at most at the first.
   * - New entities are managed as after a flush: `onCreate` values (timestamps, `@AutoInitDefault`), `beforeCreate`
   *   hooks, every column the database returned, a snapshot (a later flush sends nothing).
   * - Race-safe: callers racing on overlapping keys, inside or outside transactions, end with one row per key and
   *   `created` true exactly once per row across them. Keys are written in a stable order (sorted), so that
   *   overlapping batches cannot deadlock. A key another transaction committed meanwhile is looked up again (READ
   *   COMMITTED); under REPEATABLE READ or SERIALIZABLE, a row the snapshot hides throws {@link TransactionRetryError}.
   * - The whole call is one transaction (a savepoint inside the caller's; none with `savepoint: false`): a foreign
   *   key, NOT NULL or CHECK violation rejects with MikroORM's exception, its message naming the refused row
   *   (`rows[3] { ... }`), no row of the call written, the caller's transaction usable.
   * - Bad input (not an array, a row that is no plain object, an unknown property, an operator, a row without a
   *   value for a key property, a `uniqueBy` that is no unique key, rows that pick no key or several, a bad
   *   `chunkSize`) throws {@link CoasterUsageError} before any SQL. An empty array resolves to `[]` with no SQL.
   * - Rows are sent `chunkSize` (default 1,000) at a time, never more than 32,766 bound values (on SQLite, 500
   *   rows) per statement; `options.progress` hears of each chunk.
   *
   * Emits on PostgreSQL (SQLite alike, with backticks), outside a transaction, for two new keys and one existing:
   * ```sql
   * begin
   * insert into "tag" ("name") values ('a'), ('b'), ('c') on conflict ("name") do nothing returning *
   * select "t0".* from "tag" as "t0" where "t0"."name" in ('b')
   * commit
   * ```
   * On MariaDB 10.5+ (`set transaction isolation level read committed` first, outside a transaction):
   * ```sql
   * select `t0`.* from `tag` as `t0` where `t0`.`name` in ('a', 'b', 'c')
   * insert into `tag` (`name`) values ('a'), ('c') returning *
   * ```
   * Entities whose flush a multi-row insert cannot reproduce (the reasons of {@link failsafeAdd}'s savepoint path:
   * `afterCreate` listeners, flush subscribers, versioning, ...) and other servers are found with one select per
   * chunk, then inserted key by key with {@link failsafeAdd}, in the same transaction.
   *
   * @example
   * ```ts
   * const results = await em.getOrCreateMany(User, [{ email: 'ada@example.com', name: 'Ada' }, { email: 'bob@example.com' }]);
   * const created = results.filter(result => result.created).length;
   * ```
   */
  async getOrCreateMany<T extends object>(
    entityName: EntityName<T>,
    rows: EntityData<T>[],
    options: ManyOptions<T> = {},
  ): Promise<FindOrCreateResult<T>[]> {
    const em = contextEntityManager(this);
    const meta = em.getMetadata().get<T>(Utils.className(entityName));
    return getOrCreateMany(em, 'getOrCreateMany', meta, rows, options, {
      failsafeAdd: (entity, filters) => em.failsafeAdd(entity, filters, options),
      forget: entity => em.forget(meta, entity),
    });
  }

  /**
   * {@link getOrCreateMany} without the `created` flags: the entities, one per row, in input order.
   *
   * @example
   * ```ts
   * const tags = await em.findOrCreateMany(Tag, names.map(name => ({ name })));
   * ```
   */
  async findOrCreateMany<T extends object>(entityName: EntityName<T>, rows: EntityData<T>[], options?: ManyOptions<T>): Promise<T[]> {
    const results = await this.getOrCreateMany(entityName, rows, options);
    return results.map(result => result.entity);
  }

  /**
   * {@link failsafeAdd} for many new entities of one class, as one batch: one result per entity, in input order.
   * An inserted entity is returned as the same instance, now managed. A duplicate (of a stored row, or of an
   * earlier entity of the call) resolves to the stored row's managed entity when the call has a key
   * (`options.uniqueBy`, default: the one unique key whose properties every entity holds), and is detached.
   * Without a key (no unique key held by every entity), entities are inserted one by one with `failsafeAdd`, in
   * input order, and a duplicate resolves to `undefined`. The entities are checked as `failsafeAdd` checks one
   * (new, standing alone: {@link CoasterUsageError} before any SQL); the EntityManager's other pending changes are
   * flushed first. Transaction, errors, races, order and chunks as in {@link getOrCreateMany}.
   *
   * @example
   * ```ts
   * const tags = await em.failsafeAddMany(names.map(name => em.create(Tag, { name })));
   * ```
   */
  async failsafeAddMany<T extends object>(entities: T[], options: ManyOptions<T> = {}): Promise<(T | undefined)[]> {
    const em = contextEntityManager(this);
    checkArray('failsafeAddMany', entities, options);
    if (entities.length === 0) {
      return [];
    }
    const meta = em.entityMetadata('failsafeAddMany', entities[0]);
    entities.forEach((entity, index) => {
      const other = em.entityMetadata('failsafeAddMany', entity);
      if (other !== meta) {
        throw CoasterUsageError.mixedEntities('failsafeAddMany', meta.className, other.className, index);
      }
      em.assertInsertableAlone('failsafeAddMany', meta, entity);
    });
    return failsafeAddMany(em, 'failsafeAddMany', meta, entities, options, {
      failsafeAdd: (entity, filters) => em.failsafeAdd(entity, filters, options),
      forget: entity => em.forget(meta, entity),
    });
  }

  /**
   * MikroORM's `transactional`, keeping {@link onCommit} honest inside a {@link managedSession}: a nested
   * transaction (propagation `NESTED`, the default) gets a level of commit callbacks of its own, handed to
   * the enclosing level when its savepoint is released and dropped when it rolls back. Outside a managed
   * session it is MikroORM's `transactional` unchanged. The logic is the managed sessions' (`withCommitLevel`);
   * it is an override because MikroORM's transaction events (`beforeTransactionStart`, ...) fire beside the
   * callback, not around it, so no subscriber can run the callback in the nested level's async context.
   *
   * When the callback (or the flush after it) fails and the ROLLBACK or ROLLBACK TO SAVEPOINT that follows fails
   * too (the connection was lost), it rejects with the callback's error, as MikroORM does, with the rollback's
   * error attached ({@link cleanupErrorsOf}): knex reports that failure to no one else.
   *
   * On MySQL and MariaDB, a nested level that fails with an error after which the database had rolled back the
   * whole transaction (a deadlock, 1213; a record changed since the snapshot, 1020) cannot leave the enclosing
   * levels to commit what follows in autocommit (`NestedRollbackGuard`): the connection goes on in a READ
   * ONLY transaction, and every enclosing level rejects with `TransactionRolledBackError`.
   *
   * @example
   * ```ts
   * await managedSession(async em => {
   *   await em.transactional(async tx => {
   *     onCommit(() => mailer.send(welcome)); // dropped: this savepoint rolls back
   *     throw new Error('changed my mind');
   *   }).catch(() => undefined);
   * }); // commits; the mail is not sent
   * ```
   */
  override async transactional<T>(cb: (em: this) => T | Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const outer = this.getTransactionContext<Knex.Transaction>();
    let level: TransactionLevel | undefined;
    try {
      return await withCommitLevel(this.config, options, () =>
        super.transactional(async em => {
          level = TransactionLevel.start(em, outer, options.propagation);
          const result = await cb(em);
          level.beforeCommit();
          return result;
        }, options),
      );
    } catch (error) {
      throw level ? await level.failed(error) : error;
    }
  }

  /**
   * MikroORM's `upsert`, setting `@CreatedAt`/`@UpdatedAt` columns like a flush: a missing value is set
   * to the current time (both equal on insert), and a conflict updates `updatedAt` but never `createdAt`
   * (added to `onConflictExcludeFields` unless `onConflictMergeFields` is given). The logic is the entity
   * decorators' (`timestampedUpsert`); it is an override because MikroORM's `beforeUpsert` event cannot change
   * the conflict clause, which must leave `createdAt` alone.
   *
   * @example
   * ```ts
   * // insert into "article" ("title", "views", "created_at", "updated_at") values (...)
   * //   on conflict ("title") do update set "views" = excluded."views", "updated_at" = excluded."updated_at"
   * const article = await em.upsert(Article, { title: 'hello', views: 2 });
   * ```
   */
  override upsert<Entity extends object, Fields extends string = never>(
    entityNameOrEntity: EntityName<Entity> | Entity,
    data?: EntityData<Entity> | NoInfer<Entity>,
    options: UpsertOptions<Entity, Fields> = {},
  ): Promise<Entity> {
    const stamped = timestampedUpsert(this, entityNameOrEntity, data, options);
    return super.upsert(entityNameOrEntity, stamped.data, stamped.options);
  }

  /**
   * MikroORM's `upsertMany`, with `@CreatedAt`/`@UpdatedAt` columns handled as in {@link upsert}.
   *
   * @example
   * ```ts
   * const articles = await em.upsertMany(Article, [{ title: 'a' }, { title: 'b' }]);
   * ```
   */
  override upsertMany<Entity extends object, Fields extends string = never>(
    entityNameOrEntity: EntityName<Entity> | Entity[],
    data?: (EntityData<Entity> | NoInfer<Entity>)[],
    options: UpsertManyOptions<Entity, Fields> = {},
  ): Promise<Entity[]> {
    const stamped = timestampedUpsertMany(this, entityNameOrEntity, data, options);
    return super.upsertMany(entityNameOrEntity, stamped.data, stamped.options);
  }

  /** The metadata of `entity`'s class, or a {@link CoasterUsageError} if it is not an entity of a discovered class. */
  private entityMetadata<T extends object>(method: string, entity: T): EntityMetadata<T> {
    const meta = Utils.isEntity<T>(entity) ? this.getMetadata().find<T>(entity.constructor.name) : undefined;
    if (!meta) {
      throw CoasterUsageError.notAnEntity(method, entity);
    }
    return meta;
  }

  /** {@link getOrCreate}, its errors naming `method`. */
  private async findOrInsert<T extends object>(
    method: string,
    entityName: EntityName<T>,
    where: EntityData<T>,
    data: EntityData<T> | undefined,
    options: FailsafeAddOptions | undefined,
  ): Promise<FindOrCreateResult<T>> {
    const meta = this.getMetadata().get<T>(Utils.className(entityName));
    checkCreatableWhere(method, meta, where, data);
    if (options?.checkUnique !== false) {
      checkUniqueWhere(method, meta, where);
    }
    const filters = where as FilterQuery<T>;
    const prepared = await this.preparedCandidate(meta, { ...where, ...data });
    if (prepared) {
      const entity = (await this.insertNew(meta, prepared.candidate, filters, options ?? {}, { method, changeSet: prepared.changeSet }))!;
      return { entity, created: entity === prepared.candidate };
    }
    const existing = await this.findUnique(method, meta, filters);
    if (existing) {
      return { entity: existing, created: false };
    }
    const values = { ...where, ...data } as RequiredEntityData<T>;
    // em.create() would merge `values` into a managed entity with the same primary key
    const twin = this.getUnitOfWork(false).tryGetById<T>(meta.className, values as FilterQuery<T>, this.schema, false);
    if (twin) {
      throw ManagedKeyConflictError.managedTwin(method, meta.className, wrap(twin, true).getPrimaryKey(), where);
    }
    const candidate = this.create(entityName, values, { persist: false });
    const entity = await this.failsafeAdd(candidate, filters, options);
    return { entity, created: entity === candidate };
  }

  /**
   * The new entity of `values`, its insert prepared (`onCreate` values, validation), for {@link getOrCreate} to look
   * its row up and insert it in one statement: on PostgreSQL, for an entity that `findFirstReason` does not
   * exclude. `undefined` otherwise, so that {@link getOrCreate} finds first and
   * creates the entity only after a miss, as on the other databases: when `values` give a collection or an inverse
   * one-to-one (which {@link failsafeAdd} refuses), a relation as a primary-key object (which `em.create` would take
   * for a new entity's values; the find turns it into the key), or the primary key of a managed entity (which
   * `em.create` would change); when this EntityManager holds changes to flush ({@link hasTrackedChanges}); for an
   * entity on the savepoint path; and when creating or preparing the entity throws
   * (a constructor, an `onCreate`, a required value missing), since that error concerns the row to create: it
   * propagates after a miss only. An entity created then is forgotten (out of its relations' inverse sides).
   * `updateOrCreate`'s one statement on PostgreSQL prepares its new row here too.
   *
   * @internal
   */
  async preparedCandidate<T extends object>(
    meta: EntityMetadata<T>,
    values: EntityData<T>,
  ): Promise<{ candidate: T; changeSet: ChangeSet<T> } | undefined> {
    if (dialectOf(this.getPlatform()) !== 'postgresql' || findFirstReason(this, meta) !== undefined || this.hasTrackedChanges()) {
      return undefined;
    }
    const creatable = Object.entries(values).every(([key, value]) => {
      const prop = meta.properties[key as keyof typeof meta.properties] as EntityProperty<T> | undefined;
      switch (prop?.kind) {
        case ReferenceKind.ONE_TO_MANY:
        case ReferenceKind.MANY_TO_MANY:
          return false;
        case ReferenceKind.ONE_TO_ONE:
        case ReferenceKind.MANY_TO_ONE:
          return (prop.kind === ReferenceKind.MANY_TO_ONE || prop.owner) && !Utils.isPlainObject(value);
        default:
          return true;
      }
    });
    if (!creatable || this.getUnitOfWork(false).tryGetById<T>(meta.className, values as FilterQuery<T>, this.schema, false)) {
      return undefined;
    }
    let candidate: T | undefined;
    try {
      candidate = newEntity(this, meta, values);
      if ('dialect' in (await insertPath(this, meta, candidate))) {
        return { candidate, changeSet: await prepareInsert(this, meta, candidate) };
      }
    } catch {
      // about the row to create: getOrCreate throws it again after a miss only
    }
    if (candidate) {
      this.forget(meta, candidate); // em.create added it to the inverse sides of its relations
    }
    return undefined;
  }

  /**
   * Whether this EntityManager holds changes that MikroORM tracks without computing change sets: entities to persist
   * or remove, managed entities with a property set, changed collections. {@link getOrCreate}'s one statement is
   * sent after a flush, as {@link failsafeAdd}'s insert is, while a hit found first flushes only what `em.find` does:
   * with such changes, {@link getOrCreate} finds first, so that a hit leaves them pending as it always has.
   */
  private hasTrackedChanges(): boolean {
    const uow = this.getUnitOfWork(false);
    if (uow.getPersistStack().size > 0 || uow.getRemoveStack().size > 0 || uow.getOrphanRemoveStack().size > 0) {
      return true;
    }
    for (const entity of uow.getIdentityMap()) {
      const wrapped = wrap(entity, true);
      if (wrapped.isTouched()) {
        return true;
      }
      for (const prop of metadataOf(entity).relations) {
        const value = (entity as Dictionary)[prop.name];
        if (Utils.isCollection(value) && value.isDirty()) {
          return true;
        }
      }
    }
    return false;
  }

  /**
   * Refuses an entity that is already managed, or that does not stand alone: pending entities that
   * reference it (they would be flushed before it, pointing nowhere, or at a row it did not become), and
   * entities its own collections or inverse one-to-one hold (inserted with it, and lost with it when it
   * turns out to be a duplicate).
   */
  private assertInsertableAlone(method: string, meta: EntityMetadata, entity: object): void {
    const wrapped = wrap(entity, true);
    if (wrapped.isManaged()) {
      throw CoasterUsageError.alreadyPersisted(method, meta.className, wrapped.getPrimaryKey());
    }
    const dependents = new Set<string>();
    for (const prop of meta.relations) {
      const value = (entity as Dictionary)[prop.name];
      const holds = Utils.isCollection(value)
        ? value.isInitialized() && value.count() > 0
        : prop.kind === ReferenceKind.ONE_TO_ONE && !prop.owner && value != null;
      if (holds) {
        dependents.add(`${meta.className}.${prop.name}`);
      }
    }
    const uow = this.getUnitOfWork(false);
    const others = new Set<object>(uow.getPersistStack());
    for (const { meta: referrer } of meta.referencingProperties) {
      uow.getIdentityMap().getStore(referrer).forEach(other => others.add(other));
    }
    for (const other of others) {
      const otherMeta = this.getMetadata().get(other.constructor.name);
      const references = otherMeta.relations.some(prop => {
        const value = (other as Dictionary)[prop.name];
        return Utils.isCollection(value)
          ? prop.kind === ReferenceKind.MANY_TO_MANY && prop.owner && value.isInitialized() && value.contains(entity, false)
          : prop.kind !== ReferenceKind.ONE_TO_ONE || prop.owner
            ? Reference.unwrapReference(value as object) === entity
            : false;
      });
      if (other !== entity && references) {
        dependents.add(otherMeta.className);
      }
    }
    if (dependents.size > 0) {
      throw CoasterUsageError.pendingDependents(method, meta.className, [...dependents]);
    }
  }

  /**
   * The entity this EntityManager already manages under `entity`'s primary key, if `entity` has one and
   * it is not `entity` itself: inserting `entity` would violate that key.
   */
  private managedTwin<T extends object>(meta: EntityMetadata<T>, entity: T): T | undefined {
    const key = wrap(entity, true).getPrimaryKey();
    const twin = key == null ? undefined : this.getUnitOfWork(false).getById<T>(meta.className, key, wrap(entity, true).getSchema());
    return twin === entity ? undefined : twin;
  }

  /** Removes `entity` from the identity map, but only if the map holds that very instance under its key. */
  private unmap(meta: EntityMetadata, entity: object): void {
    const map = this.getUnitOfWork(false).getIdentityMap();
    const wrapped = wrap(entity, true);
    const key = wrapped.getPrimaryKey();
    if (key != null && this.getUnitOfWork(false).getById(meta.className, key, wrapped.getSchema()) === entity) {
      map.delete(entity);
    }
  }

  /**
   * Detaches a rejected entity: out of the persist stack and managed collections, no longer managed, so
   * a later flush never inserts it. MikroORM's `unsetIdentity` removes the identity-map entry under the
   * entity's key whichever instance it holds, so a managed entity with that key is put back.
   * `updateOrCreate`'s one statement on PostgreSQL forgets its new row's entity when it updated a row.
   *
   * @internal
   */
  forget(meta: EntityMetadata, entity: object): void {
    const uow = this.getUnitOfWork(false);
    const wrapped = wrap(entity, true);
    const key = wrapped.getPrimaryKey();
    const holder = key == null ? undefined : uow.getById(meta.className, key, wrapped.getSchema());
    uow.unsetIdentity(entity);
    if (holder && holder !== entity) {
      uow.getIdentityMap().store(holder);
    }
  }

  /**
   * Takes a new entity out of this unit of work and flushes everything else, so that the entity is
   * inserted only inside the savepoint. While the other changes flush, the entity is marked as being
   * processed, so a cascade from a managed parent (whose collection already holds it) does not insert it.
   */
  private async flushAllBut(meta: EntityMetadata, entity: object): Promise<void> {
    const uow = this.getUnitOfWork(false);
    const detach = () => {
      uow.getPersistStack().delete(entity);
      this.unmap(meta, entity);
    };
    detach();
    if (this.nothingToFlush()) {
      return;
    }
    try {
      await whileProcessing(entity, () => this.flush());
    } finally {
      detach();
    }
  }

  /**
   * Whether a flush would find nothing to write and tell no one: no entity managed, none to persist or remove,
   * no subscriber listening to flush events (`em.transactional` registers one of its own) but this library's
   * `TimestampSubscriber`, whose `onFlush` only checks change sets. MikroORM's flush would then only find that
   * there are no change sets, which costs a fast-path call a tenth of its Node CPU. `updateOrCreate` skips its
   * flush before the call's statements on the same condition.
   *
   * @internal
   */
  nothingToFlush(): boolean {
    const uow = this.getUnitOfWork(false);
    if (uow.getPersistStack().size > 0 || uow.getRemoveStack().size > 0 || uow.getOrphanRemoveStack().size > 0) {
      return false;
    }
    for (const subscriber of this.getEventManager().getSubscribers()) {
      const listens = FLUSH_ONLY_EVENTS.some(event => typeof subscriber[event] === 'function');
      if (listens && !(subscriber instanceof TimestampSubscriber)) {
        return false;
      }
    }
    return uow.getIdentityMap()[Symbol.iterator]().next().done === true;
  }

  /**
   * The one row matching `filters`, read on the primary; `null` when none does.
   * @throws {MultipleResultsError} when several do.
   */
  private async findUnique<T extends object>(method: string, meta: EntityMetadata<T>, filters: FilterQuery<T>): Promise<T | null> {
    const rows = await this.find<T>(meta.class, filters, { limit: 2, connectionType: 'write' });
    if (rows.length > 1) {
      throw MultipleResultsError.onFind(method, meta.className, filters, rows.length);
    }
    return rows[0] ?? null;
  }

  /**
   * Loads the row that `filters` match after an insert of `candidate` was refused, by `conflict`: the
   * database's unique violation (or, on the fast path, its 40001 for a conflicting row the snapshot
   * hides), or the {@link ManagedKeyConflictError} of a managed entity that already has the candidate's
   * primary key. Returns the one row, else throws {@link MultipleResultsError}; when nothing matches,
   * throws {@link TransactionRetryError} if a snapshot hides the conflicting row, else `conflict`.
   * `updateOrCreate`'s one statement on PostgreSQL calls it after a conflict its snapshot hides.
   *
   * @internal
   */
  async loadExisting<T extends object>(
    meta: EntityMetadata<T>,
    candidate: T,
    filters: FilterQuery<T>,
    conflict: DriverException,
  ): Promise<T> {
    const rows = await this.find<T>(meta.class, filters, { limit: 2, connectionType: 'write' });
    if (rows.length === 1) {
      return rows[0];
    }
    if (rows.length > 1) {
      throw MultipleResultsError.onConflict(meta.className, filters, rows.length, conflict);
    }
    const isolationLevel = await this.snapshotHidingConflict(meta, candidate, filters);
    if (isolationLevel) {
      throw TransactionRetryError.hiddenConflict(meta.className, isolationLevel, conflict);
    }
    throw conflict;
  }

  /**
   * The isolation level of the open transaction when its snapshot hides the row that an insert of
   * `candidate` conflicted with, which `filters` matched nothing of; `undefined` when no snapshot hides it
   * (outside a transaction, under READ COMMITTED, on SQLite, which serialises writers).
   * - PostgreSQL: the transaction is REPEATABLE READ or SERIALIZABLE (asked) and no row sharing one of
   *   `candidate`'s unique keys is visible ({@link anyUniqueKeyVisible}).
   * - MySQL family: a locking read of `filters` (`lock in share mode`: InnoDB's current read, of the latest
   *   committed rows) finds the row that the plain read did not. Only a REPEATABLE READ snapshot can hide a
   *   committed row (READ COMMITTED reads the latest one, SERIALIZABLE's reads all lock), and the row is
   *   committed: InnoDB raised the 1062 only once its insert committed, and the 1062 left this transaction
   *   a shared lock on it. The locking read keeps its locks (on the gap where `filters` match nothing)
   *   until the transaction ends; with `innodb_snapshot_isolation` on (MariaDB 11.6's default) it fails
   *   instead with 1020, which rolls the whole transaction back and propagates.
   */
  private async snapshotHidingConflict<T extends object>(
    meta: EntityMetadata<T>,
    candidate: T,
    filters: FilterQuery<T>,
  ): Promise<string | undefined> {
    if (!this.isInTransaction()) {
      return undefined;
    }
    switch (dialectOf(this.getPlatform())) {
      case 'postgresql': {
        const [row] = await this.execute<{ level: string }[]>(`select current_setting('transaction_isolation') as level`);
        return SNAPSHOT_ISOLATION_LEVELS.has(row.level) && !(await this.anyUniqueKeyVisible(meta, candidate)) ? row.level : undefined;
      }
      case 'mysql': {
        const locking = await selectStatement(this, meta, filters, undefined, true);
        const rows = await this.execute<unknown[]>(locking.sql, [...locking.params], 'all');
        return rows.length > 0 ? 'repeatable read' : undefined;
      }
      default:
        return undefined;
    }
  }

  /**
   * Whether this transaction can see a row sharing one of `candidate`'s unique keys (primary key, unique
   * properties, `@Unique` groups), soft-delete and other filters off. If it can, the violation is about a
   * visible row that the caller's filters do not match, and retrying the transaction cannot help.
   */
  private async anyUniqueKeyVisible<T extends object>(meta: EntityMetadata<T>, candidate: T): Promise<boolean> {
    const keys = [
      meta.primaryKeys as string[],
      ...meta.props.filter(prop => prop.unique).map(prop => [prop.name as string]),
      ...meta.uniques.filter(unique => unique.properties).map(unique => Utils.asArray(unique.properties) as string[]),
    ];
    const conditions = keys
      .map(names => Object.fromEntries(names.map(name => [name, (candidate as Dictionary)[name]])))
      .filter(condition => Object.values(condition).every(value => value != null));
    if (conditions.length === 0) {
      return false;
    }
    const visible = await this.count(meta.class, { $or: conditions } as FilterQuery<T>, { filters: false, connectionType: 'write' });
    return visible > 0;
  }
}
