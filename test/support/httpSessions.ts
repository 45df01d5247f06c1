import type { AddressInfo } from 'node:net';
import type { Server, ServerResponse } from 'node:http';
import { Entity, PrimaryKey, Property, RequestContext, TransactionContext, type EntityManager } from '@mikro-orm/core';
import { MySqlPlatform, type SqlEntityManager } from '@mikro-orm/knex';
import { afterEach, describe, expect, it } from 'vitest';
import { closeOrm, CommitOutcomeUnknownError, getOrm, initOrm, ManagedSessionError, onCommit } from '../../src/index.js';
import type { RequestSessionOptions } from '../../src/sessions/requestSession.js';
import { backendPid, terminateBackend } from './backends.js';
import { closeOrm as closeTestOrm, mariadb, postgresql, databases, type TestDatabase, type TestOrm } from './databases.js';
import { mariadbAdmin } from './mariadbServer.js';
import { Note } from './sessionEntities.js';

/**
 * A row whose `note_id` must name a note, checked only at COMMIT on PostgreSQL (a deferred foreign key, made
 * by {@link startDatabase}): a flush that writes a dangling one succeeds, and the COMMIT fails.
 *
 * Not on SQLite: there a COMMIT refused by a deferred foreign key leaves the transaction open (SQLite keeps it
 * for the application to fix or roll back, and MikroORM's rollback after a failed commit is a no-op in knex),
 * so the next statement on its single connection would still see the uncommitted rows.
 */
@Entity({ tableName: 'pending' })
export class Pending {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'integer' })
  noteId!: number;
}

export const httpEntities = [Note, Pending];

/** A database of its own with {@link httpEntities}, made the process-wide ORM with `initOrm`. */
export async function startDatabase(db: TestDatabase): Promise<TestOrm> {
  const { orm } = await db.init({ entities: httpEntities });
  if (db.name === 'postgresql') {
    await orm.em
      .getConnection()
      .execute('alter table "pending" add foreign key ("note_id") references "note" ("id") deferrable initially deferred');
  }
  await initOrm(orm);
  return orm;
}

/** Listens on an ephemeral loopback port; resolves to the base URL. */
export async function listen(server: Server): Promise<string> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** What the database holds, read by a fresh fork outside any session. */
export async function committed(): Promise<{ notes: string[]; pending: number }> {
  const em = getOrm().em.fork();
  const notes = await em.find(Note, {}, { orderBy: { body: 'asc' } });
  return { notes: notes.map(note => note.body), pending: await em.count(Pending) };
}

/**
 * The error of a COMMIT that the deferred foreign key of {@link Pending} refused on PostgreSQL, as the driver raises it:
 * MikroORM passes COMMIT errors on without converting them to its `DriverException`s.
 */
export const foreignKeyFailure = expect.objectContaining({ message: expect.stringMatching(/foreign key/i) });

/** POSTs JSON. */
export function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/**
 * What `POST /notes` does after inserting the note `body` (and flushing it), answering with `status`
 * (default 201). `Own` names the variants of `then` that only one framework's app knows.
 */
export interface NoteRequest<Own extends string = never> {
  body: string;
  status?: number;
  /**
   * `throw`: the handler throws; `failing onCommit`: it registers an onCommit callback that throws; `dangling`: it
   * also writes a row that fails the COMMIT; `stream`: that, and it answers in chunks of text; `connection lost`:
   * it terminates its session's PostgreSQL backend (kills its MariaDB connection), so the COMMIT meets a dead connection.
   */
  then?: 'throw' | 'failing onCommit' | 'dangling' | 'stream' | 'connection lost' | Own;
}

/** What an app saw: the errors its error handler got, the onCommit callbacks' findings, the handlers' session forks. */
export interface Seen {
  errors: unknown[];
  onCommit: { committed: string[]; responseStarted: boolean }[];
  ems: EntityManager[];
}

/** An app with an HTTP integration, serving `POST /notes` (see {@link insertNote}) at `url` on loopback. */
export interface HttpApp {
  url: string;
  seen: Seen;
  /** Stops listening. */
  close(): Promise<void>;
}

/** How `POST /notes` answers after {@link insertNote}: with `json` and `status`, unless `then` says otherwise. */
export interface NoteAnswer<Own extends string> {
  status: number;
  then: NoteRequest<Own>['then'];
  json: { id: number; inContext: boolean };
}

/**
 * The framework-neutral part of `POST /notes`, run in the request's session: records the session's
 * EntityManager in `seen.ems`, inserts and flushes the note, registers an onCommit callback that records what
 * was committed and whether `response` had started (its headers were sent), then does what `then` asks before
 * an answer. Answering (`stream`, and a framework's own variants, included) is the framework's.
 */
export async function insertNote<Own extends string>(
  request: NoteRequest<Own>,
  response: ServerResponse,
  seen: Seen,
): Promise<NoteAnswer<Own>> {
  const { body, status = 201, then } = request;
  const em = getOrm().em; // the request's session; MikroORM refuses the global context, so a lost context fails here
  // the session's transaction fork, which the global `em` resolves to (RequestContext holds the request's, its parent)
  seen.ems.push(TransactionContext.getEntityManager()!);
  const note = em.create(Note, { owner: 'POST /notes', body });
  await em.flush();
  onCommit(async () => {
    seen.onCommit.push({ committed: (await committed()).notes, responseStarted: response.headersSent });
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
  if (then === 'connection lost') {
    await loseConnection(em); // nothing is left to flush: the COMMIT is what fails
  }
  return { status, then, json: { id: note.id, inContext: RequestContext.getEntityManager() !== undefined } };
}

/**
 * Ends the server connection of `em`'s transaction from another connection, as a restart or an administrator
 * would: PostgreSQL's `pg_terminate_backend`, MariaDB's `KILL` (both wait until the server has let it go).
 */
export async function loseConnection(em: SqlEntityManager): Promise<void> {
  if (em.getPlatform() instanceof MySqlPlatform) {
    const [{ id }] = await em.execute<{ id: number | string }[]>('select connection_id() as id');
    await mariadbAdmin(em.config.get('clientUrl')!, `kill ${Number(id)}`);
    return;
  }
  await terminateBackend(await backendPid(em));
}

/** Starts an app, after a database of its own made the process-wide ORM ({@link startDatabase}) when `db` is given. */
export type StartApp<A extends HttpApp> = (db: TestDatabase | undefined, options?: RequestSessionOptions) => Promise<A>;

/**
 * `startApp` (a framework's app with its integration given `options`) as a {@link StartApp} whose app and
 * database close after each test. Call it at the top level of a test file.
 */
export function appPerTest<A extends HttpApp>(startApp: (options: RequestSessionOptions) => Promise<A>): StartApp<A> {
  let orm: TestOrm | undefined;
  let app: A | undefined;
  afterEach(async () => {
    await app?.close();
    await closeOrm();
    await closeTestOrm(orm);
    app = orm = undefined;
  });
  return async (db, options = {}) => {
    orm = db && (await startDatabase(db));
    app = await startApp(options);
    return app;
  };
}

/** An HTTP integration, as {@link describeRequestSessions} tests it. */
export interface HttpIntegration {
  /** How the suites name it: `the Express middleware`. */
  name: string;
  /** What its framework calls a response, in the test names: `response`, `reply`. */
  responseName: string;
  start: StartApp<HttpApp>;
}

/**
 * The cases every HTTP integration passes, as suites named after it: a request without `initOrm`; commits,
 * rollbacks, `commitStatus`, onCommit and concurrent requests on each database; and a failing COMMIT on
 * PostgreSQL. Each framework's test file adds its own cases to suites of the same names.
 */
export function describeRequestSessions({ name, responseName, start }: HttpIntegration): void {
  describe(`${name} without initOrm`, () => {
    it('fails the request with ManagedSessionError, which reaches the error handler, before any handler runs', async () => {
      const { url, seen } = await start(undefined);
      const response = await post(url, { body: 'never' });
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'ManagedSessionError' });
      expect(seen.errors).toEqual([expect.any(ManagedSessionError)]);
      expect(seen.ems).toEqual([]);
    });
  });

  describe.each(databases)(`${name} on $name`, db => {
    it(`commits a succeeding request before the ${responseName} is sent, then runs onCommit, then sends it`, async () => {
      const { url, seen } = await start(db);

      const response = await post(url, { body: 'kept' });
      expect(response.status).toBe(201);
      expect(await response.json()).toEqual({ id: expect.any(Number), inContext: true });
      expect(seen.onCommit).toEqual([{ committed: ['kept'], responseStarted: false }]);
      expect(await committed()).toEqual({ notes: ['kept'], pending: 0 });
      expect(seen.ems[0].getUnitOfWork().getIdentityMap().values()).toEqual([]); // the session's fork was cleared
      expect(seen.errors).toEqual([]);
    });

    it('rolls back a request whose handler throws (a 500 from the error handler), and runs no onCommit', async () => {
      const { url, seen } = await start(db);

      const response = await post(url, { body: 'thrown', then: 'throw' });
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'Error' });
      expect(seen.errors).toEqual([new Error('handler failed after inserting thrown')]);
      expect(await committed()).toEqual({ notes: [], pending: 0 });
      expect(seen.onCommit).toEqual([]);
      expect(seen.ems[0].getUnitOfWork().getIdentityMap().values()).toEqual([]);
    });

    it(`rolls back a request answered with an error status, and sends that ${responseName} as it was`, async () => {
      const { url, seen } = await start(db);

      const refused = await post(url, { body: 'refused', status: 422 });
      expect(refused.status).toBe(422);
      expect(await refused.json()).toEqual({ id: expect.any(Number), inContext: true });
      expect(await committed()).toEqual({ notes: [], pending: 0 });
      expect(seen.onCommit).toEqual([]);

      expect((await post(url, { body: 'kept' })).status).toBe(201);
      expect(await committed()).toEqual({ notes: ['kept'], pending: 0 });
    });

    it('commits the statuses that commitStatus accepts', async () => {
      const { url } = await start(db, { commitStatus: status => status < 500 });

      expect((await post(url, { body: 'not found, but recorded', status: 404 })).status).toBe(404);
      expect((await post(url, { body: 'thrown', then: 'throw' })).status).toBe(500);
      expect(await committed()).toEqual({ notes: ['not found, but recorded'], pending: 0 });
    });

    it('answers 500 when an onCommit callback throws, with the data committed', async () => {
      const { url, seen } = await start(db);

      const response = await post(url, { body: 'committed anyway', then: 'failing onCommit' });
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'Error' });
      expect(seen.errors).toEqual([new Error('the mailer is down')]);
      expect(seen.onCommit).toEqual([{ committed: ['committed anyway'], responseStarted: false }]);
      expect(await committed()).toEqual({ notes: ['committed anyway'], pending: 0 });
    });

    it('gives concurrent requests sessions of their own', async () => {
      const { url } = await start(db);

      const bodies = Array.from({ length: 10 }, (_, i) => `note ${i}`);
      const responses = await Promise.all(bodies.map((body, i) => post(url, i % 2 ? { body, then: 'throw' } : { body })));
      expect(responses.map(r => r.status)).toEqual(bodies.map((_, i) => (i % 2 ? 500 : 201)));
      expect((await committed()).notes).toEqual(bodies.filter((_, i) => i % 2 === 0));
    });
  });

  /** A COMMIT that fails, which SQLite cannot provide cleanly (see {@link Pending}). */
  describe(`${name} on postgresql, when the COMMIT fails`, () => {
    it('turns a failing COMMIT into a 500 from the error handler instead of the 201, and runs no onCommit', async () => {
      const { url, seen } = await start(postgresql);

      const response = await post(url, { body: 'dangling', then: 'dangling' });
      expect(response.status).toBe(500);
      expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await response.json()).toEqual({ error: expect.any(String) });
      expect(seen.errors).toEqual([foreignKeyFailure]);
      expect(await committed()).toEqual({ notes: [], pending: 0 });
      expect(seen.onCommit).toEqual([]);
    });
  });

  describe.each([postgresql, ...databases.filter(db => db === mariadb)])(`${name} on $name, when the connection is lost`, db => {
    it('turns a COMMIT whose connection is lost into CommitOutcomeUnknownError for the error handler, and the next request works', async () => {
      const { url, seen } = await start(db);

      const response = await post(url, { body: 'lost', then: 'connection lost' });
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'CommitOutcomeUnknownError' });
      expect(seen.errors).toEqual([expect.any(CommitOutcomeUnknownError)]);
      expect((seen.errors[0] as Error).cause).toEqual(expect.objectContaining({ message: expect.stringMatching(/^COMMIT; - /) }));
      expect(seen.onCommit).toEqual([]);
      expect(await committed()).toEqual({ notes: [], pending: 0 }); // terminated before the COMMIT reached it: rolled back

      expect((await post(url, { body: 'kept' })).status).toBe(201); // the pool replaced the dead connection
      expect(await committed()).toEqual({ notes: ['kept'], pending: 0 });
    });
  });
}
