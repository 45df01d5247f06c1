import { wrap, type Configuration, type DriverException, type EntityData, type EntityManager, type EntityMetadata, type FilterQuery, type UnitOfWork } from '@mikro-orm/core';
import { type DatabaseSchema, SqlSchemaGenerator } from '@mikro-orm/knex';
import type { Migrator } from '@mikro-orm/migrations';
import { MikroOrmInternalError } from './errors.js';

/*
 * Every use this library makes of MikroORM's private, protected, underscored or `@internal` API (and of the
 * undeclared parts of the knex and node-postgres objects MikroORM hands over), in one
 * place: each function says why no public API serves, and checks the shape it relies on, so that a MikroORM
 * release that renames or removes it fails here with MikroOrmInternalError naming it, rather than somewhere
 * downstream as a TypeError or, worse, silently. test/shared/internals.test.ts exercises each of them.
 * Nothing else in src/ casts through `unknown` or reads `__` properties.
 */

/** `value`, the internal `name`, when `ok` says it has the shape relied on; else {@link MikroOrmInternalError}. */
function internal<T>(name: string, value: T, ok: boolean): NonNullable<T> {
  if (!ok) {
    throw MikroOrmInternalError.missing(name);
  }
  return value as NonNullable<T>;
}

/**
 * Forgets the service MikroORM cached under `name` (`Configuration.cache`, private). `MikroORM.init` connects,
 * and with `ensureDatabase` builds and caches the default schema generator, before it registers `extensions`;
 * `registerExtension` does not replace a cached instance, and there is no public way to drop it.
 *
 * @example
 * ```ts
 * forgetCachedService(orm.config, '@mikro-orm/schema-generator');
 * ```
 */
export function forgetCachedService(config: Configuration, name: string): void {
  const { cache } = config as unknown as { cache?: Map<string, unknown> };
  internal('Configuration.cache', cache, cache instanceof Map).delete(name);
}

/** The schemas MikroORM compares for an update. */
export interface SchemasForComparison {
  fromSchema: DatabaseSchema;
  toSchema: DatabaseSchema;
}

/**
 * `SqlSchemaGenerator.prepareSchemaForComparison` (private): the database's (or `options.fromSchema`) and the
 * entities' schemas, prepared exactly as `getUpdateSchemaMigrationSQL` prepares them (schema filters, the
 * ignored tables, the platform's defaults), which no public method returns, for computing SQLite's down diff.
 *
 * @example
 * ```ts
 * const { fromSchema, toSchema } = await schemasForComparison(this, options);
 * ```
 */
export function schemasForComparison(
  generator: SqlSchemaGenerator,
  options: Parameters<SqlSchemaGenerator['getUpdateSchemaMigrationSQL']>[0],
): Promise<SchemasForComparison> {
  const { prepareSchemaForComparison } = generator as unknown as {
    prepareSchemaForComparison?: (options: Parameters<SqlSchemaGenerator['getUpdateSchemaMigrationSQL']>[0]) => Promise<SchemasForComparison>;
  };
  const prepare = internal('SqlSchemaGenerator.prepareSchemaForComparison', prepareSchemaForComparison, typeof prepareSchemaForComparison === 'function');
  return prepare.call(generator, options);
}

/**
 * Makes `migrator` use `generator` for the SQL of its migrations and its schema snapshot
 * (`Migrator.schemaGenerator`, private and read-only). The Migrator builds a plain `SqlSchemaGenerator` in its
 * constructor and takes none, neither as an argument nor from the ORM's extensions, so a subclass cannot hand it
 * one through any public API.
 *
 * @example
 * ```ts
 * useSchemaGenerator(this, new CoasterSchemaGenerator(em)); // in CoasterMigrator's constructor
 * ```
 */
export function useSchemaGenerator(migrator: Migrator, generator: SqlSchemaGenerator): void {
  const fields = migrator as unknown as { schemaGenerator?: SqlSchemaGenerator };
  internal('Migrator.schemaGenerator', fields, fields.schemaGenerator instanceof SqlSchemaGenerator).schemaGenerator = generator;
}

/**
 * What MikroORM knows of an entity instance, from its wrapped entity's underscored fields; `undefined` for an
 * instance of a class no ORM has discovered yet (MikroORM adds the wrapper at discovery). The public
 * `wrap(entity)` offers `isManaged()`, but not whether the entity was ever loaded (`__originalEntityData`),
 * which properties were (`__loadedProperties`), nor its ORM (`__config`, `__em`) before it is managed.
 *
 * @example
 * ```ts
 * const state = entityState(entity);
 * const isNew = !state || !(state.managed || state.loaded);
 * ```
 */
export function entityState(entity: object): EntityState | undefined {
  const wrapped = wrap(entity, true);
  if (wrapped === entity) {
    return undefined; // `wrap` returns the entity itself when it has no wrapper
  }
  internal('WrappedEntity.__loadedProperties', wrapped.__loadedProperties, wrapped.__loadedProperties instanceof Set);
  return {
    managed: wrapped.__managed === true,
    loaded: wrapped.__originalEntityData !== undefined,
    loadedProperties: wrapped.__loadedProperties,
    config: internal('WrappedEntity.__config', wrapped.__config, typeof wrapped.__config?.get === 'function'),
    em: wrapped.__em,
  };
}

/** What {@link entityState} tells of an entity. */
export interface EntityState {
  /** Whether an EntityManager manages it. */
  managed: boolean;
  /** Whether it was loaded from (or written to) the database, fully or partly. */
  loaded: boolean;
  /** The properties that were loaded. */
  loadedProperties: ReadonlySet<string>;
  /** The configuration of the ORM that discovered its class. */
  config: Configuration;
  /** The EntityManager it belongs to, if any (none while MikroORM's constructor-based hydration runs). */
  em?: EntityManager;
}

/**
 * The metadata of an entity of a discovered class, from its wrapped entity (`__meta`). The public lookup,
 * `em.getMetadata().find(entity.constructor.name)`, goes through the class name, which costs more than the check
 * `CoasterEntityManager` runs on every managed entity before `getOrCreate`'s one statement.
 *
 * @example
 * ```ts
 * for (const prop of metadataOf(entity).relations) { ... }
 * ```
 */
export function metadataOf<T extends object>(entity: T): EntityMetadata<T> {
  const meta = wrap(entity, true).__meta;
  return internal('WrappedEntity.__meta', meta, Array.isArray(meta?.relations));
}

/**
 * Whether MikroORM's hydrator is assigning `entity`'s properties right now (the wrapped entity's `hydrator`,
 * not even typed: the typings' `__hydrator` does not exist at run time). A property setter needs it to tell
 * MikroORM loading a row from the application assigning a value; `helper(entity).__em` is not set yet while
 * MikroORM hydrates an entity it built with its constructor, so the EntityManager's hydrator would miss it.
 *
 * @example
 * ```ts
 * if (isBeingHydrated(parent)) return markStored(parent, child);
 * ```
 */
export function isBeingHydrated(entity: object): boolean {
  const { hydrator } = wrap(entity, true) as unknown as { hydrator?: { isRunning?: () => boolean } };
  return internal('WrappedEntity.hydrator.isRunning', hydrator, typeof hydrator?.isRunning === 'function').isRunning!();
}

/**
 * Sets whether `entity` counts as changed (`__touched`). MikroORM's property accessors set it on every
 * assignment, and a flush clears it only on the entities it wrote. Set, it makes the next flush compute the
 * entity's change set: a property declared `persist: false` has no column, so no public way makes the flush look at its
 * entity (and its subscribers' `onFlush` see it). Cleared, it stops FlushMode.AUTO from flushing everything
 * pending before the next query of that entity: an assignment of the values the row already holds leaves it set
 * after a flush that had nothing to write, and no public method clears it.
 *
 * @example
 * ```ts
 * setTouched(parent, true); // parent.primaryEmail changed
 * ```
 */
export function setTouched(entity: object, touched: boolean): void {
  const wrapped = wrap(entity, true);
  internal('WrappedEntity.__touched', wrapped, typeof wrapped.__touched === 'boolean').__touched = touched;
}

/**
 * Runs `fn` with `entities` (one or several) marked as being processed (`__processing`), as MikroORM marks an
 * entity while it creates or merges it, so that a flush's cascade (a managed parent whose collection holds
 * one) skips them. `failsafeAdd` and `failsafeAddMany` flush everything but the entities they insert on their
 * own; MikroORM has no public way to leave an entity out of a flush.
 *
 * @example
 * ```ts
 * await whileProcessing(entity, () => em.flush());
 * ```
 */
export async function whileProcessing<T>(entities: object | readonly object[], fn: () => Promise<T>): Promise<T> {
  const all = (Array.isArray(entities) ? entities : [entities]) as readonly object[];
  const wrapped = all.map(entity => internal('WrappedEntity.__processing', wrap(entity, true), typeof wrap(entity, true).__processing === 'boolean'));
  wrapped.forEach(one => (one.__processing = true));
  try {
    return await fn();
  } finally {
    wrapped.forEach(one => (one.__processing = false));
  }
}

/**
 * Registers `entity` in the identity map with `data` as its loaded state (`UnitOfWork.register`,
 * `@internal`), as `em.upsert` does for the entity it returns: the fast path inserts the row itself, and
 * MikroORM has no public way to make an entity managed with a snapshot (`em.merge` would take the entity's
 * current values as loaded, including ones the database changed).
 *
 * @example
 * ```ts
 * registerManaged(em.getUnitOfWork(false), entity, em.getComparator().prepareEntity(entity));
 * ```
 */
export function registerManaged<T extends object>(uow: UnitOfWork, entity: T, data: EntityData<T>): void {
  internal('UnitOfWork.register', uow, typeof uow.register === 'function').register(entity, data, { refresh: true });
}

/**
 * The condition that the filters enabled for `entityName` add to a read (`EntityManager.applyFilters`,
 * `@internal`), as `QueryBuilder.applyFilters` adds it: `{}` when none apply. The query builder's public
 * `applyFilters` only adds the condition to a builder, which cannot tell whether it added any without
 * rendering its SQL (what the fast path's statement templates avoid), and the filters an EntityManager was
 * given by `addFilter` are private to it.
 *
 * @example
 * ```ts
 * const condition = await enabledFilterCondition(em, meta.className); // {} when no filter applies
 * ```
 */
export async function enabledFilterCondition(em: EntityManager, entityName: string): Promise<FilterQuery<object>> {
  const apply = internal('EntityManager.applyFilters', em.applyFilters, typeof em.applyFilters === 'function');
  return (await apply.call(em, entityName, {}, {}, 'read')) ?? {};
}

/**
 * The EntityManager that `em`'s methods act on (`EntityManager.getContext`, `@internal`): the one of the
 * current transaction, else of the current request context, else `em` itself, as every public
 * EntityManager method resolves it. `TransactionContext.getEntityManager` and `RequestContext.getEntityManager`
 * are public, but choosing between them as MikroORM does also depends on the private `useContext` flag of
 * forks and on the `context` option.
 *
 * @example
 * ```ts
 * const em = contextEntityManager(this); // the request's fork when called on the global EntityManager
 * ```
 */
export function contextEntityManager<E extends EntityManager>(em: E): E {
  return internal('EntityManager.getContext', em.getContext, typeof em.getContext === 'function').call(em, false);
}

/**
 * The executor routine that raised a PostgreSQL error (node-postgres's `DatabaseError.routine`), which
 * MikroORM's `DriverException` copies from the driver's error with its other own properties but does not
 * declare. It is how a 40001 raised by ON CONFLICT for a row the snapshot cannot see (`ExecCheckTupleVisible`)
 * differs from every other serialization failure; PostgreSQL gives no other code or field for it.
 *
 * @example
 * ```ts
 * if (error.code === '40001' && postgresRoutine(error) === 'ExecCheckTupleVisible') { ... }
 * ```
 */
export function postgresRoutine(error: DriverException): string {
  const { routine } = error as DriverException & { routine?: string };
  return internal('DriverException.routine (node-postgres DatabaseError.routine)', routine, typeof routine === 'string');
}

/** What {@link beginWith} needs of a knex transaction; knex's typings do not declare it. */
interface KnexTransactionInternals {
  begin?: (connection: unknown) => Promise<unknown>;
  trxClient?: { query?: (connection: unknown, sql: string) => Promise<unknown> };
}

/**
 * Makes a knex transaction (`Transaction_Sqlite`, `Transaction_MySQL`, knex internals) start with `statements`,
 * sent one after another, instead of knex's own `BEGIN;` (preceded by `SET TRANSACTION ...;` for an isolation
 * level or READ ONLY): knex sets its `trxClient` and calls its `begin(connection)` once it holds a connection,
 * for a top-level transaction only. The statements are sent through `trxClient`, not knex's own
 * `Transaction.query()`, which would swallow a failed BEGIN and hand the caller a transaction that is already
 * over; `onError` maps the rejection. knex offers no option for the statements that begin a transaction.
 *
 * @example
 * ```ts
 * beginWith(super.transaction(container, config, outerTx), ['BEGIN IMMEDIATE;'], error => exceptions.convertException(error));
 * ```
 */
export function beginWith<T extends object>(transaction: T, statements: readonly string[], onError: (error: Error) => Error): T {
  const knexTransaction = transaction as KnexTransactionInternals;
  internal('knex Transaction.begin', knexTransaction.begin, typeof knexTransaction.begin === 'function');
  knexTransaction.begin = async connection => {
    const client = knexTransaction.trxClient;
    const query = internal('knex Transaction.trxClient.query', client?.query, typeof client?.query === 'function');
    let result: unknown;
    try {
      for (const sql of statements) {
        result = await query.call(client, connection, sql);
      }
    } catch (error) {
      throw onError(error as Error);
    }
    return result;
  };
  return transaction;
}
