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
