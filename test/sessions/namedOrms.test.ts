import 'reflect-metadata';
import { MikroORM } from '@mikro-orm/core';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CoasterEntityManager,
  ManagedSession,
  ManagedSessionError,
  closeOrm,
  getOrm,
  initOrm,
  managedSession,
  onCommit,
} from '../../src/index.js';
import { closeOrm as closeTestOrm, databases, type TestDatabase, type TestOrm } from '../support/databases.js';
import { Note, sessionEntities } from '../support/sessionEntities.js';

const opened: TestOrm[] = [];

/**
 * Two ORMs on two databases of their own, in one process: 'default' and 'reports' (its contextName),
 * both registered with initOrm.
 */
async function startTwo(db: TestDatabase) {
  const main = await db.init({ entities: sessionEntities });
  const reports = await db.init({ entities: sessionEntities, contextName: 'reports' });
  opened.push(main.orm, reports.orm);
  await initOrm(main.orm);
  await initOrm(reports.orm);
  return { main: main.orm, reports: reports.orm };
}

afterEach(async () => {
  await closeOrm();
  await closeOrm('reports');
  for (const orm of opened.splice(0)) {
    await closeTestOrm(orm);
  }
});

/** The committed notes of `orm`'s database as `owner:body`, read by a fresh fork outside any session. */
async function rows(orm: TestOrm): Promise<string[]> {
  const notes = await orm.em.fork().find(Note, {}, { orderBy: { body: 'asc' } });
  return notes.map(note => `${note.owner}:${note.body}`);
}

describe.each(databases)('named ORMs on $name', db => {
  it('registers each ORM under its contextName, and closes one without the other', async () => {
    const { main, reports } = await startTwo(db);
    expect(getOrm()).toBe(main);
    expect(getOrm('default')).toBe(main);
    expect(getOrm('reports')).toBe(reports);
    expect(await initOrm(reports)).toBe(reports);
    // refused before connecting anywhere: the names are taken by other ORMs
    const otherOptions = { driver: SqliteDriver, dbName: ':memory:', entities: sessionEntities };
    await expect(initOrm(otherOptions)).rejects.toThrow(
      /^initOrm\(\) was already called with other options for the ORM named 'default'/,
    );
    await expect(initOrm({ ...otherOptions, contextName: 'reports' })).rejects.toThrow(
      /^initOrm\(\) was already called with other options for the ORM named 'reports' \(its contextName\).*Use getOrm\('reports'\) to reach it, call closeOrm\('reports'\)/,
    );

    await closeOrm('reports');
    expect(() => getOrm('reports')).toThrow(ManagedSessionError);
    expect(() => getOrm('reports')).toThrow(
      /^getOrm\('reports'\) needs the ORM named 'reports', but none is initialised under that name\. Call initOrm\(\{ \.\.\.options, contextName: 'reports' \}\) first.* ORMs initialised: 'default'\.$/,
    );
    await expect(managedSession(async () => 'never', { orm: 'reprots' })).rejects.toThrow(
      /^managedSession\(\) needs the ORM named 'reprots'.* ORMs initialised: 'default'\.$/,
    );
    expect(await reports.isConnected()).toBe(false);
    expect(await main.isConnected()).toBe(true);
    expect(getOrm()).toBe(main);
  });

  it('runs a session on the ORM its orm option names, and only there', async () => {
    const { main, reports } = await startTwo(db);
    let sessionEm: CoasterEntityManager | undefined;
    const note = await managedSession(
      async em => {
        sessionEm = em;
        expect(getOrm('reports').em.getContext()).toBe(em); // the global em of 'reports' is this session
        expect(em.config).toBe(reports.config);
        return em.create(Note, { owner: 'reports', body: 'monthly' });
      },
      { orm: 'reports' },
    );
    expect(await rows(reports)).toEqual(['reports:monthly']);
    expect(await rows(main)).toEqual([]);
    // the session's fork is cleared when it ends, as a 'default' session's is
    expect(sessionEm!.getUnitOfWork().getIdentityMap().values()).toEqual([]);
    expect(note.id).toBeGreaterThan(0);

    await managedSession(async em => void em.create(Note, { owner: 'default', body: 'daily' }));
    expect(await rows(main)).toEqual(['default:daily']);
    expect(await rows(reports)).toEqual(['reports:monthly']);
  });

  it('takes an ORM instead of a name, registered or not, and refuses one without CoasterEntityManager', async () => {
    const { main } = await startTwo(db);
    const { orm: unregistered } = await db.init({ entities: sessionEntities, contextName: 'audit' });
    opened.push(unregistered);
    await managedSession(async em => void em.create(Note, { owner: 'audit', body: 'login' }), { orm: unregistered });
    expect(await rows(unregistered)).toEqual(['audit:login']);
    expect(await rows(main)).toEqual([]);
    expect(() => getOrm('audit')).toThrow(ManagedSessionError); // using it does not register it

    const plain = await MikroORM.init({ ...main.config.getAll(), entityManager: undefined, contextName: 'plain', connect: false });
    try {
      await expect(managedSession(async () => 'never', { orm: plain })).rejects.toThrow(
        /^initOrm\(\) was given a MikroORM whose EntityManager is a \w+EntityManager, but managed sessions hand out CoasterEntityManager forks/,
      );
    } finally {
      await plain.close(true);
    }
  });

  it('@ManagedSession({ orm }) runs the method in a session of that ORM', async () => {
    const { main, reports } = await startTwo(db);
    class ReportService {
      @ManagedSession({ orm: 'reports' })
      async record(body: string): Promise<Note> {
        return getOrm('reports').em.create(Note, { owner: 'decorated', body });
      }
    }
    const note = await new ReportService().record('weekly');
    expect(await rows(reports)).toEqual(['decorated:weekly']);
    expect(await rows(main)).toEqual([]);
    expect(note.id).toBeGreaterThan(0);
  });

  it('a session of another ORM inside a session is a transaction of its own, committed when it ends', async () => {
    const { main, reports } = await startTwo(db);
    const events: string[] = [];
    const failure = new Error('the outer session fails after the inner one committed');
    await expect(
      managedSession(async em => {
        em.create(Note, { owner: 'default', body: 'outer' });
        onCommit(() => events.push('default committed'));
        await managedSession(
          async inner => {
            inner.create(Note, { owner: 'reports', body: 'inner' });
            onCommit(() => events.push('reports committed'));
          },
          { orm: 'reports', retries: 1 }, // an outermost session of 'reports': transaction options apply
        );
        // the reports session has committed: another connection sees its row
        expect(await rows(reports)).toEqual(['reports:inner']);
        expect(events).toEqual(['reports committed']);
        // and the outer session's em is still its own transaction's
        expect(getOrm().em.getContext()).toBe(em);
        await managedSession(async nested => void nested.create(Note, { owner: 'default', body: 'nested' }), { orm: 'default' });
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await rows(main)).toEqual([]);
    expect(await rows(reports)).toEqual(['reports:inner']);
    expect(events).toEqual(['reports committed']);
  });

  it('refuses a session of an ORM whose outer session is hidden behind a session of another ORM', async () => {
    const { main, reports } = await startTwo(db);
    await managedSession(async em => {
      em.create(Note, { owner: 'default', body: 'outer' });
      await managedSession(
        async () => {
          await expect(managedSession(async () => 'never')).rejects.toThrow(
            /^managedSession\(\) for the ORM 'default' was started inside a session of the ORM 'reports', which runs inside a session of 'default'/,
          );
        },
        { orm: 'reports' },
      );
    });
    expect(await rows(main)).toEqual(['default:outer']);
    expect(await rows(reports)).toEqual([]);
  });
});
