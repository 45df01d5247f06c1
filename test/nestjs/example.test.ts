import type { INestApplication } from '@nestjs/common';
import { afterEach, describe, expect, it } from 'vitest';
import { entities, Follow, Tag, User } from '../../example/entities.js';
import { createNestApp } from '../../example/nest/app.js';
import { getOrm, type CoasterOptions } from '../../src/index.js';
import { databases } from '../support/databases.js';
import { ownDatabase } from '../support/ownDatabases.js';
import { post } from '../support/httpSessions.js';

let app: INestApplication | undefined;
let drop: (() => Promise<void>) | undefined;

afterEach(async () => {
  await app?.close(); // closes the ORM the app made, and initOrm forgets it
  app = undefined;
  await drop?.();
  drop = undefined;
});

describe.each(databases.map(db => db.name))('the NestJS example API on %s', name => {
  /** The example's Nest app on a database of its own, listening on loopback; its base URL, mails and row counts. */
  async function startApp() {
    const database = await ownDatabase(name, 'coaster_nestex');
    drop = database.drop;
    const options: CoasterOptions = { ...database.options, entities };
    const mails: string[] = [];
    app = await createNestApp(options, email => mails.push(email));
    await getOrm().schema.createSchema();
    await app.listen(0, '127.0.0.1');
    const em = () => getOrm().em.fork();
    const rows = async () => [await em().count(User), await em().count(Tag), await em().count(Follow)];
    return { base: await app.getUrl(), mails, rows };
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

  it('rolls back a sign-up that fails after its INSERT (a 400), answers a duplicate with 409, and mails once', async () => {
    const { base, mails, rows } = await startApp();
    const failed = await post(`${base}/users`, { email: 'grace@example.com', name: 'Grace', tags: ['cobol', 'Not A Tag'] });
    expect(failed.status).toBe(400);
    expect(await failed.json()).toEqual({ error: 'tag names are lower-case letters, but got "Not A Tag"' });
    expect(await rows()).toEqual([0, 0, 0]);
    expect((await fetch(`${base}/users/grace%40example.com`)).status).toBe(404);
    expect((await post(`${base}/users`, { email: 'ada@example.com', name: 'Ada', tags: [] })).status).toBe(201);
    expect((await post(`${base}/users`, { email: 'ada@example.com', name: 'Other', tags: ['math'] })).status).toBe(409);
    expect(mails).toEqual(['ada@example.com']);
    expect(await rows()).toEqual([1, 0, 0]);
  });

  it('finds or creates a tag through the injected CoasterEntityManager, one row for 10 racing requests', async () => {
    const { base, rows } = await startApp();
    const responses = await Promise.all(Array.from({ length: 10 }, () => fetch(`${base}/tags/news`, { method: 'POST' })));
    expect(responses.map(response => response.status)).toEqual(Array(10).fill(201));
    const ids = new Set(((await Promise.all(responses.map(response => response.json()))) as { id: string }[]).map(tag => tag.id));
    expect(ids.size).toBe(1);
    expect(await rows()).toEqual([0, 1, 0]);
  });
});
