import {
  ConstraintViolationException,
  TransactionPropagation,
  UniqueConstraintViolationException,
  Utils,
  helper,
  type EntityData,
  type EntityMetadata,
  type EntityName,
  type FilterQuery,
  type NoInfer,
  type RequiredEntityData,
  type TransactionOptions,
  type UpsertManyOptions,
  type UpsertOptions,
} from '@mikro-orm/core';
import { SqlEntityManager, type AbstractSqlDriver } from '@mikro-orm/knex';
import { assertCoasterConfiguration } from './coasterConfiguration.js';
import { CoasterUsageError, MultipleResultsError, TransactionRetryError, notAnEntity } from './errors.js';
import { CommitCallbacks } from './onCommit.js';
import { stampUpsertRow, timestampUpsertOptions } from './timestampUpsert.js';

/** What {@link CoasterEntityManager.getOrCreate} resolves to. */
export interface FindOrCreateResult<T> {
  /** The row, managed by the EntityManager that was called. */
  entity: T;
  /** `true` when this call inserted the row, `false` when it found it (before or after a conflict). */
  created: boolean;
}

/** `findOrCreate` builds the entity from `where`, so `where` must hold values, not query operators. */
function assertPlainValues(where: object): void {
  for (const [key, value] of Object.entries(where)) {
    const operator = key.startsWith('$')
      ? key
      : Utils.isPlainObject(value) && Object.keys(value).find(k => k.startsWith('$'));
    if (operator) {
      throw CoasterUsageError.operatorInWhere('findOrCreate', operator === key ? key : `${key}.${operator}`);
    }
  }
}

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
   * @throws {CoasterConfigError} or `PrimaryRelationshipError`, naming `defineCoasterConfig`.
   */
  constructor(...args: ConstructorParameters<typeof SqlEntityManager<Driver>>) {
    super(...args);
    assertCoasterConfiguration(this.config, this.getMetadata());
  }

  /**
   * Inserts a new entity in a nested transaction, surviving a concurrent insert of the same row.
   * A port of coaster's `failsafe_add`.
   *
   * 1. If the entity is already known to this EntityManager (`em.create` persists by default), it is
   *    detached first, so nothing inserts it outside the savepoint.
   * 2. This EntityManager's other pending changes are flushed first, outside the savepoint.
   * 3. The entity is inserted in `transactional` with propagation `NESTED`: a SAVEPOINT inside an open
   *    transaction, a transaction of its own otherwise.
   * 4. On success the same instance is returned, now managed by this EntityManager.
   * 5. On a `ConstraintViolationException` only the savepoint is rolled back; the caller's transaction
   *    and earlier work stay. With `filters`, the row they match is loaded (on the write connection, in
   *    the same transaction) and returned, as the instance already in the identity map where there is
   *    one. No match rethrows the violation; more than one throws {@link MultipleResultsError}. Without
   *    `filters`, resolves to `undefined`.
   * 6. The rejected instance is detached: a later `flush` never inserts it.
   * 7. Under REPEATABLE READ or SERIALIZABLE, a unique violation whose row the snapshot cannot see throws
   *    {@link TransactionRetryError}. Serialization failures and deadlocks are never caught.
   *
   * Inside a transaction it emits (PostgreSQL, conflict path):
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
   * @throws {TypeError} when `entity` is not an instance of a discovered entity class.
   */
  failsafeAdd<T extends object>(entity: T, filters: FilterQuery<T>): Promise<T>;
  failsafeAdd<T extends object>(entity: T, filters?: FilterQuery<T>): Promise<T | undefined>;
  async failsafeAdd<T extends object>(entity: T, filters?: FilterQuery<T>): Promise<T | undefined> {
    const em = this.getContext(false);
    const meta = em.entityMetadata('failsafeAdd', entity);
    await em.flushAllBut(entity);

    try {
      await em.transactional(
        // flushed here, not only by `transactional`, for ORMs with `disableTransactions` (no savepoint needed:
        // every statement commits on its own there) where `transactional` merely calls back
        fork => fork.persist(entity).flush(),
        { propagation: TransactionPropagation.NESTED },
      );
      return entity;
    } catch (error) {
      if (!(error instanceof ConstraintViolationException)) {
        throw error;
      }
      em.getUnitOfWork(false).unsetIdentity(entity);
      return filters === undefined ? undefined : em.loadConflicting(meta, filters, error);
    }
  }

  /**
   * Inserts and commits a new entity, or returns the row that a concurrent insert got in first.
   * A port of coaster's `CoasterSession.add_and_commit`: {@link failsafeAdd} with `filters` required.
   * Outside a transaction the row is committed when the promise resolves (another connection sees
   * it); inside one, its savepoint is released.
   *
   * Outside a transaction it emits (PostgreSQL, insert path):
   * ```sql
   * begin
   * insert into "user" ("email", "name") values ('ada@example.com', 'Ada') returning "id"
   * commit
   * ```
   *
   * @example
   * ```ts
   * const user = await em.addAndCommit(em.create(User, { email, name }), { email });
   * ```
   */
  async addAndCommit<T extends object>(entity: T, filters: FilterQuery<T>): Promise<T> {
    if (filters == null) {
      throw CoasterUsageError.filtersRequired('addAndCommit');
    }
    return this.failsafeAdd(entity, filters);
  }

  /**
   * Finds the entity matching `where`, or creates it from `where` plus `data` and inserts it with
   * {@link failsafeAdd}, so two concurrent callers end with one row and both get it. A port of fictive's
   * `find_or_create`. `where` takes plain property values (no operators); `data` is used only on create.
   * To learn whether the row was created, use {@link getOrCreate}.
   *
   * Emits, when the row exists:
   * ```sql
   * select "t0".* from "tag" as "t0" where "t0"."name" = 'news' limit 1
   * ```
   * and when it does not, that select followed by {@link failsafeAdd}'s statements.
   *
   * @example
   * ```ts
   * const tag = await em.findOrCreate(Tag, { name: 'news' }, { color: 'red' });
   * ```
   */
  async findOrCreate<T extends object>(entityName: EntityName<T>, where: EntityData<T>, data?: EntityData<T>): Promise<T> {
    const { entity } = await this.getOrCreate(entityName, where, data);
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
  ): Promise<FindOrCreateResult<T>> {
    const em = this.getContext(false);
    assertPlainValues(where);
    const filters = where as FilterQuery<T>;
    const existing = await em.findOne(entityName, filters);
    if (existing) {
      return { entity: existing, created: false };
    }
    const candidate = em.create(entityName, { ...where, ...data } as RequiredEntityData<T>, { persist: false });
    const entity = await em.failsafeAdd(candidate, filters);
    return { entity, created: entity === candidate };
  }

  /**
   * MikroORM's `transactional`, keeping {@link onCommit} honest inside a {@link managedSession}: a nested
   * transaction (propagation `NESTED`, the default) gets a level of commit callbacks of its own, handed to
   * the enclosing level when its savepoint is released and dropped when it rolls back. Outside a managed
   * session it is MikroORM's `transactional` unchanged.
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
    const level = CommitCallbacks.current();
    if (!level || (options.propagation ?? TransactionPropagation.NESTED) !== TransactionPropagation.NESTED) {
      return super.transactional(cb, options);
    }
    return level.nest(() => super.transactional(cb, options));
  }

  /**
   * MikroORM's `upsert`, setting `@CreatedAt`/`@UpdatedAt` columns like a flush: a missing value is set
   * to the current time (both equal on insert), and a conflict updates `updatedAt` but never `createdAt`
   * (added to `onConflictExcludeFields` unless `onConflictMergeFields` is given).
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
    if (data === undefined) {
      const meta = this.getMetadata().get<Entity>((entityNameOrEntity as Entity).constructor.name);
      stampUpsertRow(this, meta, entityNameOrEntity as Entity, options.schema);
      return super.upsert(entityNameOrEntity, undefined, timestampUpsertOptions(meta, options));
    }
    const meta = this.getMetadata().get<Entity>(Utils.className(entityNameOrEntity as EntityName<Entity>));
    return super.upsert(entityNameOrEntity, stampUpsertRow(this, meta, data, options.schema), timestampUpsertOptions(meta, options));
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
    if (data === undefined) {
      const entities = entityNameOrEntity as Entity[];
      if (entities.length === 0) {
        return super.upsertMany(entities, undefined, options);
      }
      const meta = this.getMetadata().get<Entity>(entities[0].constructor.name);
      entities.forEach(entity => stampUpsertRow(this, meta, entity, options.schema));
      return super.upsertMany(entities, undefined, timestampUpsertOptions(meta, options));
    }
    const meta = this.getMetadata().get<Entity>(Utils.className(entityNameOrEntity as EntityName<Entity>));
    const rows = data.map(row => stampUpsertRow(this, meta, row, options.schema));
    return super.upsertMany(entityNameOrEntity, rows, timestampUpsertOptions(meta, options));
  }

  /** The metadata of `entity`'s class, or a `TypeError` if it is not an entity of a discovered class. */
  private entityMetadata<T extends object>(method: string, entity: T): EntityMetadata<T> {
    const meta = Utils.isEntity<T>(entity) ? this.getMetadata().find<T>(entity.constructor.name) : undefined;
    if (!meta) {
      throw notAnEntity(method, entity);
    }
    return meta;
  }

  /**
   * Takes a new entity out of this unit of work and flushes everything else, so that the entity is
   * inserted only inside the savepoint. While the other changes flush, the entity is marked as being
   * processed, so a cascade from a managed parent (whose collection already holds it) does not insert it.
   */
  private async flushAllBut(entity: object): Promise<void> {
    const wrapped = helper(entity);
    if (wrapped.__managed) {
      throw CoasterUsageError.alreadyPersisted('failsafeAdd', wrapped.__meta.className);
    }
    const uow = this.getUnitOfWork(false);
    const detach = () => {
      uow.getPersistStack().delete(entity);
      uow.getIdentityMap().delete(entity);
    };
    detach();
    wrapped.__processing = true;
    try {
      await this.flush();
    } finally {
      wrapped.__processing = false;
      detach();
    }
  }

  /**
   * Loads the row that `filters` match after `violation` rolled the insert back: the one row, else
   * {@link MultipleResultsError}, else {@link TransactionRetryError} when a snapshot hides it, else the
   * violation itself.
   */
  private async loadConflicting<T extends object>(
    meta: EntityMetadata<T>,
    filters: FilterQuery<T>,
    violation: ConstraintViolationException,
  ): Promise<T> {
    const rows = await this.find<T>(meta.class, filters, { limit: 2, connectionType: 'write' });
    if (rows.length === 1) {
      return rows[0];
    }
    if (rows.length > 1) {
      throw new MultipleResultsError(meta.className, filters, rows.length, violation);
    }
    if (violation instanceof UniqueConstraintViolationException) {
      const isolationLevel = await this.snapshotIsolationLevel();
      if (isolationLevel) {
        throw new TransactionRetryError(meta.className, isolationLevel, violation);
      }
    }
    throw violation;
  }

  /**
   * The isolation level of the open PostgreSQL transaction when it reads from a snapshot taken at its
   * start (REPEATABLE READ, SERIALIZABLE); `undefined` outside a transaction, under READ COMMITTED, and
   * on databases without such snapshots (SQLite serialises writers, so a conflicting row is visible).
   */
  private async snapshotIsolationLevel(): Promise<string | undefined> {
    if (!this.isInTransaction() || this.getKnex().client.dialect !== 'postgresql') {
      return undefined;
    }
    const [row] = await this.execute<{ level: string }[]>(`select current_setting('transaction_isolation') as level`);
    return SNAPSHOT_ISOLATION_LEVELS.has(row.level) ? row.level : undefined;
  }
}
