import { DriverException, IsolationLevel, RequestContext, UniqueConstraintViolationException } from '@mikro-orm/core';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cleanupErrorsOf,
  closeOrm,
  CommitOutcomeUnknownError,
  getOrm,
  initOrm,
  managedSession,
  onCommit,
  type CoasterOptions,
} from '../../src/index.js';
import { backendPid, holdUncommitted, terminateBackend, terminateOnceBlocked } from '../support/backends.js';
import { closeOrm as closeTestOrm, postgresql, sqlite, type QueryLog, type TestDatabase, type TestOrm } from '../support/databases.js';
import { foreignKeyFailure, Pending, startDatabase } from '../support/httpSessions.js';
import { insertPaths } from '../support/insertPaths.js';
import { Counter, Note, sessionEntities } from '../support/sessionEntities.js';

let testOrm: TestOrm | undefined;

/** A database of its own on `db` with the session entities, made the process-wide ORM with `initOrm`. */
async function start(options: Partial<CoasterOptions> = {}, db: TestDatabase = postgresql): Promise<{ orm: TestOrm; log: QueryLog }> {
  const { orm, log } = await db.init({ entities: sessionEntities, ...options });
  testOrm = orm;
  await initOrm(orm);
  return { orm, log };
}

afterEach(async () => {
  await closeOrm();
  await closeTestOrm(testOrm);
  testOrm = undefined;
});

/** The notes committed, by body, read by a fresh fork outside any session. */
async function committedBodies(): Promise<string[]> {
  return (await getOrm().em.fork().find(Note, {}, { orderBy: { body: 'asc' } })).map(note => note.body);
}

/** Four sessions at once after a lost connection: the pool replaced it, and every one commits. */
async function nextSessionsCommit(): Promise<void> {
  const bodies = await Promise.all([0, 1, 2, 3].map(i => managedSession(async em => em.create(Note, { owner: 'next', body: `next/${i}` }).body)));
  expect(bodies).toEqual(['next/0', 'next/1', 'next/2', 'next/3']);
}

describe.each(insertPaths)('failsafeAdd on the $name path, its backend terminated while it waits for a lock (PostgreSQL)', path => {
  it('rejects with the 57P01 DriverException, both failed rollbacks attached to it, writes nothing, and the pool recovers', async () => {
    const { orm, log } = await start(path.options());
    const release = await holdUncommitted(orm.config.get('clientUrl')!, `insert into note (owner, body) values ('elsewhere', 'contested')`);
    let error: unknown;
    try {
      error = await managedSession(async em => {
        const pid = await backendPid(em);
        const [added] = await Promise.allSettled([
          em.failsafeAdd(em.create(Note, { owner: 'session', body: 'contested' }, { persist: false }), { body: 'contested' }),
          terminateOnceBlocked(pid), // its insert waits for the uncommitted row of the same body
        ]);
        return added.status === 'rejected' ? Promise.reject(added.reason) : added.value;
      }).catch((rejection: unknown) => rejection);
    } finally {
      await release();
    }

    // the first error, the one the dying backend sent, not the clean-up's
    expect(error).toBeInstanceOf(DriverException);
    expect(error).toMatchObject({ code: '57P01', message: expect.stringMatching(/terminating connection due to administrator command/) });
    // then the savepoint's rollback failed (failsafeAdd's own, or MikroORM's in `transactional`), then the session's ROLLBACK
    const [savepoint, rollback] = cleanupErrorsOf(error) as Error[];
    expect(cleanupErrorsOf(error)).toHaveLength(2);
    expect(savepoint.message).toMatch(/^rollback to savepoint (failsafe_add|trx\d+)\b/i);
    expect(rollback.message).toMatch(/^ROLLBACK\b/);
    expect(log.errors.some(query => /insert into "note"/.test(query))).toBe(true);
    expect(await committedBodies()).toEqual([]);
    await nextSessionsCommit();
    expect(await committedBodies()).toEqual(['next/0', 'next/1', 'next/2', 'next/3']);
  });
});

describe('a managed session whose COMMIT fails (PostgreSQL)', () => {
  it('rejects with CommitOutcomeUnknownError when the connection is lost, never retries it, runs no onCommit, and the pool recovers', async () => {
    const { log } = await start();
    let attempts = 0;
    const committed: string[] = [];

    const session = managedSession(
      async em => {
        attempts++;
        em.create(Note, { owner: 'session', body: 'lost' });
        await em.flush();
        onCommit(() => committed.push('lost'));
        await terminateBackend(await backendPid(em)); // nothing is left to flush: the COMMIT meets the dead connection
      },
      { retries: 3, retryDelay: 1 },
    );

    const error = await session.catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(CommitOutcomeUnknownError);
    const { cause } = error as CommitOutcomeUnknownError;
    // node-postgres's error, with no SQLSTATE ("not queryable", "Connection terminated unexpectedly"), or 57P01
    // when the termination notice arrived as the COMMIT's answer
    expect((cause as Error).message).toMatch(/^COMMIT; - /);
    expect(cause).not.toBeInstanceOf(DriverException); // MikroORM passes the COMMIT's error on as the driver raised it
    expect((error as Error).message).toBe(CommitOutcomeUnknownError.duringCommit(cause).message);
    expect((error as Error).message).toMatch(/whether the transaction committed is unknown.*Check whether its work landed/);
    expect(attempts).toBe(1);
    expect(committed).toEqual([]);
    expect(log.queries.filter(query => query === 'commit')).toEqual([]);
    // the backend was terminated before the COMMIT reached it, so here the outcome is known after all: rolled back
    expect(await committedBodies()).toEqual([]);
    await nextSessionsCommit();
  });

  it('rejects with the error of a COMMIT refused by a deferred constraint: rolled back, a known outcome', async () => {
    testOrm = await startDatabase(postgresql);

    const session = managedSession(async em => {
      em.create(Note, { owner: 'session', body: 'dangling' });
      em.create(Pending, { noteId: 999_999 }); // the foreign key is checked at COMMIT
    });

    await expect(session).rejects.toEqual(foreignKeyFailure);
    await expect(session).rejects.not.toBeInstanceOf(CommitOutcomeUnknownError);
    await expect(session).rejects.toMatchObject({ code: '23503' });
    expect(await committedBodies()).toEqual([]);
  });

  it('retries a serialization failure that the COMMIT reports (SERIALIZABLE write skew)', async () => {
    const { orm, log } = await start();
    const other = new pg.Client({ connectionString: orm.config.get('clientUrl') });
    await other.connect();
    let attempts = 0;
    try {
      await managedSession(
        async em => {
          attempts++;
          expect(await em.count(Note, { owner: 'skew' })).toBe(attempts - 1); // reads what the other writes
          if (attempts === 1) {
            // a concurrent transaction reads what this one writes, and writes what this one read, then commits first
            await other.query(`begin isolation level serializable`);
            await other.query(`select count(*) from note where owner = 'skew'`);
            await other.query(`insert into note (owner, body) values ('skew', 'other')`);
          }
          em.create(Note, { owner: 'skew', body: `session/${attempts}` });
          await em.flush();
          if (attempts === 1) {
            await other.query('commit');
          }
        },
        { isolationLevel: IsolationLevel.SERIALIZABLE, retries: 1, retryDelay: 1 },
      );
    } finally {
      await other.end();
    }

    expect(attempts).toBe(2);
    expect(log.queries.filter(query => /^(commit|rollback)$/.test(query))).toEqual(['rollback', 'commit']);
    expect(await committedBodies()).toEqual(['other', 'session/2']);
  });
});

describe('a managed session inside a RequestContext (PostgreSQL)', () => {
  it('rejects with the error that rolled it back when the reload of the request\'s entities fails, the reload\'s error attached', async () => {
    await start();
    const { id } = await managedSession(async em => em.create(Counter, { value: 0 }));

    const error = await RequestContext.create(getOrm().em, async () => {
      await RequestContext.getEntityManager()!.findOneOrFail(Counter, id); // loaded by the request, reloaded after a rollback
      return managedSession(async () => {
        await getOrm().em.fork().getConnection().execute('drop table counter'); // outside the session: the reload fails
        throw new Error('the work failed');
      }).catch((rejection: unknown) => rejection);
    });

    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe('the work failed');
    expect(cleanupErrorsOf(error)).toEqual([expect.objectContaining({ code: '42P01', message: expect.stringMatching(/"counter" does not exist/) })]);
  });
});

describe('failsafeAdd, when the savepoint of a conflict cannot be rolled back (PostgreSQL)', () => {
  it('rejects with the unique violation, the rollback\'s error attached, instead of recovering in an unusable transaction', async () => {
    // the database refuses the clean-up: its savepoint name is made one that does not exist
    const { log } = await start({
      onQuery: sql => sql.replace(/^rollback to savepoint failsafe_add; release savepoint failsafe_add$/, 'rollback to savepoint missing'),
    });
    await managedSession(async em => em.create(Note, { owner: 'first', body: 'taken' }));
    log.clear();

    const session = managedSession(async em => {
      // `owner` matches no row, so the conflict is inserted again without ON CONFLICT, to name the constraint
      await em.failsafeAdd(em.create(Note, { owner: 'second', body: 'taken' }, { persist: false }), { owner: 'second' });
    });
    const error = await session.catch((rejection: unknown) => rejection);

    expect(error).toBeInstanceOf(UniqueConstraintViolationException);
    expect(cleanupErrorsOf(error)).toEqual([expect.objectContaining({ code: '3B001' })]); // savepoint "missing" does not exist
    expect(log.errors).toEqual([expect.stringMatching(/^savepoint failsafe_add; insert into "note"/), 'rollback to savepoint missing']);
    expect(log.queries.at(-1)).toBe('rollback'); // nothing was sent to recover
    expect(await committedBodies()).toEqual(['taken']);
  });
});

describe('a batch that must start again key by key, when its savepoint cannot be rolled back (PostgreSQL)', () => {
  it('rejects with the rollback\'s error instead of starting again in an unusable transaction', async () => {
    // the database refuses the clean-up: the savepoint name of knex's ROLLBACK TO SAVEPOINT (which MikroORM's
    // `onQuery` does not see) is made one that does not exist, on every connection of the pool
    const { log } = await start({
      pool: {
        afterCreate: (connection: pg.Client, done: (error: Error | null, connection: pg.Client) => void) => {
          const query = connection.query.bind(connection) as (config: unknown, ...rest: unknown[]) => unknown;
          const rewrite = (text: string) => text.replace(/^ROLLBACK TO SAVEPOINT \w+$/, 'ROLLBACK TO SAVEPOINT missing');
          Reflect.set(connection, 'query', (config: { text?: unknown }, ...rest: unknown[]) =>
            query(typeof config?.text === 'string' ? { ...config, text: rewrite(config.text) } : config, ...rest),
          );
          done(null, connection);
        },
      },
    });
    log.clear();
    const session = managedSession(async em => {
      // a lone surrogate is stored as U+FFFD: the insert returns a row under none of the call's keys, so the call
      // rolls its savepoint back to resolve the keys one by one
      await em.getOrCreateMany(Note, [{ owner: 'batch', body: 'lone \ud800' }, { owner: 'batch', body: 'plain' }]);
    });
    const error = await session.catch((rejection: unknown) => rejection);

    expect(error).toBeInstanceOf(DriverException);
    expect(error).toMatchObject({ code: '3B001' }); // savepoint "missing" does not exist
    expect(log.queries.filter(q => q.includes('insert into'))).toHaveLength(1); // nothing sent to start again
    expect(log.queries.at(-1)).toBe('rollback');
    expect(await committedBodies()).toEqual([]);
  });
});

describe('a managed session whose COMMIT fails (SQLite)', () => {
  it('rejects with the COMMIT\'s own error, which has no SQLSTATE: SQLite commits in the process, the outcome is known', async () => {
    const { orm } = await start({}, sqlite);
    await orm.em.getConnection().execute('create table pending (id integer primary key, note_id integer references note (id) deferrable initially deferred)');

    const session = managedSession(async em => {
      await em.execute('insert into pending (note_id) values (999999)'); // the foreign key is checked at COMMIT
    });

    await expect(session).rejects.not.toBeInstanceOf(CommitOutcomeUnknownError);
    await expect(session).rejects.toMatchObject({ code: 'SQLITE_CONSTRAINT', message: expect.stringMatching(/^COMMIT; - .*FOREIGN KEY constraint failed/) });
  });
});
