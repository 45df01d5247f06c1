import { managedSession, type ManagedSessionOptions } from './managedSession.js';

/**
 * Options of the Express middleware (`mikro-orm-coaster/express`) and the Fastify plugin
 * (`mikro-orm-coaster/fastify`): the ORM and transaction options of {@link managedSession} that apply to a
 * whole request, and which responses commit. `retries` is not among them: a request cannot be run twice.
 *
 * @example
 * ```ts
 * app.use(managedSessionMiddleware({ isolationLevel: IsolationLevel.REPEATABLE_READ, commitStatus: status => status < 500 }));
 * ```
 */
export interface RequestSessionOptions extends Pick<ManagedSessionOptions, 'orm' | 'isolationLevel' | 'readOnly'> {
  /**
   * Whether a response with this status code commits the request's session; any other status rolls it back.
   * Default: `status < 400`, so an error response (a handler that threw, a validation failure, a 404) leaves
   * nothing behind.
   */
  commitStatus?: (statusCode: number) => boolean;
}

const commitBelow400 = (statusCode: number): boolean => statusCode < 400;

/** Rejects a request session's callback to roll it back because of the response; never leaves this module. */
class RollbackForResponse extends Error {}

/**
 * One request's {@link managedSession}, held open while the framework runs the request's handlers, and
 * committed or rolled back by the integration once the response's status is known and before its body is
 * sent. Shared by the Express middleware and the Fastify plugin.
 */
export class RequestSession {
  private decide: ((commit: boolean) => void) | undefined;
  private isFinished = false;
  private readonly outcome: Promise<void>;
  private readonly commitStatus: (statusCode: number) => boolean;

  /**
   * Opens the session and calls `enter` inside it (in its async context, so the framework's handlers
   * that `enter` starts reach it through `getOrm().em`). If the session ends before {@link commitOrRollBack}
   * or {@link rollBack} was called (it could not start: no `initOrm`, the database refused BEGIN; or
   * `enter` threw), `failed` gets the error; the request must then fail with it.
   */
  constructor(
    options: RequestSessionOptions,
    enter: (session: RequestSession) => void,
    failed: (error: unknown) => void,
  ) {
    this.commitStatus = options.commitStatus ?? commitBelow400;
    const rollback = new RollbackForResponse('the response is an error: rolling the request session back');
    this.outcome = managedSession(
      () =>
        new Promise<void>((resolve, reject) => {
          this.decide = commit => (commit ? resolve() : reject(rollback));
          enter(this);
        }),
      { orm: options.orm, isolationLevel: options.isolationLevel, readOnly: options.readOnly },
    ).catch((error: unknown) => {
      if (error !== rollback) {
        throw error;
      }
    });
    this.outcome.catch((error: unknown) => {
      if (!this.isFinished) {
        failed(error);
      }
    });
  }

  /** Whether {@link commitOrRollBack} or {@link rollBack} was called. */
  get finished(): boolean {
    return this.isFinished;
  }

  /**
   * Commits the session if `commitStatus(statusCode)` says so, or rolls it back. Resolves once the
   * transaction has ended and, after a commit, the `onCommit` callbacks have run; rejects with the error of
   * the COMMIT (a deferred constraint, a serialization failure) or of an `onCommit` callback.
   */
  commitOrRollBack(statusCode: number): Promise<void> {
    return this.finish(this.commitStatus(statusCode));
  }

  /** Rolls the session back; resolves once it has. */
  rollBack(): Promise<void> {
    return this.finish(false);
  }

  private finish(commit: boolean): Promise<void> {
    this.isFinished = true;
    this.decide!(commit); // set before `enter` runs, and integrations finish only sessions they entered
    return this.outcome;
  }
}
