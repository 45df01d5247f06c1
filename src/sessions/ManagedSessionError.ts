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
  /**
   * An ORM was needed before {@link initOrm} registered it under `name`, or after {@link closeOrm}.
   * `initialised` lists the names that are registered, to show a misspelt one.
   */
  static notInitialised(api: string, name: string, initialised: string[]): ManagedSessionError {
    const known = initialised.length > 0 ? ` ORMs initialised: ${initialised.map(other => `'${other}'`).join(', ')}.` : '';
    if (name === 'default') {
      return new ManagedSessionError(
        `${api} needs the process-wide ORM, but it is not initialised. Call initOrm(options) first, ` +
          `once at start-up (and again only after closeOrm()).${known}`,
      );
    }
    return new ManagedSessionError(
      `${api} needs the ORM named '${name}', but none is initialised under that name. Call ` +
        `initOrm({ ...options, contextName: '${name}' }) first, once at start-up (and again only after ` +
        `closeOrm('${name}')).${known}`,
    );
  }

  /** {@link initOrm} was called again for a name with options (or an ORM) other than the first call's. */
  static alreadyInitialised(name: string): ManagedSessionError {
    const reach = name === 'default' ? 'getOrm()' : `getOrm('${name}')`;
    const close = name === 'default' ? 'closeOrm()' : `closeOrm('${name}')`;
    return new ManagedSessionError(
      `initOrm() was already called with other options for the ORM named '${name}' (its contextName): the process ` +
        `has one ORM per name. Use ${reach} to reach it, call ${close} before initialising it with the new ` +
        `options, or give the other ORM another contextName.`,
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
        `another MikroORM than the session's. Create the request context from the session's ORM ` +
        `(RequestContext.create(getOrm('${name}').em, next)), or give the other ORM's EntityManager another contextName.`,
    );
  }

  /**
   * A `managedSession` of the ORM `name` was started inside a session of the ORM `inner`, which itself runs
   * inside a session of `name`: MikroORM's `TransactionContext` holds one transaction, `inner`'s, so the outer
   * session of `name` cannot be reached to nest in.
   */
  static sessionHiddenByOtherOrm(name: string, inner: string): ManagedSessionError {
    return new ManagedSessionError(
      `managedSession() for the ORM '${name}' was started inside a session of the ORM '${inner}', which runs inside ` +
        `a session of '${name}'. MikroORM tracks one transaction per async context, '${inner}''s here, so this session ` +
        `could neither join the outer '${name}' session nor safely open a second transaction beside it. Start it ` +
        `outside the '${inner}' session, or use the EntityManager the outer '${name}' session's callback received.`,
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

  /** A MySQL-family driver other than MikroORM's own, whose knex client class is not known, was configured. */
  static unknownMysqlDriver(dependencies: string[]): ManagedSessionError {
    return new ManagedSessionError(
      `defineCoasterConfig() makes read-only transactions with an isolation level valid SQL on MySQL and MariaDB ` +
        `through the driver's knex client class, but does not know the one of a driver depending on ` +
        `${dependencies.join(', ')}. Use @mikro-orm/mariadb or @mikro-orm/mysql, or pass the client class as driverOptions.client.`,
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
