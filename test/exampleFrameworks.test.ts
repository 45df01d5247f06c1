import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { entities, Follow, Tag, User } from '../example/entities.js';
import { createExpressApp } from '../example/express.js';
import { createFastifyApp } from '../example/fastify.js';
import { closeOrm, initOrm } from '../src/index.js';
import { closeOrm as closeTestOrm, databases, type TestOrm, withPrimary } from './support/databases.js';
import { listen, post } from './support/httpSessions.js';

/** Starts one framework's example app on an ephemeral loopback port with `mailer`; resolves to its base URL and its stop. */
type Start = (mailer: (email: string) => void) => Promise<{ base: string; stop: () => Promise<void> }>;

const frameworks: { name: string; start: Start }[] = [
  {
    name: 'Express',
    async start(mailer) {
      const server = createServer(createExpressApp(mailer));
      const base = await listen(server);
      return { base, stop: () => new Promise(resolve => server.close(() => resolve())) };
    },
  },
  {
    name: 'Fastify',
    async start(mailer) {
      const app = await createFastifyApp(mailer);
      return { base: await app.listen({ port: 0, host: '127.0.0.1' }), stop: () => app.close() };
    },
  },
];

let testOrm: TestOrm | undefined;
let stop: (() => Promise<void>) | undefined;

afterEach(async () => {
  await stop?.();
  stop = undefined;
  await closeOrm();
  await closeTestOrm(testOrm);
  testOrm = undefined;
});

describe.each(databases)('the example API on $name', db => {
  describe.each(frameworks)('in $name', framework => {
    /** The example app on a database of its own; resolves to its base URL, the mails it sent, and the row counts. */
    async function startApp() {
      ({ orm: testOrm } = await db.init({ entities }, withPrimary));
      await initOrm(testOrm);
      const mails: string[] = [];
      const started = await framework.start(email => mails.push(email));
      stop = started.stop;
      const em = () => testOrm!.em.fork();
      const rows = async () => [await em().count(User), await em().count(Tag), await em().count(Follow)];
      return { base: started.base, mails, rows };
    }

    it('commits a sign-up before answering 201 and mailing; GET reads it back', async () => {
      const { base, mails, rows } = await startApp();
      const created = await post(`${base}/users`, { email: 'ada@example.com', name: 'Ada', tags: ['math', 'engines'] });
      expect(created.status).toBe(201);
      expect(await created.json()).toMatchObject({ email: 'ada@example.com', tags: ['math', 'engines'] });
      expect(mails).toEqual(['ada@example.com']);
      expect(await rows()).toEqual([1, 2, 2]);

      const shown = await fetch(`${base}/users/ada%40example.com`);
      expect(shown.status).toBe(200);
      expect(await shown.json()).toMatchObject({ email: 'ada@example.com', name: 'Ada', tags: ['engines', 'math'] });
    });

    it('rolls back a sign-up that fails after its INSERT (a 400), and mails nothing', async () => {
      const { base, mails, rows } = await startApp();
      const failed = await post(`${base}/users`, { email: 'grace@example.com', name: 'Grace', tags: ['cobol', 'Not A Tag'] });
      expect(failed.status).toBe(400);
      expect(await failed.json()).toEqual({ error: 'tag names are lower-case letters, but got "Not A Tag"' });
      expect(mails).toEqual([]);
      expect(await rows()).toEqual([0, 0, 0]);
      expect((await fetch(`${base}/users/grace%40example.com`)).status).toBe(404);
    });

    it('answers a duplicate sign-up with 409 and keeps the first', async () => {
      const { base, mails, rows } = await startApp();
      expect((await post(`${base}/users`, { email: 'ada@example.com', name: 'Ada', tags: [] })).status).toBe(201);
      expect((await post(`${base}/users`, { email: 'ada@example.com', name: 'Other', tags: ['math'] })).status).toBe(409);
      expect(mails).toEqual(['ada@example.com']);
      expect(await rows()).toEqual([1, 0, 0]);
    });

    it('answers a body that is not JSON, or not a sign-up, with 400', async () => {
      const { base, rows } = await startApp();
      const notJson = await fetch(`${base}/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
      expect(notJson.status).toBe(400);
      expect((await post(`${base}/users`, { email: 'x@example.com' })).status).toBe(400);
      expect(await rows()).toEqual([0, 0, 0]);
    });
  });
});
