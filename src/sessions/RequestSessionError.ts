import { CoasterError } from '../shared/errors.js';

/**
 * A request's managed session (the Express middleware or the Fastify plugin) could not end the way the
 * response did: the message says what happened to the request's writes and what to change.
 *
 * @example
 * ```ts
 * app.setErrorHandler((error, request, reply) => {
 *   if (error instanceof RequestSessionError) request.log.error(error.message);
 *   reply.send(error);
 * });
 * ```
 */
export class RequestSessionError extends CoasterError {
  /** A Fastify reply went out without running `onSend` hooks (`reply.hijack()`), so its session was rolled back. */
  static responseWithoutOnSend(method: string, url: string): RequestSessionError {
    return new RequestSessionError(
      `The reply to ${method} ${url} was sent without Fastify's onSend hooks (reply.hijack() or a raw write), ` +
        `so its managed session could not commit before it: everything the request wrote was rolled back. ` +
        `Send the reply with reply.send(), or leave such routes out of the managedSessionPlugin's instance.`,
    );
  }
}
