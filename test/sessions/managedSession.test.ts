import 'reflect-metadata';
import { IsolationLevel, MikroORM, RequestContext, UniqueConstraintViolationException } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
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
  type CoasterOptions,
} from '../../src/index.js';
import { allDrivers, closeOrm as closeTestOrm, type TestDatabase, type TestOrm } from '../support/databases.js';
import { Account, Address, raceEntities } from '../support/entities.js';
import { Note, sessionEntities } from '../support/sessionEntities.js';
import { sessionQueries, sqlFor } from '../support/sessionSql.js';

const opened: TestOrm[] = [];

/** A database of its own with the session entities, made the process-wide ORM with `initOrm`. */
async function start(db: TestDatabase, options: Partial<CoasterOptions> = {}) {
  const { orm, log } = await db.init({ entities: sessionEntities, ...options });
  opened.push(orm);
  await initOrm(orm);
  return { orm, log };
}

afterEach(async () => {
  await closeOrm();
  for (const orm of opened.splice(0)) {
    await closeTestOrm(orm);
  }
});

/** The bodies of the committed notes, read by a fresh fork (a connection from the pool, outside any session). */
async function committedBodies(): Promise<string[]> {
  const notes = await getOrm().em.fork().find(Note, {}, { orderBy: { body: 'asc' } });
  return notes.map(note => note.body);
}

describe.each(allDrivers)('managed sessions on $name', db => {
  const sql = sqlFor(db);
  const insertNote = 'insert into "note" ("owner", "body") values (?, ?) returning "id"';

  it('fails clearly before initOrm and after closeOrm, and never hangs', async () => {
    await expect(managedSession(async () => 'never')).rejects.toThrow(ManagedSessionError);
    await expect(managedSession(async () => 'never')).rejects.toThrow(
      /^managedSession\(\) needs the process-wide ORM, but it is not initialised\. Call initOrm\(options\) first/,
    );
    expect(() => getOrm()).toThrow(/^getOrm\(\) needs the process-wide ORM.*Call initOrm\(options\) first/);
    await start(db);
    await closeOrm();
    await expect(managedSession(async () => 'never')).rejects.toThrow(/Call initOrm\(options\) first/);
    expect(() => getOrm()).toThrow(ManagedSessionError);
  });

  /** Options for `initOrm` that reach the database of `testOrm` (on SQLite: a new in-memory database). */
  const optionsLike = (testOrm: TestOrm): CoasterOptions =>
    db.name === 'postgresql'
      ? { driver: PostgreSqlDriver, clientUrl: testOrm.config.get('clientUrl'), entities: sessionEntities }
      : { driver: SqliteDriver, dbName: ':memory:', entities: sessionEntities };

  it('initOrm twice returns one ORM; other options are an error until closeOrm', async () => {
    const { orm: testOrm } = await db.init({ entities: sessionEntities });
    opened.push(testOrm);
    const options = optionsLike(testOrm);

    const [first, second] = await Promise.all([initOrm(options), initOrm({ ...options, entities: [...sessionEntities] })]);
    expect(second).toBe(first);
    expect(getOrm()).toBe(first);
    expect(first.em).toBeInstanceOf(CoasterEntityManager);
    await expect(initOrm({ ...options, debug: true })).rejects.toThrow(
      /^initOrm\(\) was already called with other options for the ORM named 'default' \(its contextName\): the process has one ORM per name/,
    );
    await expect(initOrm(testOrm)).rejects.toThrow(ManagedSessionError);

    await closeOrm();
    expect(await first.isConnected()).toBe(false);
    expect(await initOrm(testOrm)).toBe(testOrm);
    expect(await initOrm(testOrm)).toBe(getOrm());
  });

  it('initOrm refuses an ORM without CoasterEntityManager, and runs again after a failed initialisation', async () => {
    const { orm: testOrm } = await db.init({ entities: sessionEntities });
    opened.push(testOrm);
    const options = optionsLike(testOrm);
    const plain = await MikroORM.init({ ...options, entityManager: undefined });
    try {
      // The types refuse such an ORM already; the run-time check covers casts and JavaScript callers.
      await expect(initOrm(plain as unknown as TestOrm)).rejects.toThrow(
        /^initOrm\(\) was given a MikroORM whose EntityManager is a \w+EntityManager, but managed sessions hand out CoasterEntityManager forks/,
      );
    } finally {
      await plain.close();
    }
    await expect(initOrm({ ...options, entities: [] })).rejects.toThrow(/No entities/);
    expect(() => getOrm()).toThrow(ManagedSessionError);
    expect(await initOrm(testOrm)).toBe(testOrm);
  });

  it('commits on success and resolves to the callback result; the global em is the session', async () => {
    const { log } = await start(db);
    let sessionEm: CoasterEntityManager | undefined;
    const result = await managedSession(async em => {
      sessionEm = em;
      expect(em).toBeInstanceOf(CoasterEntityManager);
      const first = em.create(Note, { owner: 'a', body: 'first' });
      await em.flush();
      expect(await getOrm().em.findOneOrFail(Note, { body: 'first' })).toBe(first);
      expect(getOrm().em.getTransactionContext()).toBe(em.getTransactionContext());
      expect(RequestContext.getEntityManager()!.getTransactionContext()).toBe(em.getTransactionContext());
      getOrm().em.create(Note, { owner: 'a', body: 'second' });
      return 'done';
    });

    expect(result).toBe('done');
    expect(sessionEm!.getUnitOfWork(false).getIdentityMap().keys()).toEqual([]);
    expect(sessionQueries(log)).toEqual(
      sql('begin', insertNote, 'select "n0".* from "note" as "n0" where "n0"."body" = ? limit ?', insertNote, 'commit'),
    );
    expect(await committedBodies()).toEqual(['first', 'second']);
  });

  it('rolls back everything on error and rejects with the same error object', async () => {
    const { log } = await start(db);
    const failure = new Error('boom');
    let sessionEm: CoasterEntityManager | undefined;
    const session = managedSession(async em => {
      sessionEm = em;
      em.create(Note, { owner: 'a', body: 'through the fork' });
      await em.flush();
      getOrm().em.create(Note, { owner: 'a', body: 'through the global em' });
      await getOrm().em.flush();
      throw failure;
    });

    await expect(session).rejects.toBe(failure);
    expect(failure.message).toBe('boom');
    expect(sessionEm!.getUnitOfWork(false).getIdentityMap().keys()).toEqual([]);
    expect(sessionQueries(log)).toEqual(sql('begin', insertNote, insertNote, 'rollback'));
    expect(await committedBodies()).toEqual([]);
  });

  it('nested sessions: an inner failure rolls back only its savepoint, the outer session commits', async () => {
    const { log } = await start(db);
    const innerFailure = new Error('inner');
    const merged = await managedSession(async em => {
      em.create(Note, { owner: 'outer', body: 'before' });
      await em.flush();
      const released = await managedSession(async inner => inner.create(Note, { owner: 'inner', body: 'released' }));
      const failed = managedSession(async inner => {
        inner.create(Note, { owner: 'inner', body: 'rolled back' });
        await inner.flush();
        throw innerFailure;
      });
      await expect(failed).rejects.toBe(innerFailure);
      getOrm().em.create(Note, { owner: 'outer', body: 'after' });
      return (await em.findOneOrFail(Note, { body: 'released' })) === released;
    });

    expect(merged).toBe(true);
    expect(sessionQueries(log)).toEqual(
      sql(
        'begin',
        insertNote,
        'savepoint "trx1"',
        insertNote,
        'release savepoint "trx1"',
        'savepoint "trx1"',
        insertNote,
        'rollback to savepoint "trx1"',
        insertNote,
        'select "n0".* from "note" as "n0" where "n0"."body" = ? limit ?',
        'commit',
      ),
    );
    expect(await committedBodies()).toEqual(['after', 'before', 'released']);
  });

  it('a nested session refuses options that only the outermost transaction can apply', async () => {
    await start(db);
    await managedSession(async () => {
      await expect(managedSession(async () => 1, { isolationLevel: IsolationLevel.SERIALIZABLE, retries: 2 })).rejects.toThrow(
        /^A nested managedSession\(\) runs in a savepoint of the outer session's transaction, so it cannot apply isolationLevel, retries\. Pass these options to the outermost/,
      );
      await expect(managedSession(async () => 1, { readOnly: true })).rejects.toThrow(/cannot apply readOnly\. Pass this option/);
    });
  });

  it('refuses to run inside a transaction that em.transactional() opened', async () => {
    const { orm } = await start(db);
    await orm.em.fork().transactional(async () => {
      await expect(managedSession(async () => 1)).rejects.toThrow(
        /^managedSession\(\) was called inside a transaction that em\.transactional\(\) or em\.begin\(\) opened/,
      );
    });
  });

  it('refuses retries that are not a whole number of at least zero', async () => {
    await start(db);
    await expect(managedSession(async () => 1, { retries: -1 })).rejects.toThrow(
      /^managedSession\(\) option retries must be a whole number of at least 0 .* but it was -1\./,
    );
    await expect(managedSession(async () => 1, { retries: 1.5 })).rejects.toThrow(ManagedSessionError);
  });

  it('never retries a unique violation', async () => {
    await start(db);
    await managedSession(async em => em.create(Note, { owner: 'a', body: 'taken' }));
    let attempts = 0;
    const session = managedSession(
      async em => {
        attempts++;
        em.create(Note, { owner: 'b', body: 'taken' });
      },
      { retries: 3, retryDelay: 1 },
    );
    await expect(session).rejects.toBeInstanceOf(UniqueConstraintViolationException);
    expect(attempts).toBe(1);
  });

  it('passes isolationLevel and readOnly to the transaction', async () => {
    const { log } = await start(db);
    await managedSession(em => em.count(Note), { isolationLevel: IsolationLevel.SERIALIZABLE, readOnly: true });
    const begin = {
      sqlite: ['begin'],
      postgresql: ['start transaction isolation level serializable read only'],
      mariadb: ['set transaction isolation level serializable, read only', 'begin'],
      mysql: ['set transaction isolation level serializable, read only', 'begin'],
    };
    expect(log.queries.slice(0, begin[db.name].length)).toEqual(begin[db.name]);
  });

  describe("inside a framework's RequestContext", () => {
    const selectNote = 'select "n0".* from "note" as "n0" where "n0"."body" = ? limit ?';
    const updateOwner = 'update "note" set "owner" = ? where "id" = ?';

    /** Commits notes `a` and `b` owned by `before`, outside any request, and forgets the statements. */
    async function seed(orm: TestOrm, log: { clear(): void }) {
      await orm.em.fork().insertMany(Note, [
        { owner: 'before', body: 'a' },
        { owner: 'before', body: 'b' },
      ]);
      log.clear();
    }

    /** The committed owners by body, read on a fresh fork. */
    async function committedOwners() {
      const notes = await getOrm().em.fork().find(Note, {}, { orderBy: { body: 'asc' } });
      return notes.map(note => [note.body, note.owner]);
    }

    it.each([
      { how: 'RequestContext.create', within: (em: CoasterEntityManager, next: () => Promise<void>) => RequestContext.create(em, next) },
      {
        how: 'RequestContext.enter',
        // a promise job of its own, so enter() changes this request's async context only
        within: (em: CoasterEntityManager, next: () => Promise<void>) =>
          Promise.resolve().then(() => {
            RequestContext.enter(em);
            return next();
          }),
      },
    ])('($how) joins the request: an entity loaded before is written, one loaded inside stays with the request', async ({ within }) => {
      const { orm, log } = await start(db);
      await seed(orm, log);
      const events: string[] = [];

      await within(orm.em, async () => {
        const requestEm = RequestContext.getEntityManager() as CoasterEntityManager;
        const a = await requestEm.findOneOrFail(Note, { body: 'a' });
        let b: Note | undefined;
        await managedSession(async em => {
          a.owner = 'session';
          b = await em.findOneOrFail(Note, { body: 'b' });
          expect(await em.findOneOrFail(Note, { body: 'a' })).toBe(a);
          onCommit(() => events.push(`committed: ${log.queries.at(-1)}`));
        });

        // the request's own select of a, then the session (its select flushes a first: FlushMode.AUTO)
        expect(sessionQueries(log)).toEqual(sql(selectNote, 'begin', updateOwner, selectNote, selectNote, 'commit'));
        expect(events).toEqual(['committed: commit']);
        expect(await committedOwners()).toEqual([
          ['a', 'session'],
          ['b', 'before'],
        ]);
        expect(requestEm.getUnitOfWork(false).getIdentityMap().values()).toEqual(expect.arrayContaining([a, b]));
        expect(await requestEm.findOneOrFail(Note, { body: 'b' })).toBe(b);
        log.clear();
        await requestEm.flush(); // nothing left to write
        expect(sessionQueries(log)).toEqual([]);
      });
    });

    it('a failed joined session writes nothing, and the request keeps the committed values, not the rolled-back ones', async () => {
      const { orm, log } = await start(db);
      await seed(orm, log);
      const failure = new Error('refused');

      await RequestContext.create(orm.em, async () => {
        const requestEm = RequestContext.getEntityManager() as CoasterEntityManager;
        const [a, b] = await requestEm.find(Note, {}, { orderBy: { body: 'asc' } });
        log.clear();
        const session = managedSession(async em => {
          a.owner = 'flushed, then rolled back';
          await em.flush();
          b.owner = 'never flushed';
          throw failure;
        });
        await expect(session).rejects.toBe(failure);

        expect([a.owner, b.owner]).toEqual(['before', 'before']);
        expect(sessionQueries(log).slice(0, 3)).toEqual(sql('begin', updateOwner, 'rollback'));
        log.clear();
        await requestEm.flush();
        expect(sessionQueries(log)).toEqual([]);
      });
      expect(await committedOwners()).toEqual([
        ['a', 'before'],
        ['b', 'before'],
      ]);
    });

    it('after a failed joined session, a collection the request had loaded holds the committed children again', async () => {
      const { orm, log } = await start(db, { entities: raceEntities });
      const seeded = orm.em.fork();
      const account = seeded.create(Account, { name: 'ada' });
      seeded.create(Address, { email: 'one@example.com', account });
      await seeded.flush();

      await RequestContext.create(orm.em, async () => {
        const requestEm = RequestContext.getEntityManager() as CoasterEntityManager;
        const ada = await requestEm.findOneOrFail(Account, { name: 'ada' }, { populate: ['addresses'] });
        const failure = new Error('refused');
        await expect(
          managedSession(async em => {
            ada.addresses.add(em.create(Address, { email: 'two@example.com', account: ada }));
            ada.name = 'renamed';
            await em.flush();
            throw failure;
          }),
        ).rejects.toBe(failure);

        expect(ada.name).toBe('ada');
        expect(ada.addresses.getItems().map(address => address.email)).toEqual(['one@example.com']);
        log.clear();
        await requestEm.flush();
        expect(sessionQueries(log)).toEqual([]);
      });
      expect((await orm.em.fork().find(Address, {})).map(address => address.email)).toEqual(['one@example.com']);
    });

    it("refuses a RequestContext whose EntityManager belongs to another ORM", async () => {
      await start(db);
      const { orm: other } = await db.init({ entities: sessionEntities });
      opened.push(other);
      await RequestContext.create(other.em, async () => {
        await expect(managedSession(async () => 1)).rejects.toThrow(
          /^managedSession\(\) joins the RequestContext it runs in, but that context's EntityManager 'default' belongs to another MikroORM/,
        );
      });
    });
  });

  describe('onCommit', () => {
    it('runs each callback once after the outermost commit, in order, outside the session', async () => {
      const { log } = await start(db);
      const events: string[] = [];
      await managedSession(async em => {
        onCommit(() => events.push('first'));
        em.create(Note, { owner: 'a', body: 'committed' });
        onCommit(async () => events.push(`second sees ${await managedSession(other => other.count(Note))}`));
        events.push('callback returns');
      });

      expect(events).toEqual(['callback returns', 'first', 'second sees 1']);
      expect(sessionQueries(log)).toEqual(sql('begin', insertNote, 'commit', 'begin', 'select count(*) as "count" from "note" as "n0"', 'commit'));
    });

    it('never runs a callback after a rollback', async () => {
      await start(db);
      const events: string[] = [];
      const failure = new Error('rolled back');
      await expect(
        managedSession(async () => {
          onCommit(() => events.push('must not run'));
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect(events).toEqual([]);
    });

    it('drops the callbacks of a rolled-back nested session, keeps those of a released one', async () => {
      await start(db);
      const events: string[] = [];
      await managedSession(async () => {
        onCommit(() => events.push('outer'));
        await managedSession(async () => onCommit(() => events.push('released savepoint')));
        await managedSession(async () => {
          onCommit(() => events.push('rolled-back savepoint'));
          throw new Error('inner');
        }).catch(() => undefined);
        onCommit(() => events.push('outer, later'));
        expect(events).toEqual([]);
      });
      expect(events).toEqual(['outer', 'released savepoint', 'outer, later']);
    });

    it("drops the callbacks of a rolled-back em.transactional() savepoint inside a session", async () => {
      await start(db);
      const events: string[] = [];
      await managedSession(async em => {
        await em.transactional(async () => onCommit(() => events.push('released')));
        await em
          .transactional(async () => {
            onCommit(() => events.push('rolled back'));
            throw new Error('inner');
          })
          .catch(() => undefined);
      });
      expect(events).toEqual(['released']);
    });

    it('refuses a session started from work that outlived its session', async () => {
      await start(db);
      let sessionEnded!: () => void;
      const ended = new Promise<void>(resolve => (sessionEnded = resolve));
      let background: Promise<unknown> | undefined;
      await managedSession(async () => {
        background = ended.then(() => managedSession(async () => 'late'));
      });
      sessionEnded();
      await expect(background).rejects.toBeInstanceOf(ManagedSessionError);
      await expect(background).rejects.toThrow(/started from work that outlived its managed session/);
    });

    it('a failing callback rejects the session, whose data stays committed', async () => {
      await start(db);
      const failure = new Error('mail server down');
      const events: string[] = [];
      await expect(
        managedSession(async em => {
          em.create(Note, { owner: 'a', body: 'kept' });
          onCommit(() => {
            throw failure;
          });
          onCommit(() => events.push('not reached'));
        }),
      ).rejects.toBe(failure);
      expect(events).toEqual([]);
      expect(await committedBodies()).toEqual(['kept']);
    });

    it('fails clearly when called from work that outlived its session', async () => {
      await start(db);
      let sessionEnded!: () => void;
      const ended = new Promise<void>(resolve => (sessionEnded = resolve));
      let background: Promise<void> | undefined;
      await managedSession(async () => {
        background = ended.then(() => onCommit(() => undefined));
      });
      sessionEnded();
      await expect(background).rejects.toThrow(/^onCommit\(\) was called after its managed session had ended/);
    });

    it('fails clearly outside a managed session', async () => {
      const { orm } = await start(db);
      const expected = /^onCommit\(\) registers a callback for the commit of the current managed session, but none is running here/;
      expect(() => onCommit(() => undefined)).toThrow(expected);
      await orm.em.fork().transactional(async () => expect(() => onCommit(() => undefined)).toThrow(ManagedSessionError));
    });
  });

  describe('@ManagedSession()', () => {
    class NoteService {
      constructor(readonly owner: string) {}

      @ManagedSession()
      async add(body: string, failure?: Error): Promise<Note> {
        const note = getOrm().em.create(Note, { owner: this.owner, body });
        if (failure) {
          await getOrm().em.flush();
          throw failure;
        }
        return note;
      }

      @ManagedSession({ retries: 1 })
      async addTwo(first: string, second: string, failure: Error): Promise<string[]> {
        await this.add(first);
        await this.add(second, failure).catch(() => undefined);
        return [first];
      }
    }

    it('runs each call in a managed session: a savepoint when nested, a rollback on error', async () => {
      const { log } = await start(db);
      const service = new NoteService('service');
      const failure = new Error('refused');

      expect(await service.addTwo('kept', 'dropped', failure)).toEqual(['kept']);
      await expect(service.add('failed', failure)).rejects.toBe(failure);

      expect(sessionQueries(log)).toEqual(
        sql(
          'begin',
          'savepoint "trx1"',
          insertNote,
          'release savepoint "trx1"',
          'savepoint "trx1"',
          insertNote,
          'rollback to savepoint "trx1"',
          'commit',
          'begin',
          insertNote,
          'rollback',
        ),
      );
      expect(await committedBodies()).toEqual(['kept']);
      expect((await getOrm().em.fork().findOneOrFail(Note, { body: 'kept' })).owner).toBe('service');
    });

    it('fails clearly before initOrm', async () => {
      await expect(new NoteService('x').add('y')).rejects.toThrow(/^managedSession\(\) needs the process-wide ORM/);
    });

    /** A stand-in for NestJS's `@Get(path)`: route metadata defined on the method itself, as Nest does. */
    const Get = (path: string): MethodDecorator => (_target, _key, descriptor) => {
      Reflect.defineMetadata('path', path, descriptor.value as object);
      Reflect.defineMetadata('method', 'GET', descriptor.value as object);
    };

    class NotesController {
      @ManagedSession()
      @Get('above')
      async above(body: string, owner: string): Promise<number> {
        getOrm().em.create(Note, { owner, body });
        return getOrm().em.count(Note);
      }

      @Get('below')
      @ManagedSession()
      async below(body: string, owner: string): Promise<number> {
        getOrm().em.create(Note, { owner, body });
        return getOrm().em.count(Note);
      }
    }

    /** What a framework's router finds on a controller, as NestJS's scanner reads it: the routed methods' metadata. */
    function routes(controller: object) {
      const prototype = Object.getPrototypeOf(controller) as Record<string, (...args: string[]) => Promise<number>>;
      return Object.getOwnPropertyNames(prototype)
        .filter(name => Reflect.getMetadata('path', prototype[name]) !== undefined)
        .map(name => ({
          path: Reflect.getMetadata('path', prototype[name]) as string,
          method: Reflect.getMetadata('method', prototype[name]) as string,
          handler: prototype[name],
        }));
    }

    it("keeps a route decorator's reflect-metadata, name and length, above or below it", async () => {
      const { log } = await start(db);
      const controller = new NotesController();
      const found = routes(controller);
      expect(found.map(({ path, method, handler }) => [path, method, handler.name, handler.length])).toEqual([
        ['above', 'GET', 'above', 2],
        ['below', 'GET', 'below', 2],
      ]);

      for (const { path, handler } of found) {
        expect(await handler.call(controller, path, 'router')).toBe(path === 'above' ? 1 : 2);
      }
      const oneSession = sql('begin', insertNote, 'select count(*) as "count" from "note" as "n0"', 'commit');
      expect(sessionQueries(log)).toEqual([...oneSession, ...oneSession]);
      expect(await committedBodies()).toEqual(['above', 'below']);
    });
  });
});
