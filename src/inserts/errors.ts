import { inspect } from 'node:util';
import { UniqueConstraintViolationException, type DriverException } from '@mikro-orm/core';
import { CoasterError } from '../shared/errors.js';

/** A filter or value as a message shows it: one line, safe with entities that reference each other. */
export function describe(value: unknown): string {
  return inspect(value, { depth: 2, breakLength: Infinity, compact: true });
}

/**
 * The caller's filters matched more than one row, so there is no single row to return. Thrown by
 * `findOrCreate` / `getOrCreate` when `where` matches several rows (like Django's
 * `MultipleObjectsReturned`), and by `failsafeAdd` / `addAndCommit` when, after a unique violation, the
 * filters match several rows (the violation is then the `cause`), and by `updateOrCreate` when its UPDATE matched
 * several rows (PostgreSQL's cardinality violation is then the `cause`). Never resolved by picking one row.
 *
 * @example
 * ```ts
 * try {
 *   await em.failsafeAdd(tag, { color: 'red' });
 * } catch (e) {
 *   if (e instanceof MultipleResultsError) console.error(e.entityName, e.count);
 * }
 * ```
 */
export class MultipleResultsError extends CoasterError {
  private constructor(
    message: string,
    /** The entity the filters were applied to. */
    readonly entityName: string,
    /** The filters that matched more than one row. */
    readonly filters: unknown,
    /** How many rows matched (the lookup stops counting at 2). */
    readonly count: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** `findOrCreate` / `getOrCreate` found several rows matching `where`. */
  static onFind(method: string, entityName: string, where: unknown, count: number): MultipleResultsError {
    return new MultipleResultsError(
      `${method}(${entityName}, ${describe(where)}) matched ${count} or more rows instead of one. ` +
        `Pass a \`where\` that identifies a single row, such as the columns of a unique constraint.`,
      entityName,
      where,
      count,
    );
  }

  /**
   * `updateOrCreate`'s one statement on PostgreSQL updated several rows matching `where` and was undone as a whole
   * (`cardinality`, PostgreSQL's 21000, is the `cause`): the table lacks the unique constraint that covers `where`.
   */
  static onUpdate(method: string, entityName: string, where: unknown, cardinality: DriverException): MultipleResultsError {
    return new MultipleResultsError(
      `${method}(${entityName}, ${describe(where)}) matched 2 or more rows instead of one, so its update was undone ` +
        `and nothing was written. The table has no unique constraint over these columns: create the one the entity ` +
        `declares (run your migrations), or pass a \`where\` that identifies a single row.`,
      entityName,
      where,
      2,
      { cause: cardinality },
    );
  }

  /** After `violation`, the filters given to recover the existing row matched several rows. */
  static onConflict(entityName: string, filters: unknown, count: number, violation: DriverException): MultipleResultsError {
    return new MultipleResultsError(
      `Recovering from a conflicting insert of ${entityName}, the filters ${describe(filters)} matched ` +
        `${count} or more rows instead of one. Pass filters that identify a single row, such as the columns ` +
        `of the unique constraint that was violated.`,
      entityName,
      filters,
      count,
      { cause: violation },
    );
  }
}

/**
 * A unique violation was raised inside a REPEATABLE READ or SERIALIZABLE transaction, and the row it
 * conflicts with is not visible to that transaction's snapshot (another transaction committed it
 * after this one started). Nothing the current transaction can read will return it: roll the whole
 * transaction back and run it again. The original violation is the `cause`. Also thrown by
 * `updateOrCreate` when its snapshot shows a row that its locking read cannot find
 * ({@link TransactionRetryError.rowNotLockable}, without a `cause`).
 *
 * @example
 * ```ts
 * for (let attempt = 0; ; attempt++) {
 *   try {
 *     return await orm.em.fork().transactional(em => em.findOrCreate(Tag, { name }), {
 *       isolationLevel: IsolationLevel.REPEATABLE_READ,
 *     });
 *   } catch (e) {
 *     if (!(e instanceof TransactionRetryError) || attempt === 3) throw e;
 *   }
 * }
 * ```
 */
export class TransactionRetryError extends CoasterError {
  private constructor(
    message: string,
    /** The entity whose insert conflicted, or whose row could not be locked. */
    readonly entityName: string,
    /**
     * The transaction's isolation level as the database reported it, e.g. `repeatable read`; `undefined`
     * from {@link TransactionRetryError.rowNotLockable}, which does not ask the database.
     */
    readonly isolationLevel: string | undefined,
    cause?: DriverException,
  ) {
    super(message, { cause });
  }

  /** The insert of `entityName` violated a unique key of a row that this transaction's snapshot hides. */
  static hiddenConflict(entityName: string, isolationLevel: string, cause: DriverException): TransactionRetryError {
    return new TransactionRetryError(
      `Inserting ${entityName} conflicted with a row that this ${isolationLevel} transaction cannot see: ` +
        `another transaction committed it after this one took its snapshot. Roll back and retry the whole ` +
        `transaction (or run this insert under READ COMMITTED).`,
      entityName,
      isolationLevel,
      cause,
    );
  }

  /**
   * `updateOrCreate` looked for the row with its locking read `looks` times and found none, while its
   * insert found the row each time with a plain read: the transaction's snapshot (REPEATABLE READ on
   * MariaDB) still shows a row that was deleted since, or other transactions keep deleting and inserting it.
   */
  static rowNotLockable(method: string, entityName: string, where: unknown, looks: number): TransactionRetryError {
    return new TransactionRetryError(
      `${method}(${entityName}, ${describe(where)}) found no row to lock ${looks} times, while its insert found ` +
        `one each time: this transaction's snapshot shows a row that another transaction has deleted since (or ` +
        `other transactions keep deleting and inserting it). Nothing was written. Roll back and retry the whole ` +
        `transaction (or call it outside a transaction, where it runs under READ COMMITTED).`,
      entityName,
      undefined,
    );
  }
}

/**
 * The row a race-safe insert would write has the primary key of an entity this EntityManager already
 * manages, and that entity does not match the call's filters (`findOrCreate`'s `where`): the insert
 * would violate the primary key, so it is not sent, and the managed entity and its row are left as they
 * are. It is a MikroORM `UniqueConstraintViolationException`, like the database's own refusal of the
 * same insert when no entity with that key is loaded, so one `catch` handles the duplicate whatever the
 * identity map holds. Unlike this library's other errors it does not extend `CoasterError` (a class has
 * one parent), and it carries no SQLSTATE (`code` is `undefined`): no statement was sent.
 *
 * @example
 * ```ts
 * await em.findOneOrFail(Member, { nick: 'ada' });              // { nick: 'ada', name: 'Ada' }
 * try {
 *   await em.getOrCreate(Member, { nick: 'ada', name: 'Other' });
 * } catch (e) {
 *   if (e instanceof UniqueConstraintViolationException) ...;     // this error, or the database's
 * }
 * ```
 */
export class ManagedKeyConflictError extends UniqueConstraintViolationException {
  private constructor(
    message: string,
    /** The entity the insert was of. */
    readonly entityName: string,
    /** The primary key that the new row and the managed entity share. */
    readonly primaryKey: unknown,
    /** The filters (or `where`) that the managed entity does not match. */
    readonly filters: unknown,
  ) {
    // a DriverException wraps the driver's error and appends its stack frames: there is no driver error here
    super(Object.assign(new Error(message), { stack: '' }));
    this.stack = this.stack?.trimEnd();
  }

  /** `method` would insert a new `entityName` with `primaryKey`, which a managed entity not matching `filters` has. */
  static managedTwin(method: string, entityName: string, primaryKey: unknown, filters: unknown): ManagedKeyConflictError {
    return new ManagedKeyConflictError(
      `${method}(${entityName}, ${describe(filters)}) found no matching row, and the row it would insert has primary ` +
        `key ${describe(primaryKey)}, which this EntityManager already manages as a ${entityName} that does not match. ` +
        `Inserting it would violate the primary key, so nothing was sent. Treat it as the database's unique ` +
        `violation (it is a UniqueConstraintViolationException): look the entity up by its key (em.findOne) and ` +
        `change it, or pass filters that match it.`,
      entityName,
      primaryKey,
      filters,
    );
  }
}

/**
 * A call that cannot work as written: the message says what to change. Built by the static
 * factories below so every message is written once.
 *
 * @example
 * ```ts
 * await em.failsafeAdd({ name: 'x' }); // CoasterUsageError: failsafeAdd() needs an entity instance ...
 * ```
 */
export class CoasterUsageError extends CoasterError {
  /**
   * `failsafeAdd` was given an entity that this EntityManager already manages. The usual cause is
   * `em.create(Entity, data)` with the primary key of a managed entity: MikroORM then merges `data` into
   * that entity and returns it, so its in-memory state no longer matches its row.
   */
  static alreadyPersisted(method: string, entityName: string, primaryKey: unknown): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() inserts new entities, but this ${entityName} (primary key ${describe(primaryKey)}) is already ` +
        `managed by this EntityManager. If it came from em.create(${entityName}, data) with that primary key, ` +
        `MikroORM merged \`data\` into the managed entity: call em.refresh() on it to undo that, and pass ` +
        `new ${entityName}() instead, or use em.getOrCreate(). To save changes to a managed entity, call em.flush().`,
    );
  }

  /** Entities waiting to be flushed reference the entity `failsafeAdd` was asked to insert on its own. */
  static pendingDependents(method: string, entityName: string, dependents: string[]): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() inserts this ${entityName} on its own, in a savepoint, and may return another instance (the ` +
        `existing row) instead, but ${dependents.join(', ')} waiting to be flushed would be written with it or ` +
        `point at it. Nothing was written. Call ${method}() first and give the entity it returns to the ` +
        `dependents (e.g. post.tag = await em.findOrCreate(Tag, { name })), then flush them.`,
    );
  }

  /** `findOrCreate` was called with an empty `where`. */
  static emptyWhere(method: string, entityName: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(${entityName}, where) needs a \`where\` with at least one property, such as the columns of a ` +
        `unique constraint: an empty \`where\` matches every row. Use em.create() and em.flush() to insert unconditionally.`,
    );
  }

  /** `where` names something that is not a property of the entity. */
  static unknownPropertyInWhere(method: string, entityName: string, path: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() creates ${entityName} from its \`where\` argument, but '${path}' is not a property of ${entityName}. ` +
        `Use the entity's property names (not column names).`,
    );
  }

  /** An array in `where`: a filter reads it as `$in`, `em.create` as a value. */
  static arrayInWhere(method: string, path: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() creates the entity from its \`where\` argument, so \`where\` takes single values; '${path}' is an ` +
        `array, which a filter reads as "one of". Pass one value, or put array-typed values in \`data\`.`,
    );
  }

  /** A relation in `where` described by the related row's other columns, which `em.create` would insert. */
  static relationLookupInWhere(method: string, path: string, target: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() creates the entity from its \`where\` argument, so the relation '${path}' takes a ${target} ` +
        `entity, reference or primary key; an object of other ${target} properties would insert a second ${target}. ` +
        `Look it up first: { ${path.split('.').pop()}: await em.findOneOrFail(${target}, { ... }) }.`,
    );
  }

  /** A collection in `where`: it has no column to filter on or create from. */
  static collectionInWhere(method: string, path: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() cannot filter on or create from the collection '${path}'. Put collection items in \`data\`, ` +
        `or add them after the call.`,
    );
  }

  /** A JSON document in `where`: a filter matches it partially, `em.create` stores it whole. */
  static documentInWhere(method: string, path: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() creates the entity from its \`where\` argument, but '${path}' is an object, which a filter ` +
        `matches key by key while em.create() stores it whole. Put JSON values in \`data\`.`,
    );
  }

  /** `data` gives a property a different value than `where`, so the created row would not match `where`. */
  static dataContradictsWhere(method: string, entityName: string, key: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(${entityName}, where, data): '${key}' has one value in \`where\` and another in \`data\`, so the ` +
        `created row would not match \`where\`. Give each property in one of them.`,
    );
  }

  /**
   * No unique key of the entity covers the `where` of `findOrCreate` / `getOrCreate`, so nothing stops two
   * racing calls from both inserting. `paths` are the properties `where` gives non-null values (embedded
   * ones as `address.city`), `keys` the entity's unique keys as its metadata declares them.
   */
  static whereNotUnique(method: string, entityName: string, where: unknown, paths: string[], keys: string[]): CoasterUsageError {
    const fix =
      paths.length > 0
        ? `Declare the constraint: @Unique({ properties: ${describe(paths)} }) on ${entityName}, or unique: true on a property`
        : `Give the properties of one of those keys non-null values`;
    return new CoasterUsageError(
      `${method}(${entityName}, ${describe(where)}) is race-safe only when a unique constraint covers \`where\`, but ` +
        `none of ${entityName}'s unique keys (${keys.join('; ')}) has all its properties in \`where\` with non-null ` +
        `values (unique constraints let NULLs repeat): two concurrent calls could both insert, and every later call ` +
        `would find two rows. Nothing was sent. ${fix}; or, if the constraint exists only in the database, pass ` +
        `{ checkUnique: false } in the options. A @Unique({ expression }) cannot be checked, so it covers nothing.`,
    );
  }

  /** `updateOrCreate`'s `update` or `create` names something that is not a property of the entity. */
  static unknownPropertyInValues(method: string, entityName: string, argument: string, key: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() writes \`${argument}\` to a ${entityName} row, but '${key}' is not a property of ${entityName}, ` +
        `so MikroORM would set it on the instance and write nothing. Nothing was sent. Use the entity's property ` +
        `names (not column names).`,
    );
  }

  /** `updateOrCreate`'s `update` or `create` holds a collection, which is no column of the row. */
  static collectionInValues(method: string, argument: string, key: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() writes the row's own columns, but \`${argument}\` gives the collection '${key}'. Nothing was ` +
        `sent. Change the collection on the entity the call returns, then flush.`,
    );
  }

  /** `updateOrCreate`'s `update` sets a primary key that `where` does not give: it would move the row. */
  static primaryKeyInUpdate(method: string, entityName: string, key: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(${entityName}, where, update) would change the primary key '${key}' of the row it finds. Nothing ` +
        `was sent. Put the key in \`where\` to find the row by it, or in \`create\` to give it to a new row only.`,
    );
  }

  /** `addAndCommit` was called without the filters it needs to recover. */
  static filtersRequired(method: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() needs filters that find the existing row after a conflict, e.g. ${method}(user, { email: user.email }). ` +
        `Use em.failsafeAdd(entity) if the conflict may be ignored.`,
    );
  }

  /** A batch method (`getOrCreateMany`, `findOrCreateMany`, `failsafeAddMany`) was given something other than an array. */
  static notAnArray(method: string, value: unknown): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() takes an array (of rows or entities), but got ${describe(value)}. Nothing was sent.`,
    );
  }

  /** A row of `getOrCreateMany` is not a plain object of property values. */
  static rowNotAnObject(method: string, index: number, row: unknown): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(): rows[${index}] is ${describe(row)}, not a plain object of the entity's property values. Nothing was sent.`,
    );
  }

  /** `failsafeAddMany` was given entities of more than one class. */
  static mixedEntities(method: string, first: string, other: string, index: number): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() inserts entities of one class per call, but entities[0] is a ${first} and entities[${index}] a ` +
        `${other}. Call it once per class. Nothing was sent.`,
    );
  }

  /**
   * A batch met a row stored under another value than the key it was asked for (the database compares keys
   * otherwise than exactly, or changed the value stored), after it wrote rows that `savepoint: false` inside a
   * transaction leaves it no way to undo before it resolves its keys one by one.
   */
  static inexactKeys(method: string, entityName: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(${entityName}): the database matched a key of the call to a row stored under another value (a ` +
        `collation that compares keys otherwise than exactly, such as MariaDB's case-insensitive default, citext, ` +
        `NOCASE, or a value the database changed). Such keys are resolved one by one after the call's inserts are ` +
        `undone, which { savepoint: false } inside a transaction does not allow. Roll the transaction back, then ` +
        `call it with a savepoint, or give the keys as the database stores them (e.g. lower-cased).`,
    );
  }

  /** `chunkSize` is not a positive integer. */
  static badChunkSize(method: string, chunkSize: unknown): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(): chunkSize must be a positive integer (rows per statement), but is ${describe(chunkSize)}. ` +
        `Leave it out for the default. Nothing was sent.`,
    );
  }

  /**
   * The `uniqueBy` of a batch names a property that cannot identify rows: not a property of the entity, or not
   * one column of the entity's own (a collection, an embedded object, a formula).
   */
  static badUniqueByProperty(method: string, entityName: string, name: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(${entityName}): uniqueBy names '${name}', which is not a scalar or to-one relation property of ` +
        `${entityName}. List the entity's property names (not column names) of one unique constraint. Nothing was sent.`,
    );
  }

  /**
   * The `uniqueBy` of a batch is not exactly the properties of one unique key declared in the entity's metadata,
   * so the database would not refuse a second row with the same values: racing calls could both insert.
   */
  static uniqueByNotAKey(method: string, entityName: string, uniqueBy: string[], keys: string[]): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(${entityName}): uniqueBy ${describe(uniqueBy)} is not the properties of one of ${entityName}'s unique ` +
        `keys (${keys.join('; ')}), so nothing would stop two racing calls from both inserting. Nothing was sent. ` +
        `Pass the properties of one unique key, declare the constraint (@Unique({ properties: ${describe(uniqueBy)} })), ` +
        `or, if it exists only in the database, pass { checkUnique: false }.`,
    );
  }

  /**
   * No `uniqueBy` was given and the rows do not pick one unique key: none of the entity's unique keys (a generated
   * primary key left out) has all its properties in every row, or several have.
   */
  static uniqueByUnresolved(method: string, entityName: string, held: string[], keys: string[]): CoasterUsageError {
    const why =
      held.length === 0
        ? `none of ${entityName}'s unique keys (${keys.join('; ') || 'none declared'}) has non-null values in every row`
        : `several of ${entityName}'s unique keys have values in every row (${held.join('; ')})`;
    return new CoasterUsageError(
      `${method}(${entityName}) identifies rows by one unique key, but ${why}. Nothing was sent. Pass ` +
        `{ uniqueBy: [...] } with the properties of the key that identifies a row.`,
    );
  }

  /** A row (`input` is `rows`) or entity (`entities`) of a batch lacks a value for a property of its `uniqueBy` key. */
  static rowWithoutKey(method: string, entityName: string, input: string, index: number, uniqueBy: string[], row: unknown): CoasterUsageError {
    return new CoasterUsageError(
      `${method}(${entityName}): ${input}[${index}] ${describe(row)} has no non-null value for every property of ` +
        `uniqueBy ${describe(uniqueBy)}, so it cannot be looked up (unique constraints let NULLs repeat). Nothing was sent.`,
    );
  }

  /** A {@link CoasterEntityRepository} was used with an EntityManager that is not a `CoasterEntityManager`. */
  static notCoasterEntityManager(entityName: string): CoasterUsageError {
    return new CoasterUsageError(
      `The repository of ${entityName} needs a CoasterEntityManager, but the ORM uses another EntityManager class. ` +
        `Initialise MikroORM with defineCoasterConfig({...}) or the option entityManager: CoasterEntityManager.`,
    );
  }

  /**
   * Something that is not an entity of a discovered class was passed where an entity instance is
   * required. A `CoasterUsageError` (a plain `TypeError` in 0.1.0), so `instanceof CoasterError` catches it
   * with every other misuse of this library.
   */
  static notAnEntity(method: string, value: unknown): CoasterUsageError {
    const what =
      value === null || typeof value !== 'object' ? String(value) : `an instance of ${value.constructor?.name ?? 'Object'}`;
    return new CoasterUsageError(
      `${method}() needs an entity instance of a class MikroORM discovered, but got ${what}. ` +
        `Create it with new Entity() or em.create(Entity, data), and list the class in the \`entities\` option.`,
    );
  }

  /** `findOrCreate` was given a query operator where it needs plain values. */
  static operatorInWhere(method: string, key: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() creates the entity from its \`where\` argument, so \`where\` takes plain property values; ` +
        `'${key}' is a query operator. Pass operators to em.findOne() and create the entity yourself.`,
    );
  }
}
