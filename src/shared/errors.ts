/**
 * Base class of every error this library throws on its own account, so callers can tell a
 * mikro-orm-coaster usage or recovery error from a database error with one `instanceof`. Each feature's
 * errors extend it in that feature's folder, built by static factories whose messages say what to do.
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
 * A MikroORM internal this library relies on is missing or has another shape in the installed MikroORM:
 * that release is not supported. The message names the internal.
 *
 * @example
 * ```ts
 * // MikroOrmInternalError: MikroORM internal SqlSchemaGenerator.prepareSchemaForComparison is missing ...
 * ```
 */
export class MikroOrmInternalError extends CoasterError {
  /** `name` is not there, or not what it was in the MikroORM releases this library was tested with. */
  static missing(name: string): MikroOrmInternalError {
    return new MikroOrmInternalError(
      `MikroORM internal ${name} is missing or has changed shape in the installed MikroORM, so mikro-orm-coaster ` +
        `cannot work with it. Install a MikroORM version within the package's peer dependency range, and report ` +
        `the version you use to mikro-orm-coaster.`,
    );
  }
}

/**
 * What an error carries when clean-up steps that ran because of it failed too: a failed ROLLBACK,
 * ROLLBACK TO SAVEPOINT or RELEASE SAVEPOINT (a connection lost while the work waited, say), or a
 * managed session's reload of its request's entities after a rollback. The call rejects with the first
 * error, the one that made the clean-up run; the clean-up steps' errors are attached to it here, in the
 * order they failed, so neither is lost. Read them with {@link cleanupErrorsOf}.
 *
 * @example
 * ```ts
 * // DriverException 57P01: terminating connection due to administrator command
 * //   cleanupErrors: [DriverException: rollback to savepoint failsafe_add; ... - Connection terminated unexpectedly]
 * ```
 */
export interface CleanupErrors {
  /** The errors of the clean-up steps that failed after this error, in the order they failed. */
  cleanupErrors: unknown[];
}

/**
 * The errors of the clean-up steps that failed after `error` (see {@link CleanupErrors}); empty when they all
 * succeeded or none ran.
 *
 * @example
 * ```ts
 * try {
 *   await managedSession(em => em.failsafeAdd(em.create(Tag, { name }), { name }));
 * } catch (e) {
 *   log.error(e);
 *   for (const cleanup of cleanupErrorsOf(e)) log.warn({ err: cleanup }, 'and the rollback failed too');
 *   throw e;
 * }
 * ```
 */
export function cleanupErrorsOf(error: unknown): unknown[] {
  const attached = typeof error === 'object' && error !== null && 'cleanupErrors' in error ? error.cleanupErrors : undefined;
  return Array.isArray(attached) ? attached : [];
}

/**
 * Records that a clean-up step run because of `error` failed with `cleanupError` (see {@link CleanupErrors}), as
 * an enumerable property, so that loggers print it with the error. A thrown value that is not an object (a
 * string) cannot carry it.
 */
export function attachCleanupError(error: unknown, cleanupError: unknown): void {
  if (typeof error === 'object' && error !== null) {
    Reflect.set(error, 'cleanupErrors', [...cleanupErrorsOf(error), cleanupError]);
  }
}

/** A SQLSTATE: five digits or upper-case letters. */
const SQLSTATE = /^[0-9A-Z]{5}$/;

/**
 * The SQLSTATE of an error that a database server sent, as the drivers give it, and MikroORM's
 * `DriverException` copies: node-postgres's `code` of a server error (which has a `severity`), the `sqlState`
 * of mysql2 and mariadb. `undefined` when the server sent none: a connection that failed (ECONNRESET,
 * node-postgres's "Connection terminated unexpectedly" or "Client has encountered a connection error and is
 * not queryable"), an error of the application's own, and every SQLite error (SQLite has no SQLSTATE).
 *
 * @example
 * ```ts
 * sqlStateOf(error) === '40001' // a serialization failure, from a statement or from COMMIT
 * ```
 */
export function sqlStateOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) {
    return undefined;
  }
  const { sqlState, code, severity } = error as { sqlState?: unknown; code?: unknown; severity?: unknown };
  if (typeof sqlState === 'string' && SQLSTATE.test(sqlState)) {
    return sqlState;
  }
  return typeof severity === 'string' && typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}
