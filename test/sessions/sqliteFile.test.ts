import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  ForeignKeyConstraintViolationException,
  LockWaitTimeoutException,
  MikroORM,
  type Dictionary,
  type EntityClass,
  type PoolConfig,
} from '@mikro-orm/core';
import { SqliteDriver } from '@mikro-orm/sqlite';
import sqlite3 from 'sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteKnexDialect } from '@mikro-orm/knex';
import { ManagedSessionError, closeOrm, defineCoasterConfig, initOrm, managedSession, type CoasterOrm } from '../../src/index.js';
import { Account, Address, raceEntities } from '../support/entities.js';
import { Note, sessionEntities } from '../support/sessionEntities.js';

const PROCESSES = 4;
/** 3 s in `npm test`; `COASTER_SQLITE_RACE_MS=15000` runs the full 15 s. */
const DURATION_MS = Number(process.env.COASTER_SQLITE_RACE_MS ?? 3000);
const directories: string[] = [];
const opened: CoasterOrm[] = [];

afterEach(async () => {
  await closeOrm();
  for (const orm of opened.splice(0)) {
    await orm.close(true);
  }
  for (const directory of directories.splice(0)) {
    await rm(directory, { recursive: true, force: true });
  }
});

/** An ORM made by `defineCoasterConfig` on a new SQLite file with `entities` (the session entities), and the file's path. */
async function fileOrm(pool?: PoolConfig, driverOptions?: Dictionary, entities: EntityClass<object>[] = sessionEntities) {
  const directory = await mkdtemp(join(tmpdir(), 'coaster-sqlite-'));
  directories.push(directory);
  const file = join(directory, 'db.sqlite');
  const orm = await MikroORM.init(
    defineCoasterConfig({ driver: SqliteDriver, dbName: file, entities, pool, driverOptions }),
  );
  opened.push(orm);
  await orm.schema.createSchema();
  return { orm, file };
}

/** A connection of its own to `file`, outside the ORM's pool, that never waits for a lock (busy timeout 0). */
async function otherConnection(file: string) {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const opening: sqlite3.Database = new sqlite3.Database(file, error => (error ? reject(error) : resolve(opening)));
  });
  const exec = (sql: string) => new Promise<void>((resolve, reject) => db.exec(sql, error => (error ? reject(error) : resolve())));
  return { exec, close: () => new Promise<void>(resolve => db.close(() => resolve())) };
}

interface Outcome {
  ok: number;
  created: number;
  errors: Record<string, number>;
}

/** Runs {@link PROCESSES} workers (test/support/sqliteRaceWorker.ts) on one SQLite file, started together once all are ready. */
async function race(file: string): Promise<Outcome[]> {
  const worker = join(import.meta.dirname, '..', 'support', 'sqliteRaceWorker.ts');
  const children = Array.from({ length: PROCESSES }, () =>
    spawn(process.execPath, ['--import', 'tsx', worker, file, String(DURATION_MS)], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  try {
    const lines = children.map(child => createInterface({ input: child.stdout })[Symbol.asyncIterator]());
    const nextLine = async (i: number) => {
      const { value, done } = await lines[i].next();
      if (done) {
        throw new Error(`worker ${i} exited with ${children[i].exitCode} before printing its outcome`);
      }
      return value;
    };
    expect(await Promise.all(children.map((_, i) => nextLine(i)))).toEqual(children.map(() => 'ready'));
    children.forEach(child => child.stdin.write('go\n'));
    return (await Promise.all(children.map((_, i) => nextLine(i)))).map(line => JSON.parse(line) as Outcome);
  } finally {
    children.forEach(child => child.kill());
  }
}

describe('a SQLite file shared by several connections', () => {
  it('every connection waits up to 5 s for a lock, and write transactions take the write lock at BEGIN', async () => {
    const { orm, file } = await fileOrm();
    expect(await orm.em.fork().execute('pragma busy_timeout')).toEqual([{ timeout: 5000 }]);
    const other = await otherConnection(file);
    try {
      await orm.em.fork().transactional(async () => {
        // nothing written yet, but BEGIN IMMEDIATE already holds the write lock
        await expect(other.exec('begin immediate')).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
      });
      await orm.em.fork().transactional(
        async em => {
          expect(await em.count(Note)).toBe(0);
          await other.exec('begin immediate'); // a plain BEGIN: a reader leaves the write lock to writers
          await other.exec('rollback');
        },
        { readOnly: true },
      );
    } finally {
      await other.close();
    }
  });

  it('every connection enforces foreign keys: an orphan is refused whichever connection serves the call', async () => {
    /** `pragma foreign_keys` as the application's afterCreate (run after the library's) saw it on each new connection. */
    const created: number[] = [];
    const afterCreate = (connection: sqlite3.Database, done: (error: Error | null, connection: sqlite3.Database) => void) =>
      connection.get<{ foreign_keys: number }>('pragma foreign_keys', (error, row) => {
        created.push(row.foreign_keys);
        done(error, connection);
      });
    const { orm } = await fileOrm({ max: 4, afterCreate }, undefined, raceEntities);
    const account = orm.em.fork().getReference(Account, 999); // no such account

    // each transaction holds its connection until it ends, so the eight calls are served by the pool's four connections
    const calls = Array.from({ length: 8 }, (_, i) =>
      orm.em.fork().transactional(em => em.failsafeAdd(em.create(Address, { email: `orphan${i}@example.com`, account }))),
    );
    const outcomes = await Promise.allSettled(calls);

    expect(created).toEqual([1, 1, 1, 1]);
    expect(outcomes.map(outcome => outcome.status === 'rejected' && outcome.reason instanceof ForeignKeyConstraintViolationException)).toEqual(
      calls.map(() => true),
    );
    expect(await orm.em.fork().count(Address)).toBe(0);
  });

  it.each([
    { retries: 0, rows: [] },
    { retries: 5, rows: ['committed'] },
  ])('managedSession retries SQLITE_BUSY like a deadlock (retries: $retries)', async ({ retries, rows }) => {
    // the application's own afterCreate runs after the library's, so its shorter busy timeout wins
    const afterCreate = (connection: sqlite3.Database, done: (error: Error | null, connection: sqlite3.Database) => void) =>
      connection.exec('pragma busy_timeout = 50', error => done(error, connection));
    let beginFailed!: () => void;
    const firstBeginFailed = new Promise<void>(resolve => (beginFailed = resolve));
    class SignallingDialect extends SqliteKnexDialect {
      override _query(connection: unknown, obj: { sql: string }): Promise<unknown> {
        return super._query(connection, obj).catch((error: unknown) => {
          if (obj.sql === 'BEGIN IMMEDIATE;') {
            beginFailed();
          }
          throw error;
        });
      }
    }
    const { orm, file } = await fileOrm({ afterCreate }, { client: SignallingDialect });
    expect(await orm.em.fork().execute('pragma busy_timeout')).toEqual([{ timeout: 50 }]);
    await initOrm(orm);
    const other = await otherConnection(file);
    // holds the write lock until the session's first BEGIN IMMEDIATE has waited the busy timeout and failed
    await other.exec('begin immediate');
    const released = firstBeginFailed.then(() => other.exec('commit'));
    let calls = 0;
    const session = managedSession(
      async em => {
        calls++;
        em.create(Note, { owner: 'session', body: 'committed' });
      },
      { retries, retryDelay: 100 },
    );

    if (retries === 0) {
      await expect(session).rejects.toBeInstanceOf(LockWaitTimeoutException);
      await expect(session).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    } else {
      await session;
    }
    await released;
    await other.close();
    expect(calls).toBe(rows.length); // BEGIN IMMEDIATE failed before the callback ran
    expect((await orm.em.fork().find(Note, {})).map(note => note.body)).toEqual(rows);
  });
});

describe('the SQLite client class', () => {
  it("keeps the application's own knex client class, with write transactions still beginning IMMEDIATE", async () => {
    const created: string[] = [];
    class RecordingDialect extends SqliteKnexDialect {
      override _query(connection: unknown, obj: { sql: string }) {
        created.push(obj.sql);
        return super._query(connection, obj);
      }
    }
    const { orm } = await fileOrm(undefined, { client: RecordingDialect });
    created.length = 0;
    await orm.em.fork().transactional(em => em.count(Note));
    expect(created).toEqual(['BEGIN IMMEDIATE;', 'select count(*) as `count` from `note` as `n0`', 'COMMIT;']);
  });

  it('refuses a SQLite driver whose knex client class it does not know', async () => {
    class UnknownSqliteDriver extends SqliteDriver {
      override getDependencies(): string[] {
        return ['knex', 'some-sqlite'];
      }
    }
    const init = MikroORM.init(defineCoasterConfig({ driver: UnknownSqliteDriver, dbName: ':memory:', entities: sessionEntities }));
    await expect(init).rejects.toBeInstanceOf(ManagedSessionError);
    await expect(init).rejects.toThrow(
      /^defineCoasterConfig\(\) makes SQLite write transactions begin with BEGIN IMMEDIATE .* a driver depending on knex, some-sqlite\. Use @mikro-orm\/sqlite, @mikro-orm\/better-sqlite or @mikro-orm\/libsql, or pass the client class as driverOptions\.client\.$/,
    );
  });
});

describe('several processes sharing one SQLite file', () => {
  it.each(['delete', 'wal'])(
    `${PROCESSES} processes racing getOrCreate in managedSession and em.transactional meet no SQLITE_BUSY (journal_mode %s)`,
    async journalMode => {
      const { orm, file } = await fileOrm();
      await orm.em.execute(`pragma journal_mode = ${journalMode}`);

      const outcomes = await race(file);

      expect(outcomes.map(outcome => outcome.errors)).toEqual(outcomes.map(() => ({})));
      expect(outcomes.map(outcome => outcome.ok > 0), JSON.stringify(outcomes)).toEqual(outcomes.map(() => true));
      const rows = await orm.em.fork().find(Note, {});
      expect(new Set(rows.map(row => row.body)).size).toBe(rows.length);
      expect(outcomes.reduce((sum, outcome) => sum + outcome.created, 0)).toBe(rows.length);
    },
    90_000,
  );
});
