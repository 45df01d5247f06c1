import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { entities, Follow, Tag, User } from '../example/entities.js';
import { createExampleServer } from '../example/server.js';
import { closeOrm, initOrm } from '../src/index.js';
import { closeOrm as closeTestOrm, databases, type TestOrm, withPrimary } from './support/databases.js';

let testOrm: TestOrm | undefined;
let server: Server | undefined;

afterEach(async () => {
  await new Promise(resolve => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
  await closeOrm();
  await closeTestOrm(testOrm);
  testOrm = undefined;
});

describe.each(databases)('the example HTTP server on $name', db => {
  /** Starts the example server on an ephemeral loopback port; returns its base URL and the mails it sent. */
  async function startServer() {
    ({ orm: testOrm } = await db.init({ entities }, withPrimary));
    await initOrm(testOrm);
    const mails: string[] = [];
    server = createExampleServer(email => mails.push(email));
    await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return { base: `http://127.0.0.1:${port}`, mails, orm: testOrm };
  }

  const signUp = (base: string, body: unknown) =>
    fetch(`${base}/users`, { method: 'POST', body: JSON.stringify(body) });

  it('a successful request commits and mails; GET reads it back', async () => {
    const { base, mails } = await startServer();
    const created = await signUp(base, { email: 'ada@example.com', name: 'Ada', tags: ['math', 'engines'] });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ email: 'ada@example.com', tags: ['math', 'engines'] });
    expect(mails).toEqual(['ada@example.com']);

    const shown = await fetch(`${base}/users/ada%40example.com`);
    expect(shown.status).toBe(200);
    expect(await shown.json()).toMatchObject({ email: 'ada@example.com', name: 'Ada', tags: ['engines', 'math'] });
  });

  it('a failing request leaves nothing behind and mails nothing', async () => {
    const { base, mails, orm } = await startServer();
    const failed = await signUp(base, { email: 'grace@example.com', name: 'Grace', tags: ['cobol', 'Not A Tag'] });
    expect(failed.status).toBe(400);
    expect(await failed.json()).toEqual({ error: 'tag names are lower-case letters, but got "Not A Tag"' });
    expect(mails).toEqual([]);

    expect((await fetch(`${base}/users/grace%40example.com`)).status).toBe(404);
    const em = orm.em.fork();
    expect([await em.count(User), await em.count(Tag), await em.count(Follow)]).toEqual([0, 0, 0]);
  });

  it('a duplicate sign-up is a 409 and leaves the first one as it was', async () => {
    const { base, mails } = await startServer();
    expect((await signUp(base, { email: 'ada@example.com', name: 'Ada', tags: [] })).status).toBe(201);
    const duplicate = await signUp(base, { email: 'ada@example.com', name: 'Other', tags: ['math'] });
    expect(duplicate.status).toBe(409);
    expect(mails).toEqual(['ada@example.com']);
    expect(await (await fetch(`${base}/users/ada%40example.com`)).json()).toMatchObject({ name: 'Ada', tags: [] });
  });

  it('rejects a body that is not a sign-up with 400', async () => {
    const { base } = await startServer();
    const notJson = await fetch(`${base}/users`, { method: 'POST', body: 'not json' });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toEqual({ error: 'the body must be JSON' });
    expect((await signUp(base, { email: 'x@example.com' })).status).toBe(400);
    expect((await fetch(`${base}/nowhere`)).status).toBe(404);
  });
});
