/**
 * Fastify 5 integration of mikro-orm-coaster: `import { managedSessionPlugin } from 'mikro-orm-coaster/fastify'`.
 * `fastify` is an optional peer dependency; the core package never loads it.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { initOrm } from 'mikro-orm-coaster';
 * import { managedSessionPlugin } from 'mikro-orm-coaster/fastify';
 *
 * await initOrm(config);
 * const app = Fastify();
 * await app.register(managedSessionPlugin);
 * ```
 * @module mikro-orm-coaster/fastify
 */
import { AsyncResource } from 'node:async_hooks';
import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import { RequestSession, type RequestSessionOptions } from './requestSession.js';
import { RequestSessionError } from './RequestSessionError.js';

export type { RequestSessionOptions } from './requestSession.js';
export { RequestSessionError } from './RequestSessionError.js';

/** A request's session, and the async context it runs in (for the hooks that run after body parsing). */
interface RequestState {
  session: RequestSession;
  context: AsyncResource;
}

/**
 * Fastify 5 plugin that runs each request in a {@link "mikro-orm-coaster"!managedSession} of the ORM of `initOrm`: hooks and
 * handlers reach the request's session through `getOrm().em` (or MikroORM's `RequestContext.getEntityManager()`),
 * and `onCommit` works in them. It is not encapsulated (like a `fastify-plugin` plugin): registered once,
 * it covers every route of the instance that registers it, and of that instance's child plugins.
 *
 * The session opens in an `onRequest` hook and ends in an `onSend` hook, once the reply's status is final
 * and before anything is written to the socket, streamed payloads included:
 *
 * - Status below 400 (or whatever `commitStatus` accepts): the session commits, its `onCommit` callbacks run,
 *   then the reply is sent.
 * - Any other status, including the 500 of a handler that threw: the session rolls back, then the reply is sent.
 * - The COMMIT (or an `onCommit` callback) fails: the hook throws it, so Fastify's error handler (yours, or
 *   its default 500) replaces the reply.
 * - The session cannot start (no `initOrm`, the database is down): the request fails with that error before
 *   any handler runs.
 * - A reply that skips `onSend` (`reply.hijack()`) is rolled back when the response ends, and the
 *   `onResponse` hook fails with {@link RequestSessionError}, which Fastify logs.
 *
 * `onSend` hooks registered after the plugin run after the commit: an error they throw turns the reply
 * into a 500 over committed data. Register the plugin after plugins whose `onSend` hooks can fail.
 *
 * @example
 * ```ts
 * await app.register(managedSessionPlugin, { commitStatus: status => status < 500 });
 * app.post('/users', async (request, reply) => {
 *   const user = getOrm().em.create(User, request.body as { email: string; name: string });
 *   onCommit(() => mailer.welcome(user.email));
 *   return reply.code(201).send(user); // sent after the INSERT has committed and the mail was sent
 * });
 * ```
 */
export const managedSessionPlugin: FastifyPluginCallback<RequestSessionOptions> = Object.assign(
  function managedSessions(
    fastify: Parameters<FastifyPluginCallback<RequestSessionOptions>>[0],
    options: RequestSessionOptions,
    done: (error?: Error) => void,
  ) {
    const states = new WeakMap<FastifyRequest, RequestState>();

    fastify.addHook('onRequest', (request, _reply, hookDone) => {
      new RequestSession(
        options,
        session => {
          states.set(request, { session, context: new AsyncResource('mikro-orm-coaster.request') });
          hookDone();
        },
        error => hookDone(error instanceof Error ? error : new Error(String(error))),
      );
    });

    // Fastify runs preValidation, preHandler and the handler from the request stream's 'end' event, in the
    // stream's async context: enter the session's again (as @fastify/request-context does).
    fastify.addHook('preValidation', (request, _reply, hookDone) => {
      const state = states.get(request);
      if (state) {
        state.context.runInAsyncScope(hookDone);
      } else {
        hookDone();
      }
    });

    fastify.addHook('onSend', async (request, reply, payload) => {
      const state = states.get(request);
      // not finished: Fastify runs onSend again for the error reply that a failed commit turned into
      if (state && !state.session.finished) {
        await state.session.commitOrRollBack(reply.statusCode);
      }
      return payload;
    });

    fastify.addHook('onResponse', async request => {
      const state = states.get(request);
      if (state && !state.session.finished) {
        await state.session.rollBack();
        throw RequestSessionError.responseWithoutOnSend(request.method, request.url);
      }
    });

    done();
  },
  // Fastify's documented way to share a plugin's hooks with its parent, which `fastify-plugin` also uses.
  { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: 'mikro-orm-coaster' },
);
