/**
 * Express 5 integration of mikro-orm-coaster: `import { managedSessionMiddleware } from 'mikro-orm-coaster/express'`.
 * `express` is an optional peer dependency; the core package never loads it.
 *
 * @example
 * ```ts
 * import express from 'express';
 * import { initOrm } from 'mikro-orm-coaster';
 * import { managedSessionMiddleware } from 'mikro-orm-coaster/express';
 *
 * await initOrm(config);
 * const app = express();
 * app.use(express.json(), managedSessionMiddleware());
 * ```
 * @module mikro-orm-coaster/express
 */
import type { NextFunction, RequestHandler, Response } from 'express';
import { RequestSession, type RequestSessionOptions } from './requestSession.js';

export type { RequestSessionOptions } from './requestSession.js';

/** Headers that describe a response body; dropped with the body when a failed commit discards it. */
const BODY_HEADERS = [
  'content-type',
  'content-length',
  'content-encoding',
  'content-language',
  'content-range',
  'etag',
  'last-modified',
];

/**
 * Express 5 middleware that runs each request in a {@link "mikro-orm-coaster"!managedSession} of the ORM of `initOrm`: the
 * handlers after it reach the request's session through `getOrm().em` (or MikroORM's
 * `RequestContext.getEntityManager()`), and `onCommit` works in them.
 *
 * The session ends when the response is ended (`res.end()`, which `res.send`, `res.json`, `res.redirect`,
 * `res.sendFile` and piped streams all call), before the end goes out:
 *
 * - Status below 400 (or whatever `commitStatus` accepts): the session commits, its `onCommit` callbacks run,
 *   then the response is sent.
 * - Any other status, including Express's 500 for a handler that threw: the session rolls back, then the
 *   response is sent as the handlers made it.
 * - The COMMIT (or an `onCommit` callback) fails: the response the handlers made is discarded and the error
 *   goes to `next(error)`, so your error handler renders it (Express's own answers 500). If the handlers had
 *   already sent the headers (`res.write`, a piped stream), the connection is destroyed instead, so the client
 *   never receives a complete response, and the error still goes to `next(error)`.
 * - The session cannot start (no `initOrm`, the database is down): `next(error)`, the handlers do not run.
 *
 * The transaction stays open until the response is ended: a handler that never ends its response (a
 * server-sent event stream) holds a connection; mount the middleware on the routes that write instead.
 *
 * @example
 * ```ts
 * app.use(express.json(), managedSessionMiddleware());
 * app.post('/users', async (req, res) => {
 *   const user = getOrm().em.create(User, req.body);
 *   onCommit(() => mailer.welcome(user.email));
 *   res.status(201).json(user); // sent after the INSERT has committed and the mail was sent
 * });
 * ```
 */
export function managedSessionMiddleware(options: RequestSessionOptions = {}): RequestHandler {
  return (_request, response, next) => {
    new RequestSession(
      options,
      session => {
        holdEnd(response, session, next);
        next();
      },
      next,
    );
  };
}

/**
 * Makes `response.end()` finish the session first, then end the response (or fail the request). Further
 * `end()` calls meanwhile are dropped (Node drops them on an ended response, or reports a write after end),
 * so none lets the response out before the COMMIT.
 */
function holdEnd(response: Response, session: RequestSession, next: NextFunction): void {
  const end = response.end;
  response.end = function holdUntilCommitted(...args: unknown[]) {
    if (!session.finished) {
      session.commitOrRollBack(response.statusCode).then(
        () => {
          response.end = end;
          Reflect.apply(end, response, args);
        },
        (error: unknown) => {
          response.end = end;
          failResponse(response, error, next);
        },
      );
    }
    return response;
  };
}

function failResponse(response: Response, error: unknown, next: NextFunction): void {
  if (response.headersSent) {
    response.destroy(); // the status line is out: a cut connection is what tells the client it failed
  } else {
    for (const name of BODY_HEADERS) {
      response.removeHeader(name);
    }
    response.statusCode = 500;
  }
  next(error);
}
