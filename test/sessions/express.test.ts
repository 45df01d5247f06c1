import { createServer } from 'node:http';
import express, { type ErrorRequestHandler } from 'express';
import { describe, expect, it } from 'vitest';
import { managedSessionMiddleware, type RequestSessionOptions } from '../../src/sessions/express.js';
import { databases, postgresql } from '../support/databases.js';
import {
  appPerTest,
  committed,
  describeRequestSessions,
  foreignKeyFailure,
  insertNote,
  listen,
  post,
  type HttpApp,
  type NoteRequest,
  type Seen,
} from '../support/httpSessions.js';

/**
 * An Express 5 app with the middleware mounted before the body parser, and an error handler that answers JSON.
 * `POST /notes` answers `stream` with `res.write()` then `res.end()`, and `end twice` by calling `res.end()`
 * again after `res.json()`.
 */
async function startApp(options: RequestSessionOptions): Promise<HttpApp> {
  const seen: Seen = { errors: [], onCommit: [], ems: [] };
  const app = express();
  app.use(managedSessionMiddleware(options), express.json());
  app.post('/notes', async (req, res) => {
    const { status, then, json } = await insertNote(req.body as NoteRequest<'end twice'>, res, seen);
    if (then === 'stream') {
      res.status(status).type('text').write('first chunk;');
      res.end('last chunk');
      return;
    }
    res.status(status).json(json);
    if (then === 'end twice') {
      res.end();
    }
  });
  const errorHandler: ErrorRequestHandler = (error, _req, res, next) => {
    seen.errors.push(error);
    if (res.headersSent) {
      next(error);
      return;
    }
    res.status(500).json({ error: (error as Error).constructor.name });
  };
  app.use(errorHandler);
  const server = createServer(app);
  const url = `${await listen(server)}/notes`;
  return { url, seen, close: () => new Promise(resolve => server.close(() => resolve())) };
}

const start = appPerTest(startApp);

describeRequestSessions({ name: 'the Express middleware', responseName: 'response', start });

describe.each(databases)('the Express middleware on $name', db => {
  it('holds the response until the COMMIT even when the handler ends it twice', async () => {
    const { url, seen } = await start(db);

    const response = await post(url, { body: 'ended twice', then: 'end twice' });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ id: expect.any(Number), inContext: true });
    expect(seen.onCommit).toEqual([{ committed: ['ended twice'], responseStarted: false }]);
    expect(await committed()).toEqual({ notes: ['ended twice'], pending: 0 });
  });
});

describe('the Express middleware on postgresql, when the COMMIT fails', () => {
  it('cuts the connection when the COMMIT of a response whose headers were already sent fails', async () => {
    const { url, seen } = await start(postgresql);

    const response = await post(url, { body: 'streamed', then: 'stream' });
    expect(response.status).toBe(201); // the status line went out with the first chunk
    await expect(response.text()).rejects.toThrow(); // but the body never completes
    expect(seen.errors).toEqual([foreignKeyFailure]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
  });
});
