import { Readable } from 'node:stream';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { managedSessionPlugin, RequestSessionError, type RequestSessionOptions } from '../../src/sessions/fastify.js';
import { databases, postgresql } from '../support/databases.js';
import {
  appPerTest,
  committed,
  describeRequestSessions,
  foreignKeyFailure,
  insertNote,
  post,
  type HttpApp,
  type NoteRequest,
  type Seen,
} from '../support/httpSessions.js';

/** A Fastify app, and the error logs of its logger. */
interface FastifyApp extends HttpApp {
  logged: { msg: string; err?: { type: string; message: string } }[];
}

/**
 * A Fastify 5 app with the plugin registered and an error handler that answers JSON. `POST /notes` answers
 * `stream` with a stream, and `hijack` on the raw response.
 */
async function startApp(options: RequestSessionOptions): Promise<FastifyApp> {
  const seen: Seen = { errors: [], onCommit: [], ems: [] };
  const logged: FastifyApp['logged'] = [];
  const app = Fastify({ logger: { level: 'error', stream: { write: line => void logged.push(JSON.parse(line)) } } });
  await app.register(managedSessionPlugin, options);
  app.setErrorHandler((error, _request, reply) => {
    seen.errors.push(error);
    return reply.code(500).send({ error: (error as Error).constructor.name });
  });
  app.post('/notes', async (request, reply) => {
    const { status, then, json } = await insertNote(request.body as NoteRequest<'hijack'>, reply.raw, seen);
    if (then === 'stream') {
      return reply.code(status).type('text/plain').send(Readable.from(['first chunk;', 'last chunk']));
    }
    if (then === 'hijack') {
      reply.hijack();
      reply.raw.writeHead(status).end('raw');
      return reply;
    }
    return reply.code(status).send(json);
  });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `${base}/notes`, seen, logged, close: () => app.close() };
}

const start = appPerTest(startApp);

describeRequestSessions({ name: 'the Fastify plugin', responseName: 'reply', start });

describe.each(databases)('the Fastify plugin on $name', db => {
  it('rolls back a hijacked reply, which skips onSend, and logs RequestSessionError', async () => {
    const { url, seen, logged } = await start(db);

    const response = await post(url, { body: 'hijacked', then: 'hijack', status: 200 });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('raw');
    await expect.poll(() => logged.length).toBe(1);
    expect(logged[0].err).toMatchObject({
      type: 'RequestSessionError',
      message: expect.stringMatching(/^The reply to POST \/notes was sent without Fastify's onSend hooks/),
    });
    expect(RequestSessionError.responseWithoutOnSend('POST', '/notes').message).toBe(logged[0].err!.message);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
    expect(seen.onCommit).toEqual([]);
  });
});

describe('the Fastify plugin on postgresql, when the COMMIT fails', () => {
  it('commits before a streamed reply starts, so its failing COMMIT is a 500 too', async () => {
    const { url, seen } = await start(postgresql);

    const response = await post(url, { body: 'streamed', then: 'stream' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: expect.any(String) });
    expect(seen.errors).toEqual([foreignKeyFailure]);
    expect(await committed()).toEqual({ notes: [], pending: 0 });
  });
});
