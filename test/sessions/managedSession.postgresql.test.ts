import { DeadlockException, DriverException, IsolationLevel, RequestContext } from '@mikro-orm/core';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { closeOrm, getOrm, initOrm, managedSession, onCommit, type CoasterOptions } from '../../src/index.js';
import { closeOrm as closeTestOrm, postgresql, type TestOrm } from '../support/databases.js';
import { Counter, Note, sessionEntities } from '../support/sessionEntities.js';

let testOrm: TestOrm | undefined;

/** A PostgreSQL database of its own with the session entities, made the process-wide ORM with `initOrm`. */
async function start(options: Partial<CoasterOptions> = {}) {
  const { orm, log } = await postgresql.init({ entities: sessionEntities, ...options });
  testOrm = orm;
  await initOrm(orm);
  return { orm, log };
}

afterEach(async () => {
  await closeOrm();
  await closeTestOrm(testOrm);
  testOrm = undefined;
});

/** Runs `sql` on a connection of its own to the ORM's database (outside its pool) and returns the rows. */
async function onAnotherConnection<Row extends object>(sql: string, params: unknown[] = []): Promise<Row[]> {
  const client = new pg.Client({ connectionString: getOrm().config.get('clientUrl') });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Row[];
  } finally {
    await client.end();
  }
}

/** The states of the connections to the ORM's database, as the server lists them. */
async function connectionStates(): Promise<string[]> {
  const rows = await onAnotherConnection<{ state: string }>(
    `select state from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`,
  );
  return rows.map(row => row.state);
}

describe('managed sessions (PostgreSQL)', () => {
  it('rows are invisible to another connection until the session commits', async () => {
    await start();
    const seenInside = await managedSession(async em => {
      em.create(Note, { owner: 'a', body: 'pending' });
      await em.flush();
      return onAnotherConnection(`select body from note`);
    });
    expect(seenInside).toEqual([]);
    expect(await onAnotherConnection(`select body from note`)).toEqual([{ body: 'pending' }]);
  });

  it('50 concurrent sessions writing through the global em keep their rows apart', async () => {
    await start();
    const owners = Array.from({ length: 50 }, (_, i) => `session-${i}`);
    const seen = await Promise.all(
      owners.map(owner =>
        managedSession(async () => {
          for (let row = 0; row < 3; row++) {
            getOrm().em.create(Note, { owner, body: `${owner}/${row}` });
            await getOrm().em.flush();
          }
          const managed = getOrm().em.getUnitOfWork().getIdentityMap().values() as Note[];
          return managed.map(note => note.owner);
        }),
      ),
    );

    seen.forEach((managedOwners, i) => expect(managedOwners).toEqual([owners[i], owners[i], owners[i]]));
    const rows = await onAnotherConnection<{ owner: string; body: string }>(`select owner, body from note`);
    expect(rows).toHaveLength(150);
    for (const { owner, body } of rows) {
      expect(body.startsWith(`${owner}/`)).toBe(true);
    }
  });

  it("a session whose backend is terminated rejects, writes nothing, and the next sessions work", async () => {
    await start({ pool: { min: 0, max: 2 } });
    const killed = managedSession(async em => {
      em.create(Note, { owner: 'doomed', body: 'half written' });
      await em.flush();
      const [{ pid }] = await em.execute<{ pid: number }[]>('select pg_backend_pid() as pid');
      await onAnotherConnection('select pg_terminate_backend($1)', [pid]);
      em.create(Note, { owner: 'doomed', body: 'never written' });
    });
    await expect(killed).rejects.toBeInstanceOf(DriverException);
    // the flush of 'never written' meets the dead connection ("Connection terminated" or, when the
    // termination notice wins the race, "terminating connection due to administrator command")
    await expect(killed).rejects.toThrow(/never written/);

    expect(await onAnotherConnection(`select body from note`)).toEqual([]);
    const bodies = await Promise.all(
      [0, 1, 2, 3].map(i => managedSession(async em => em.create(Note, { owner: 'next', body: `next/${i}` }).body)),
    );
    expect(bodies).toEqual(['next/0', 'next/1', 'next/2', 'next/3']);
    expect(await onAnotherConnection(`select count(*)::int as count from note`)).toEqual([{ count: 4 }]);
  });

  it('after 200 sessions, a quarter failing, the pool holds at most its maximum and none idle in transaction', async () => {
    await start({ pool: { min: 0, max: 4 } });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        managedSession(async em => {
          em.create(Note, { owner: 'pool', body: `pool/${i}` });
          await em.flush();
          if (i % 4 === 0) {
            throw new Error(`request ${i} failed`);
          }
        }),
      ),
    );

    expect(outcomes.filter(outcome => outcome.status === 'rejected')).toHaveLength(50);
    expect(await onAnotherConnection(`select count(*)::int as count from note`)).toEqual([{ count: 150 }]);
    const states = await connectionStates();
    expect(states.length).toBeGreaterThan(0);
    expect(states.length).toBeLessThanOrEqual(4);
    expect(states).not.toContain('idle in transaction');
    expect(states).not.toContain('idle in transaction (aborted)');
  });

  describe('retries', () => {
    /** Commits `value` into the counter from outside the session, after the session took its snapshot. */
    const updateElsewhere = (id: number, value: number) =>
      onAnotherConnection('update counter set value = $1 where id = $2', [value, id]);

    it('re-runs the whole callback after a real serialization failure, and drops the failed attempt\'s onCommit', async () => {
      const { log } = await start();
      const { id } = await managedSession(async em => em.create(Counter, { value: 0 }));
      log.clear();
      const committedAttempts: number[] = [];
      let attempts = 0;

      const value = await managedSession(
        async em => {
          const attempt = ++attempts;
          const counter = await em.findOneOrFail(Counter, id);
          if (attempt === 1) {
            await updateElsewhere(id, 100);
          }
          counter.value += 1;
          onCommit(() => committedAttempts.push(attempt));
          return counter.value;
        },
        { isolationLevel: IsolationLevel.REPEATABLE_READ, retries: 2, retryDelay: 1 },
      );

      expect(attempts).toBe(2);
      expect(value).toBe(101);
      expect(committedAttempts).toEqual([2]);
      expect(await onAnotherConnection(`select value from counter`)).toEqual([{ value: 101 }]);
      const attempt = [
        'start transaction isolation level repeatable read',
        'select "c0".* from "counter" as "c0" where "c0"."id" = ? limit ?',
        'update "counter" set "value" = ? where "id" = ?',
      ];
      expect(log.queries).toEqual([...attempt, 'rollback', ...attempt, 'commit']);
    });

    it('re-runs the callback after findOrCreate meets a row its REPEATABLE READ snapshot cannot see', async () => {
      await start();
      let attempts = 0;
      const { created, body } = await managedSession(
        async em => {
          attempts++;
          expect(await em.count(Note)).toBeGreaterThanOrEqual(0); // takes the snapshot
          if (attempts === 1) {
            await onAnotherConnection(`insert into note (owner, body) values ('elsewhere', 'shared')`);
          }
          const result = await em.getOrCreate(Note, { body: 'shared' }, { owner: 'session' });
          return { created: result.created, body: result.entity.body };
        },
        { isolationLevel: IsolationLevel.REPEATABLE_READ, retries: 1, retryDelay: 1 },
      );
      expect(attempts).toBe(2);
      expect({ created, body }).toEqual({ created: false, body: 'shared' });
      expect(await onAnotherConnection(`select owner from note`)).toEqual([{ owner: 'elsewhere' }]);
    });

    it('inside a RequestContext, a retry starts from the committed row, not from the failed attempt\'s change', async () => {
      await start();
      const { id } = await managedSession(async em => em.create(Counter, { value: 0 }));
      let attempts = 0;

      await RequestContext.create(getOrm().em, async () => {
        const counter = await RequestContext.getEntityManager()!.findOneOrFail(Counter, id); // loaded by the request
        const value = await managedSession(
          async em => {
            if (++attempts === 1) {
              expect(await em.count(Counter)).toBe(1); // takes the snapshot
              await updateElsewhere(id, 100);
            }
            counter.value += 1;
            await em.flush();
            return counter.value;
          },
          { isolationLevel: IsolationLevel.REPEATABLE_READ, retries: 1, retryDelay: 1 },
        );
        expect(attempts).toBe(2);
        expect(value).toBe(101);
        expect(counter.value).toBe(101);
      });
      expect(await onAnotherConnection(`select value from counter`)).toEqual([{ value: 101 }]);
    });

    it('rejects with the DeadlockException once the retries are used up', async () => {
      await start();
      const { id } = await managedSession(async em => em.create(Counter, { value: 0 }));
      let attempts = 0;
      const session = managedSession(
        async em => {
          attempts++;
          const counter = await em.findOneOrFail(Counter, id);
          await updateElsewhere(id, attempts * 100);
          counter.value += 1;
        },
        { isolationLevel: IsolationLevel.SERIALIZABLE, retries: 1, retryDelay: 1 },
      );

      await expect(session).rejects.toBeInstanceOf(DeadlockException);
      await expect(session).rejects.toMatchObject({ code: '40001' });
      expect(attempts).toBe(2);
      expect(await onAnotherConnection(`select value from counter`)).toEqual([{ value: 200 }]);
    });

    it('retries the loser of a real deadlock (40P01), so both sessions commit', async () => {
      await start();
      const [first, second] = await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);
      let bothLocked!: () => void;
      const locked = new Promise<void>(resolve => (bothLocked = resolve));
      let lockers = 0;
      const errors: unknown[] = [];

      /** Locks `a`, waits until the other session locked `b`, then locks `b`: one of the two must deadlock. */
      const crossUpdate = (a: Counter, b: Counter) =>
        managedSession(
          async em => {
            await em.execute(`set local deadlock_timeout = '50ms'`);
            await em.nativeUpdate(Counter, { id: a.id }, { value: 1 });
            if (++lockers === 2) {
              bothLocked();
            }
            await locked;
            await em.nativeUpdate(Counter, { id: b.id }, { value: 2 }).catch(error => {
              errors.push(error);
              throw error;
            });
          },
          { retries: 1, retryDelay: 1 },
        );

      await Promise.all([crossUpdate(first, second), crossUpdate(second, first)]);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(DeadlockException);
      expect(errors[0]).toMatchObject({ code: '40P01' });
    });
  });

  it('a readOnly session cannot write: it rejects with the database error and writes nothing', async () => {
    await start();
    const session = managedSession(async em => em.create(Note, { owner: 'a', body: 'refused' }), { readOnly: true });
    await expect(session).rejects.toThrow(/read-only transaction/);
    expect(await onAnotherConnection(`select body from note`)).toEqual([]);
  });
});
