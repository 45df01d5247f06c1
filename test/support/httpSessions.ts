import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Entity, PrimaryKey, Property } from '@mikro-orm/core';
import { expect } from 'vitest';
import { closeOrm, getOrm, initOrm } from '../../src/index.js';
import { closeOrm as closeTestOrm, type TestDatabase, type TestOrm } from './databases.js';
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

/** Closes what {@link startDatabase} and {@link listen} opened. */
export async function stopAll(server: Server | undefined, orm: TestOrm | undefined): Promise<void> {
  if (server?.listening) {
    await new Promise(resolve => server.close(resolve));
  }
  await closeOrm();
  await closeTestOrm(orm);
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
