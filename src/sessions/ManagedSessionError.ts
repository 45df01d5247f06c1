import { CoasterError } from '../shared/errors.js';

/**
 * A managed-session API (`initOrm`, `getOrm`, `managedSession`, `onCommit`, `@ManagedSession()`), the
 * `optInTransactions` option or the SQLite transaction set-up was used in a way that cannot work: the message
 * says what to change.
 * Built by the static factories below so every message is written once.
 *
 * @example
 * ```ts
 * try {
 *   await managedSession(em => em.find(User, {}));
 * } catch (e) {
 *   if (e instanceof ManagedSessionError) console.error(e.message); // "... call initOrm(options) first ..."
 * }
 * ```
 */
export class ManagedSessionError extends CoasterError {
  /** The ORM singleton was needed before {@link initOrm} ran, or after {@link closeOrm}. */
  static notInitialised(api: string): ManagedSessionError {
    return new ManagedSessionError(
      `${api} needs the process-wide ORM, but it is not initialised. Call initOrm(options) first, ` +
        `once at start-up (and again only after closeOrm()).`,
    );
  }

  /** {@link initOrm} was called again with options (or an ORM) other than the first call's. */
  static alreadyInitialised(): ManagedSessionError {
    return new ManagedSessionError(
      `initOrm() was already called with other options: the process has one ORM. Use getOrm() to reach it, ` +
        `or call closeOrm() before initialising it with the new options.`,
    );
  }

  /** {@link initOrm} was handed an ORM whose EntityManager is not a `CoasterEntityManager`. */
  static notCoasterEntityManager(className: string): ManagedSessionError {
    return new ManagedSessionError(
      `initOrm() was given a MikroORM whose EntityManager is a ${className}, but managed sessions hand out ` +
        `CoasterEntityManager forks. Initialise that ORM with defineCoasterConfig({...}) or entityManager: CoasterEntityManager.`,
    );
  }

  /** A nested `managedSession` was given options that only the outermost session's transaction can honour. */
  static nestedSessionOptions(names: string[]): ManagedSessionError {
    return new ManagedSessionError(
      `A nested managedSession() runs in a savepoint of the outer session's transaction, so it cannot apply ` +
        `${names.join(', ')}. Pass ${names.length > 1 ? 'these options' : 'this option'} to the outermost managedSession().`,
    );
  }

  /** `managedSession` was called inside an `em.transactional()` / `em.begin()` that no managed session owns. */
  static insideUnmanagedTransaction(): ManagedSessionError {
    return new ManagedSessionError(
      `managedSession() was called inside a transaction that em.transactional() or em.begin() opened. A managed ` +
        `session owns its transaction: start the managedSession() outside, or keep using em.transactional() inside.`,
    );
  }

  /** `managedSession` ran inside a `RequestContext` whose EntityManager of that name belongs to another ORM. */
  static requestContextOfOtherOrm(name: string): ManagedSessionError {
    return new ManagedSessionError(
      `managedSession() joins the RequestContext it runs in, but that context's EntityManager '${name}' belongs to ` +
        `another MikroORM than the one initOrm() initialised. Create the request context from getOrm().em ` +
        `(RequestContext.create(getOrm().em, next)), or give the other ORM's EntityManager another contextName.`,
    );
  }

  /** {@link onCommit} was called where no managed session is running. */
  static onCommitOutsideSession(): ManagedSessionError {
    return new ManagedSessionError(
      `onCommit() registers a callback for the commit of the current managed session, but none is running here. ` +
        `Call it inside managedSession(async em => ...) or a method decorated with @ManagedSession().`,
    );
  }

  /** {@link onCommit} was called from work that outlived its managed session (a promise it did not await). */
  static onCommitAfterSessionEnded(): ManagedSessionError {
    return new ManagedSessionError(
      `onCommit() was called after its managed session had ended, from work the session did not await, so the ` +
        `callback could never run. Await that work inside the session, or run the callback yourself.`,
    );
  }

  /** A transaction was started from work that outlived its managed session (a promise it did not await). */
  static sessionEnded(): ManagedSessionError {
    return new ManagedSessionError(
      `A managed session or transaction was started from work that outlived its managed session (a promise the ` +
        `session did not await), so there is no session left to nest it in. Await that work inside the session, ` +
        `or start it with a managedSession() of its own outside the session's async context.`,
    );
  }

  /** `optInTransactions: true` was combined with `implicitTransactions: true`, which it turns off. */
  static optInWithImplicitTransactions(): ManagedSessionError {
    return new ManagedSessionError(
      `optInTransactions: true means flushes outside a transaction run without one (implicitTransactions: false), ` +
        `but implicitTransactions: true was also given. Remove one of the two options.`,
    );
  }

  /** A SQLite driver other than MikroORM's own, whose knex client class is not known, was configured. */
  static unknownSqliteDriver(dependencies: string[]): ManagedSessionError {
    return new ManagedSessionError(
      `defineCoasterConfig() makes SQLite write transactions begin with BEGIN IMMEDIATE through the driver's knex ` +
        `client class, but does not know the one of a driver depending on ${dependencies.join(', ')}. Use ` +
        `@mikro-orm/sqlite, @mikro-orm/better-sqlite or @mikro-orm/libsql, or pass the client class as driverOptions.client.`,
    );
  }

  /** `retries` was not a whole number of at least zero. */
  static invalidRetries(retries: number): ManagedSessionError {
    return new ManagedSessionError(
      `managedSession() option retries must be a whole number of at least 0 (how many times to re-run the ` +
        `callback after a serialization failure, deadlock or busy SQLite database), but it was ${retries}.`,
    );
  }
}
