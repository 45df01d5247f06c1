import { createServer, type Server } from 'node:http';
import { RequestContext, type EntityManager } from '@mikro-orm/core';
import express, { type ErrorRequestHandler } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { managedSessionMiddleware, type RequestSessionOptions } from '../../src/sessions/express.js';
import { getOrm, ManagedSessionError, onCommit } from '../../src/index.js';
import type { TestOrm } from '../support/databases.js';
import { databases, postgresql } from '../support/databases.js';
import { committed, foreignKeyFailure, listen, Pending, post, startDatabase, stopAll } from '../support/httpSessions.js';
import { Note } from '../support/sessionEntities.js';

let orm: TestOrm | undefined;
let server: Server | undefined;

afterEach(async () => {
  await stopAll(server, orm);
  server = orm = undefined;
});

/** What `POST /notes` does after inserting the note `body` (and flushing it). */
interface NoteRequest {
  body: string;
  status?: number;
  /**
   * `throw`: the handler throws; `failing onCommit`: it registers an onCommit callback that throws; `dangling`: it
   * also writes a row that fails the COMMIT; `stream`: that, after `res.write()`; `end twice`: it calls `res.end()`
   * again after `res.json()`.
   */
  then?: 'throw' | 'failing onCommit' | 'dangling' | 'stream' | 'end twice';
}

/** What the app saw: the errors its error handler got, the onCommit callbacks' findings, the handlers' EntityManagers. */
interface Seen {
  errors: unknown[];
  onCommit: { committed: string[]; responseStarted: boolean }[];
  ems: EntityManager[];
}

/** An Express 5 app with the middleware mounted before the body parser, and an error handler that answers JSON. */
async function startApp(options?: RequestSessionOptions) {
  const seen: Seen = { errors: [], onCommit: [], ems: [] };
  const app = express();
  app.use(managedSessionMiddleware(options), express.json());
  app.post('/notes', async (req, res) => {
    const { body, status = 201, then } = req.body as NoteRequest;
    const em = getOrm().em; // the request's session; MikroORM refuses the global context, so a lost context fails here
    seen.ems.push(em.getContext()); // the session's fork (the global `em` resolves to it)
    const note = em.create(Note, { owner: 'express', body });
    await em.flush();
    onCommit(async () => {
      seen.onCommit.push({ committed: (await committed()).notes, responseStarted: res.headersSent });
    });
    if (then === 'throw') {
      throw new Error(`handler failed after inserting ${body}`);
    }
    if (then === 'failing onCommit') {
      onCommit(() => {
        throw new Error('the mailer is down');
      });
    }
    if (then === 'dangling' || then === 'stream') {
      em.create(Pending, { noteId: 999_999 });
      await em.flush(); // the foreign key is deferred: the COMMIT fails, not this INSERT
    }
    if (then === 'stream') {
      res.status(status).type('text').write('first chunk;');
      res.end('last chunk');
      return;
    }
    res.status(status).json({ id: note.id, inContext: RequestContext.getEntityManager() !== undefined });
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
  server = createServer(app);
  return { url: `${await listen(server)}/notes`, seen };
}

describe('the Express middleware without initOrm', () => {
  it('fails the request with ManagedSessionError through next(error), and runs no handler', async () => {
    const { url, seen } = await startApp();
    const response = await post(url, { body: 'never' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'ManagedSessionError' });
    expect(seen.errors).toHaveLength(1);
    expect(seen.errors[0]).toBeInstanceOf(ManagedSessionError);
    expect(seen.ems).toEqual([]);
  });
});

describe.each(databases)('the Express middleware on $name', db => {
  it('commits a succeeding request before the response is sent, then runs onCommit, then sends it', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'kept' });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ id: expect.any(Number), inContext: true });
    expect(seen.onCommit).toEqual([{ committed: ['kept'], responseStarted: false }]);
    expect(await committed()).toEqual({ notes: ['kept'], pending: 0 });
    expect(seen.ems[0].getUnitOfWork().getIdentityMap().values()).toEqual([]); // the session's fork was cleared
    expect(seen.errors).toEqual([]);
  });

  it('holds the response until the COMMIT even when the handler ends it twice', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'ended twice', then: 'end twice' });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ id: expect.any(Number), inContext: true });
    expect(seen.onCommit).toEqual([{ committed: ['ended twice'], responseStarted: false }]);
    expect(await committed()).toEqual({ notes: ['ended twice'], pending: 0 });
  });

  it('rolls back a request whose handler throws (Express answers 500), and runs no onCommit', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'thrown', then: 'throw' });
    expect(response.status).toBe(500);
    expect(seen.errors).toEqual([new Error('handler failed after inserting thrown')]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);
    expect(seen.ems[0].getUnitOfWork().getIdentityMap().values()).toEqual([]);
  });

  it('rolls back a request answered with an error status, and sends that response as it was', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const refused = await post(url, { body: 'refused', status: 422 });
    expect(refused.status).toBe(422);
    expect(await refused.json()).toEqual({ id: expect.any(Number), inContext: true });
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);

    const kept = await post(url, { body: 'kept' });
    expect(kept.status).toBe(201);
    expect(await committed()).toEqual({ notes: ['kept'], pending: 0 });
  });

  it('commits the statuses that commitStatus accepts', async () => {
    orm = await startDatabase(db);
    const { url } = await startApp({ commitStatus: status => status < 500 });

    expect((await post(url, { body: 'not found, but recorded', status: 404 })).status).toBe(404);
    expect((await post(url, { body: 'thrown', then: 'throw' })).status).toBe(500);
    expect(await committed()).toEqual({ notes: ['not found, but recorded'], pending: 0 });
  });

  it('answers 500 when an onCommit callback throws, with the data committed', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'committed anyway', then: 'failing onCommit' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'Error' });
    expect(seen.errors).toEqual([new Error('the mailer is down')]);
    expect(seen.onCommit).toEqual([{ committed: ['committed anyway'], responseStarted: false }]);
    expect(await committed()).toEqual({ notes: ['committed anyway'], pending: 0 });
  });

  it('gives concurrent requests sessions of their own', async () => {
    orm = await startDatabase(db);
    const { url } = await startApp();

    const bodies = Array.from({ length: 10 }, (_, i) => `note ${i}`);
    const responses = await Promise.all(
      bodies.map((body, i) => post(url, i % 2 ? { body, then: 'throw' } : { body })),
    );
    expect(responses.map(r => r.status)).toEqual(bodies.map((_, i) => (i % 2 ? 500 : 201)));
    expect((await committed()).notes).toEqual(bodies.filter((_, i) => i % 2 === 0));
  });
});

/** A COMMIT that fails, which SQLite cannot provide cleanly (see {@link Pending}). */
describe('the Express middleware on postgresql, when the COMMIT fails', () => {
  const db = postgresql;

  it('turns a failing COMMIT into a 500 from the error handler instead of the 201, and runs no onCommit', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'dangling', then: 'dangling' });
    expect(response.status).toBe(500);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toEqual({ error: expect.any(String) });
    expect(seen.errors).toEqual([foreignKeyFailure]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);
  });

  it('cuts the connection when the COMMIT of a response whose headers were already sent fails', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'streamed', then: 'stream' });
    expect(response.status).toBe(201); // the status line went out with the first chunk
    await expect(response.text()).rejects.toThrow(); // but the body never completes
    expect(seen.errors).toEqual([foreignKeyFailure]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
  });
});
