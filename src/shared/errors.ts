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
