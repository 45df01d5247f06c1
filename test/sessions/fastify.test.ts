import { Readable } from 'node:stream';
import { RequestContext, type EntityManager } from '@mikro-orm/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { managedSessionPlugin, RequestSessionError, type RequestSessionOptions } from '../../src/sessions/fastify.js';
import { getOrm, ManagedSessionError, onCommit } from '../../src/index.js';
import { databases, postgresql, type TestOrm } from '../support/databases.js';
import { committed, foreignKeyFailure, Pending, post, startDatabase, stopAll } from '../support/httpSessions.js';
import { Note } from '../support/sessionEntities.js';

let orm: TestOrm | undefined;
let app: FastifyInstance | undefined;

afterEach(async () => {
  await app?.close();
  await stopAll(undefined, orm);
  app = orm = undefined;
});

/** What `POST /notes` does after inserting the note `body` (and flushing it). */
interface NoteRequest {
  body: string;
  status?: number;
  /**
   * `throw`: the handler throws; `failing onCommit`: it registers an onCommit callback that throws; `dangling`: it also writes a row that fails the COMMIT; `stream`: that, and
   * replies with a stream; `hijack`: it answers on the raw response.
   */
  then?: 'throw' | 'failing onCommit' | 'dangling' | 'stream' | 'hijack';
}

/** What the app saw: the errors its error handler got, the onCommit callbacks' findings, the handlers' EntityManagers, its error logs. */
interface Seen {
  errors: unknown[];
  onCommit: { committed: string[]; replySent: boolean }[];
  ems: EntityManager[];
  logged: { msg: string; err?: { type: string; message: string } }[];
}

/** A Fastify 5 app with the plugin registered and an error handler that answers JSON; listening on loopback. */
async function startApp(options: RequestSessionOptions = {}) {
  const seen: Seen = { errors: [], onCommit: [], ems: [], logged: [] };
  app = Fastify({ logger: { level: 'error', stream: { write: line => void seen.logged.push(JSON.parse(line)) } } });
  await app.register(managedSessionPlugin, options);
  app.setErrorHandler((error, _request, reply) => {
    seen.errors.push(error);
    return reply.code(500).send({ error: (error as Error).constructor.name });
  });
  app.post('/notes', async (request, reply) => {
    const { body, status = 201, then } = request.body as NoteRequest;
    const em = getOrm().em; // the request's session; MikroORM refuses the global context, so a lost context fails here
    seen.ems.push(em.getContext()); // the session's fork (the global `em` resolves to it)
    const note = em.create(Note, { owner: 'fastify', body });
    await em.flush();
    onCommit(async () => {
      seen.onCommit.push({ committed: (await committed()).notes, replySent: reply.sent });
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
      return reply.code(status).type('text/plain').send(Readable.from(['first chunk;', 'last chunk']));
    }
    if (then === 'hijack') {
      reply.hijack();
      reply.raw.writeHead(status).end('raw');
      return reply;
    }
    return reply.code(status).send({ id: note.id, inContext: RequestContext.getEntityManager() !== undefined });
  });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `${base}/notes`, seen };
}

describe('the Fastify plugin without initOrm', () => {
  it('fails the request with ManagedSessionError before any handler runs', async () => {
    const { url, seen } = await startApp();
    const response = await post(url, { body: 'never' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'ManagedSessionError' });
    expect(seen.errors).toEqual([expect.any(ManagedSessionError)]);
    expect(seen.ems).toEqual([]);
  });
});

describe.each(databases)('the Fastify plugin on $name', db => {
  it('commits a succeeding request before the reply is sent, then runs onCommit, then sends it', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'kept' });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ id: expect.any(Number), inContext: true });
    expect(seen.onCommit).toEqual([{ committed: ['kept'], replySent: false }]);
    expect(await committed()).toEqual({ notes: ['kept'], pending: 0 });
    expect(seen.ems[0].getUnitOfWork().getIdentityMap().values()).toEqual([]); // the session's fork was cleared
    expect(seen.errors).toEqual([]);
  });

  it('rolls back a request whose handler throws (a 500), and runs no onCommit', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'thrown', then: 'throw' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'Error' });
    expect(seen.errors).toEqual([new Error('handler failed after inserting thrown')]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);
    expect(seen.ems[0].getUnitOfWork().getIdentityMap().values()).toEqual([]);
  });

  it('rolls back a request answered with an error status, and sends that reply as it was', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const refused = await post(url, { body: 'refused', status: 422 });
    expect(refused.status).toBe(422);
    expect(await refused.json()).toEqual({ id: expect.any(Number), inContext: true });
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);

    expect((await post(url, { body: 'kept' })).status).toBe(201);
    expect(await committed()).toEqual({ notes: ['kept'], pending: 0 });
  });

  it('commits the statuses that commitStatus accepts', async () => {
    orm = await startDatabase(db);
    const { url } = await startApp({ commitStatus: status => status < 500 });

    expect((await post(url, { body: 'not found, but recorded', status: 404 })).status).toBe(404);
    expect((await post(url, { body: 'thrown', then: 'throw' })).status).toBe(500);
    expect(await committed()).toEqual({ notes: ['not found, but recorded'], pending: 0 });
  });

  it('rolls back a hijacked reply, which skips onSend, and logs RequestSessionError', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'hijacked', then: 'hijack', status: 200 });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('raw');
    await expect.poll(() => seen.logged.length).toBe(1);
    expect(seen.logged[0].err).toMatchObject({
      type: 'RequestSessionError',
      message: expect.stringMatching(/^The reply to POST \/notes was sent without Fastify's onSend hooks/),
    });
    expect(RequestSessionError.responseWithoutOnSend('POST', '/notes').message).toBe(seen.logged[0].err!.message);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);
  });

  it('answers 500 when an onCommit callback throws, with the data committed', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'committed anyway', then: 'failing onCommit' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'Error' });
    expect(seen.errors).toEqual([new Error('the mailer is down')]);
    expect(seen.onCommit).toEqual([{ committed: ['committed anyway'], replySent: false }]);
    expect(await committed()).toEqual({ notes: ['committed anyway'], pending: 0 });
  });

  it('gives concurrent requests sessions of their own', async () => {
    orm = await startDatabase(db);
    const { url } = await startApp();

    const bodies = Array.from({ length: 10 }, (_, i) => `note ${i}`);
    const responses = await Promise.all(bodies.map((body, i) => post(url, i % 2 ? { body, then: 'throw' } : { body })));
    expect(responses.map(r => r.status)).toEqual(bodies.map((_, i) => (i % 2 ? 500 : 201)));
    expect((await committed()).notes).toEqual(bodies.filter((_, i) => i % 2 === 0));
  });
});

/** A COMMIT that fails, which SQLite cannot provide cleanly (see {@link Pending}). */
describe('the Fastify plugin on postgresql, when the COMMIT fails', () => {
  const db = postgresql;

  it('turns a failing COMMIT into a 500 from the error handler instead of the 201, and runs no onCommit', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'dangling', then: 'dangling' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: expect.any(String) });
    expect(seen.errors).toEqual([foreignKeyFailure]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);
  });

  it('commits before a streamed reply starts, so its failing COMMIT is a 500 too', async () => {
    orm = await startDatabase(db);
    const { url, seen } = await startApp();

    const response = await post(url, { body: 'streamed', then: 'stream' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: expect.any(String) });
    expect(seen.errors).toEqual([foreignKeyFailure]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
  });
});
