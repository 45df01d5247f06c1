import type { DriverException } from '@mikro-orm/core';

/**
 * Base class of every error this library throws on its own account, so callers can tell a
 * mikro-orm-coaster usage or recovery error from a database error with one `instanceof`.
 *
 * @example
 * ```ts
 * try {
 *   await em.addAndCommit(user, { email });
 * } catch (e) {
 *   if (e instanceof CoasterError) log.warn(e.message);
 *   throw e;
 * }
 * ```
 */
export class CoasterError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A constraint violation was recovered from, but the caller's filters matched more than one row,
 * so there is no single existing row to return. The original violation is the `cause`.
 *
 * Thrown by `failsafeAdd`, `addAndCommit` and `findOrCreate`; never resolved by picking one row.
 *
 * @example
 * ```ts
 * try {
 *   await em.failsafeAdd(tag, { name: 'news' });
 * } catch (e) {
 *   if (e instanceof MultipleResultsError) console.error(e.entityName, e.count);
 * }
 * ```
 */
export class MultipleResultsError extends CoasterError {
  constructor(
    /** The entity the filters were applied to. */
    readonly entityName: string,
    /** The filters that matched more than one row. */
    readonly filters: unknown,
    /** How many rows matched (the lookup stops counting at 2). */
    readonly count: number,
    cause: DriverException,
  ) {
    super(
      `Recovering from a conflicting insert of ${entityName}, the filters ${JSON.stringify(filters)} matched ` +
        `${count} or more rows instead of one. Pass filters that identify a single row, such as the columns ` +
        `of the unique constraint that was violated.`,
      { cause },
    );
  }
}

/**
 * A unique violation was raised inside a REPEATABLE READ or SERIALIZABLE transaction, and the row it
 * conflicts with is not visible to that transaction's snapshot (another transaction committed it
 * after this one started). Nothing the current transaction can read will return it: roll the whole
 * transaction back and run it again. The original violation is the `cause`.
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
  constructor(
    /** The entity whose insert conflicted. */
    readonly entityName: string,
    /** The transaction's isolation level as the database reported it, e.g. `repeatable read`. */
    readonly isolationLevel: string,
    cause: DriverException,
  ) {
    super(
      `Inserting ${entityName} conflicted with a row that this ${isolationLevel} transaction cannot see: ` +
        `another transaction committed it after this one took its snapshot. Roll back and retry the whole ` +
        `transaction (or run this insert under READ COMMITTED).`,
      { cause },
    );
  }
}

/**
 * A call that cannot work as written: the message says what to change. Built by the static
 * factories below so every message is written once.
 *
 * @example
 * ```ts
 * await em.failsafeAdd({ name: 'x' }); // TypeError: failsafeAdd() needs an entity instance ...
 * ```
 */
export class CoasterUsageError extends CoasterError {
  /** `failsafeAdd` was given an entity that this EntityManager already flushed or loaded. */
  static alreadyPersisted(method: string, entityName: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() inserts new entities, but this ${entityName} is already managed and in the database. ` +
        `Pass a new instance (new ${entityName}() or em.create(${entityName}, data)), or flush it with em.flush().`,
    );
  }

  /** `addAndCommit` was called without the filters it needs to recover. */
  static filtersRequired(method: string): CoasterUsageError {
    return new CoasterUsageError(
      `${method}() needs filters that find the existing row after a conflict, e.g. ${method}(user, { email: user.email }). ` +
        `Use em.failsafeAdd(entity) if the conflict may be ignored.`,
    );
  }

  /** A {@link CoasterEntityRepository} was used with an EntityManager that is not a `CoasterEntityManager`. */
  static notCoasterEntityManager(entityName: string): CoasterUsageError {
    return new CoasterUsageError(
      `The repository of ${entityName} needs a CoasterEntityManager, but the ORM uses another EntityManager class. ` +
        `Initialise MikroORM with defineCoasterConfig({...}) or the option entityManager: CoasterEntityManager.`,
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

/**
 * Builds the `TypeError` thrown when something that is not an entity of a discovered class is passed
 * where an entity instance is required.
 */
export function notAnEntity(method: string, value: unknown): TypeError {
  const what =
    value === null || typeof value !== 'object' ? String(value) : `an instance of ${value.constructor?.name ?? 'Object'}`;
  return new TypeError(
    `${method}() needs an entity instance of a class MikroORM discovered, but got ${what}. ` +
      `Create it with new Entity() or em.create(Entity, data), and list the class in the \`entities\` option.`,
  );
}
