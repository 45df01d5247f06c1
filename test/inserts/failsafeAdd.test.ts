import { DeadlockException, IsolationLevel, UniqueConstraintViolationException, ForeignKeyConstraintViolationException } from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it, onTestFinished } from 'vitest';
import {
  CoasterEntityManager,
  CoasterUsageError,
  MultipleResultsError,
  TransactionRetryError,
  defineCoasterConfig,
} from '../../src/index.js';
import { allDrivers, closeOrm, databases, type QueryLog, type TestOrm } from '../support/databases.js';
import { Account, Address, Tag, raceEntities } from '../support/entities.js';
import { insertPaths, savepointPath } from '../support/insertPaths.js';

/** A quoting-free view of the log: `"tag"` and `` `tag` `` both read `tag`. */
function statements(log: QueryLog): string[] {
  return log.queries.map(q => q.replace(/["`]/g, ''));
}

/** The statements of each path and database, as {@link statements} shows them. */
interface ExpectedStatements {
  /** PostgreSQL's and SQLite's; on MariaDB, whose inserts MikroORM sends without `returning id`, without it. */
  savepoint: string[];
  postgresql: string[];
  sqlite: string[];
  /** MariaDB's fast path: `insert ... returning *` alone, the select only after a duplicate (1062). */
  mariadb: string[];
}

const INSERT_TAG = 'insert into tag (name) values (?) on conflict do nothing returning *';
const SELECT_TAG = 'select t0.* from tag as t0 where t0.name = ? limit ?';
/** One PostgreSQL round trip inside a transaction: the fast path's statements in its savepoint. */
const inSavepoint = (...sql: string[]) => ['savepoint failsafe_add', ...sql, 'release savepoint failsafe_add'].join('; ');
/** MariaDB's fast path insert of a tag. */
const INSERT_TAG_RETURNING = 'insert into tag (name) values (?) returning *';
/** The statements of a flush on MariaDB: MikroORM reads the new id from the insert's result, without RETURNING. */
const withoutReturningId = (sql: string[]) => sql.map(q => q.replace(/ returning id$/, ''));

/**
 * Makes MariaDB's fast path ask the server's version (`select version()`, once per ORM) before the statements
 * a test checks.
 */
async function askServerVersion(orm: TestOrm): Promise<void> {
  const em = orm.em.fork();
  await em.failsafeAdd(em.create(Tag, { name: 'version' }));
  await orm.schema.clearDatabase();
}

describe.each(databases)('failsafeAdd and addAndCommit on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities: raceEntities, ...path.options() }));
      await askServerVersion(orm);
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    const expected = (statements: ExpectedStatements) =>
      path.name === 'fast'
        ? statements[db.name as keyof ExpectedStatements]
        : db.name === 'mariadb'
          ? withoutReturningId(statements.savepoint)
          : statements.savepoint;

    it('is a CoasterEntityManager on orm.em, its forks and transactional callbacks', async () => {
      expectTypeOf(orm.em).toEqualTypeOf<CoasterEntityManager>();
      expect(orm.em).toBeInstanceOf(CoasterEntityManager);
      expect(orm.em.fork()).toBeInstanceOf(CoasterEntityManager);
      await orm.em.fork().transactional(em => {
        expectTypeOf(em).toEqualTypeOf<CoasterEntityManager>();
        expect(em).toBeInstanceOf(CoasterEntityManager);
      });
    });

    it('inserts a new entity and returns the same instance, managed', async () => {
      const em = orm.em.fork();
      const tag = em.create(Tag, { name: 'news' });
      const added = await em.failsafeAdd(tag, { name: 'news' });
      expectTypeOf(added).toEqualTypeOf<Tag>();
      expect(added).toBe(tag);
      expect(tag.id).toBeTypeOf('number');
      expect(em.getUnitOfWork().getById(Tag.name, tag.id)).toBe(tag);
      expect(statements(log)).toEqual(
        expected({
          savepoint: ['begin', 'insert into tag (name) values (?) returning id', 'commit'],
          postgresql: [`${INSERT_TAG}; ${SELECT_TAG}`],
          sqlite: [INSERT_TAG],
          mariadb: [INSERT_TAG_RETURNING],
        }),
      );
      log.clear();
      await em.flush();
      expect(log.queries).toEqual([]);
    });

    it('returns the instance already in the identity map on a duplicate', async () => {
      const em = orm.em.fork();
      const loaded = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' });
      const duplicate = em.create(Tag, { name: 'news', color: 'red' });
      log.clear();
      const added = await em.failsafeAdd(duplicate, { name: 'news' });
      expect(added).toBe(loaded);
      expect(added.color).toBeNull();
      const insert = 'insert into tag (color, name) values (?, ?) on conflict do nothing returning *';
      expect(statements(log)).toEqual(
        expected({
          savepoint: ['begin', 'insert into tag (name, color) values (?, ?) returning id', 'rollback', SELECT_TAG],
          postgresql: [`${insert}; ${SELECT_TAG}`],
          sqlite: [insert, SELECT_TAG],
          mariadb: ['insert into tag (color, name) values (?, ?) returning *', SELECT_TAG],
        }),
      );
    });

    it('never inserts a rejected em.create()d duplicate on a later flush', async () => {
      const em = orm.em.fork();
      await em.fork().persist(em.create(Tag, { name: 'news' })).flush();
      const duplicate = em.create(Tag, { name: 'news' });
      const existing = await em.failsafeAdd(duplicate, { name: 'news' });
      expect(existing).not.toBe(duplicate);
      log.clear();
      await em.flush();
      expect(log.queries).toEqual([]);
      expect(await tagNames(orm)).toEqual(['news']);
    });

    it('never inserts a rejected child that a managed parent collection holds', async () => {
      const setup = orm.em.fork();
      const account = setup.create(Account, { name: 'ada' });
      setup.create(Address, { email: 'ada@example.com', account });
      await setup.flush();

      const em = orm.em.fork();
      const parent = await em.findOneOrFail(Account, account.id, { populate: ['addresses'] });
      const duplicate = em.create(Address, { email: 'ada@example.com', account: parent });
      expect(parent.addresses.contains(duplicate)).toBe(true);
      const existing = await em.failsafeAdd(duplicate, { email: 'ada@example.com' });
      expect(existing).not.toBe(duplicate);
      expect(parent.addresses.contains(duplicate)).toBe(false);
      log.clear();
      await em.flush();
      expect(log.queries).toEqual([]);
      expect(await orm.em.fork().count(Address)).toBe(1);
    });

    it('inserts a new child of a managed parent on its own, in the caller transaction', async () => {
      const setup = orm.em.fork();
      const account = setup.create(Account, { name: 'ada' });
      await setup.flush();

      const em = orm.em.fork();
      const parent = await em.findOneOrFail(Account, account.id, { populate: ['addresses'] });
      const address = em.create(Address, { email: 'ada@example.com', account: parent });
      log.clear();
      await em.transactional(async tx => {
        expect(await tx.failsafeAdd(address)).toBe(address);
      });
      const insert = 'insert into address (account_id, email) values (?, ?) on conflict do nothing returning *';
      expect(statements(log)).toEqual(
        expected({
          savepoint: [
            'begin',
            'savepoint trx1',
            'insert into address (email, account_id) values (?, ?) returning id',
            'release savepoint trx1',
            'commit',
          ],
          postgresql: ['begin', inSavepoint(insert), 'commit'],
          sqlite: ['begin', insert, 'commit'],
          mariadb: ['begin', 'insert into address (account_id, email) values (?, ?) returning *', 'commit'],
        }),
      );
      expect(parent.addresses.getItems()).toEqual([address]);
    });

    it('flushes other pending changes first, outside the savepoint, and keeps them after a conflict', async () => {
      const em = orm.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news' }));
      log.clear();
      await em.transactional(async tx => {
        tx.create(Tag, { name: 'earlier' });
        expect(await tx.failsafeAdd(tx.create(Tag, { name: 'news' }))).toBeUndefined();
        tx.create(Tag, { name: 'later' });
      });
      const flushed = 'insert into tag (name) values (?) returning id';
      expect(statements(log)).toEqual(
        expected({
          savepoint: ['begin', flushed, 'savepoint trx1', flushed, 'rollback to savepoint trx1', flushed, 'commit'],
          postgresql: ['begin', flushed, inSavepoint(INSERT_TAG), flushed, 'commit'],
          sqlite: ['begin', flushed, INSERT_TAG, flushed, 'commit'],
          // the 1062 undoes the duplicate insert only: no savepoint, no select without filters
          mariadb: withoutReturningId(['begin', flushed, INSERT_TAG_RETURNING, flushed, 'commit']),
        }),
      );
      expect(await tagNames(orm)).toEqual(['earlier', 'later', 'news']);
    });

    it('keeps the caller transaction usable after a conflict: earlier and later work commit', async () => {
      const em = orm.em.fork();
      await em.fork().persist(em.create(Tag, { name: 'news' })).flush();
      await em.begin();
      try {
        await em.persist(em.create(Tag, { name: 'earlier' })).flush();
        const existing = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' });
        expect(existing.name).toBe('news');
        await em.persist(em.create(Tag, { name: 'later', color: existing.color ?? 'none' })).flush();
        await em.commit();
      } catch (e) {
        await em.rollback();
        throw e;
      }
      expect(await tagNames(orm)).toEqual(['earlier', 'later', 'news']);
    });

    it('resolves to undefined without filters on a conflict, and throws nothing', async () => {
      const em = orm.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news' }));
      const result = await em.failsafeAdd(em.create(Tag, { name: 'news' }));
      expectTypeOf(result).toEqualTypeOf<Tag | undefined>();
      expect(result).toBeUndefined();
      expect(await tagNames(orm)).toEqual(['news']);
    });

    it('rejects with MultipleResultsError when the filters match two rows', async () => {
      const em = orm.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news', color: 'red' }));
      await em.failsafeAdd(em.create(Tag, { name: 'sport', color: 'red' }));
      const error = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { color: 'red' }).catch(e => e);
      expect(error).toBeInstanceOf(MultipleResultsError);
      expect(error).toMatchObject({ entityName: 'Tag', count: 2 });
      expect(error.message).toMatch(/Pass filters that identify a single row/);
      expect(error.cause).toBeInstanceOf(UniqueConstraintViolationException);
    });

    it('rethrows the original violation when the filters match nothing', async () => {
      const em = orm.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news' }));
      const error = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'elsewhere' }).catch(e => e);
      expect(error).toBeInstanceOf(UniqueConstraintViolationException);
      expect(await tagNames(orm)).toEqual(['news']);
    });

    it('rethrows a violation that is not a duplicate when the filters match nothing', async () => {
      const em = orm.em.fork();
      const orphan = em.create(Address, { email: 'ada@example.com', account: em.getReference(Account, 404) });
      await expect(em.failsafeAdd(orphan, { email: 'ada@example.com' })).rejects.toBeInstanceOf(
        ForeignKeyConstraintViolationException,
      );
      expect(await orm.em.fork().count(Address)).toBe(0);
    });

    it('rejects an entity that is already in the database with a usage error', async () => {
      const em = orm.em.fork();
      const tag = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' });
      const error = await em.failsafeAdd(tag, { name: 'news' }).catch(e => e);
      expect(error).toBeInstanceOf(CoasterUsageError);
      expect(error.message).toMatch(/inserts new entities, but this Tag \(primary key \d+\) is already managed/);
    });

    it.each([
      ['a plain object', { name: 'news' }],
      ['null', null],
      ['a string', 'news'],
      ['an entity class', Tag],
      ['an instance of a class MikroORM did not discover', new (class Stray {})()],
    ])('throws CoasterUsageError for %s, writing nothing', async (_, value) => {
      const em = orm.em.fork();
      await expect(em.failsafeAdd(value as object)).rejects.toThrow(CoasterUsageError);
      await expect(em.failsafeAdd(value as object)).rejects.toThrow(CoasterUsageError.notAnEntity('failsafeAdd', value).message);
      expect(em.getUnitOfWork().getIdentityMap().values()).toEqual([]);
      expect(log.queries).toEqual([]);
      await expect(em.failsafeAdd(value as object)).rejects.toThrow(/needs an entity instance of a class MikroORM discovered/);
    });

    describe('addAndCommit', () => {
      it('commits outside a transaction: another EntityManager sees the row when it resolves', async () => {
        const em = orm.em.fork();
        const tag = await em.addAndCommit(em.create(Tag, { name: 'news' }), { name: 'news' });
        expect(statements(log)).toEqual(
          expected({
            savepoint: ['begin', 'insert into tag (name) values (?) returning id', 'commit'],
            postgresql: [`${INSERT_TAG}; ${SELECT_TAG}`],
            sqlite: [INSERT_TAG],
            mariadb: [INSERT_TAG_RETURNING],
          }),
        );
        expect(await orm.em.fork().findOneOrFail(Tag, { name: 'news' })).toMatchObject({ id: tag.id });
      });

      it('releases its savepoint inside a transaction', async () => {
        const em = orm.em.fork();
        await em.transactional(async tx => {
          const tag = await tx.addAndCommit(tx.create(Tag, { name: 'news' }), { name: 'news' });
          expect(tag.name).toBe('news');
        });
        expect(statements(log)).toEqual(
          expected({
            savepoint: ['begin', 'savepoint trx1', 'insert into tag (name) values (?) returning id', 'release savepoint trx1', 'commit'],
            postgresql: ['begin', inSavepoint(INSERT_TAG, SELECT_TAG), 'commit'],
            sqlite: ['begin', INSERT_TAG, 'commit'],
            mariadb: ['begin', INSERT_TAG_RETURNING, 'commit'],
          }),
        );
      });

      it('returns the existing row on a conflict', async () => {
        const em = orm.em.fork();
        const first = await em.fork().addAndCommit(em.create(Tag, { name: 'news' }), { name: 'news' });
        const second = await em.addAndCommit(em.create(Tag, { name: 'news' }), { name: 'news' });
        expect(second.id).toBe(first.id);
      });

      it('demands filters', async () => {
        const em = orm.em.fork();
        const call = em.addAndCommit(em.create(Tag, { name: 'news' }), undefined as never);
        await expect(call).rejects.toBeInstanceOf(CoasterUsageError);
        await expect(em.addAndCommit(em.create(Tag, { name: 'news' }), undefined as never)).rejects.toThrow(
          /needs filters that find the existing row/,
        );
        expect(await tagNames(orm)).toEqual([]);
      });
    });
  });
});

describe.each(databases)('failsafeAdd with disableTransactions on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;

  beforeAll(async () => {
    ({ orm, log } = await db.init({ entities: raceEntities, disableTransactions: true }));
    await askServerVersion(orm);
  });

  it('takes the fast path: one statement per insert, the duplicate found without an error', async () => {
    const em = orm.em.fork();
    const tag = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' });
    log.clear();
    expect(await orm.em.fork().failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' })).toMatchObject({ id: tag.id });
    expect(statements(log)).toEqual(
      { postgresql: [`${INSERT_TAG}; ${SELECT_TAG}`], sqlite: [INSERT_TAG, SELECT_TAG], mariadb: [INSERT_TAG_RETURNING, SELECT_TAG] }[
        db.name as 'postgresql' | 'sqlite' | 'mariadb'
      ],
    );
    await orm.em.fork().nativeDelete(Tag, {});
  });

  afterAll(() => closeOrm(orm));

  it('inserts, and recovers a duplicate, with statements that commit on their own on the savepoint path', async () => {
    const { orm, log } = await db.init({ entities: raceEntities, disableTransactions: true, ...savepointPath.options() });
    onTestFinished(() => closeOrm(orm));
    const em = orm.em.fork();
    const tag = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' });
    expect(tag.id).toBeTypeOf('number');
    log.clear();
    expect(await orm.em.fork().failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' })).toMatchObject({ id: tag.id });
    const insert = 'insert into tag (name) values (?) returning id';
    expect(statements(log)).toEqual([db.name === 'mariadb' ? withoutReturningId([insert])[0] : insert, SELECT_TAG]);
  });
});

async function tagNames(orm: TestOrm): Promise<string[]> {
  return (await orm.em.fork().find(Tag, {}, { orderBy: { name: 'asc' } })).map(t => t.name);
}

/** The databases with concurrent transactions: PostgreSQL, and MariaDB through both drivers. */
const servers = allDrivers.filter(db => db.name !== 'sqlite');

describe.each(servers)('failsafeAdd under snapshot isolation on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities: raceEntities, ...path.options() }));
      await askServerVersion(orm);
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    /**
     * Opens a transaction that reads another table (taking its snapshot: PostgreSQL's at the first statement,
     * InnoDB's at the first plain read, which under MariaDB's SERIALIZABLE locks what it reads), then has another
     * connection commit `news` in a transaction of the same isolation level, then inserts `news` itself.
     */
    async function conflictAfterSnapshot(isolationLevel: IsolationLevel, filters?: { name: string }) {
      const em = orm.em.fork();
      await em.begin({ isolationLevel });
      try {
        expect(await em.count(Account, {})).toBe(0);
        await orm.em.fork().transactional(other => other.addAndCommit(other.create(Tag, { name: 'news' }), { name: 'news' }), {
          isolationLevel,
        });
        log.clear();
        return await em.failsafeAdd(em.create(Tag, { name: 'news' }), filters);
      } finally {
        await em.rollback();
      }
    }

    it('REPEATABLE READ: throws TransactionRetryError when the conflicting row is invisible', async () => {
      const error = await conflictAfterSnapshot(IsolationLevel.REPEATABLE_READ, { name: 'news' }).catch(e => e);
      expect(error).toBeInstanceOf(TransactionRetryError);
      expect(error).toMatchObject({ entityName: 'Tag', isolationLevel: 'repeatable read' });
      expect(error.message).toMatch(/Roll back and retry the whole transaction/);
      if (db.name === 'postgresql') {
        // the fast path's ON CONFLICT reports the hidden row as 40001, a plain insert as a unique violation
        expect(error.cause).toBeInstanceOf(path.name === 'fast' ? DeadlockException : UniqueConstraintViolationException);
        expect(error.cause).toMatchObject({ code: path.name === 'fast' ? '40001' : '23505' });
      } else {
        // InnoDB's 1062 either way; the plain select misses the row, the locking read finds it
        expect(error.cause).toBeInstanceOf(UniqueConstraintViolationException);
        expect(error.cause).toMatchObject({ errno: 1062 });
        expect(statements(log).slice(-3)).toEqual([SELECT_TAG, `${SELECT_TAG} lock in share mode`, 'rollback']);
      }
    });

    it('REPEATABLE READ: rethrows the violation when the filters match no row, hidden or not', async () => {
      const error = await conflictAfterSnapshot(IsolationLevel.REPEATABLE_READ, { name: 'elsewhere' }).catch(e => e);
      expect(error).toBeInstanceOf(db.name === 'postgresql' ? TransactionRetryError : UniqueConstraintViolationException);
    });

    it('SERIALIZABLE: throws TransactionRetryError when the conflicting row is invisible (PostgreSQL), finds it (MariaDB)', async () => {
      const result = await conflictAfterSnapshot(IsolationLevel.SERIALIZABLE, { name: 'news' }).catch(e => e);
      if (db.name === 'postgresql') {
        expect(result).toBeInstanceOf(TransactionRetryError);
        expect(result).toMatchObject({ isolationLevel: 'serializable' });
      } else {
        // InnoDB's SERIALIZABLE reads lock and see the latest committed rows: no snapshot hides the winner
        expect(result).toBeInstanceOf(Tag);
        expect(result).toMatchObject({ name: 'news' });
      }
    });

    it('lets a deadlock met inside its insert escape as DeadlockException', async () => {
      const [a, b] = [orm.em.fork(), orm.em.fork()];
      const failures: unknown[] = [];
      /** On failure, records the error and ends the victim's transaction so the other one can go on. */
      const settle = (em: CoasterEntityManager, name: string) =>
        em.failsafeAdd(em.create(Tag, { name }), { name }).catch(async error => {
          failures.push(error);
          await em.rollback();
        });
      await a.begin();
      await b.begin();
      try {
        if (db.name === 'postgresql') {
          for (const em of [a, b]) {
            await em.execute(`set local deadlock_timeout = '50ms'`);
          }
        }
        await a.failsafeAdd(a.create(Tag, { name: 'first' }));
        await b.failsafeAdd(b.create(Tag, { name: 'second' }));
        // a waits for b's "second", b waits for a's "first": the database breaks the cycle.
        await Promise.all([settle(a, 'second'), settle(b, 'first')]);
        expect(failures).toHaveLength(1);
        expect(failures[0]).toBeInstanceOf(DeadlockException);
        // InnoDB rolls the victim's whole transaction back (1213): nothing recovers from it
        expect(failures[0]).toMatchObject(db.name === 'postgresql' ? { code: '40P01' } : { errno: 1213 });
      } finally {
        for (const em of [a, b]) {
          if (em.isInTransaction()) {
            await em.rollback();
          }
        }
      }
    });

    it('READ COMMITTED: sees the committed row and returns it', async () => {
      const tag = await conflictAfterSnapshot(IsolationLevel.READ_COMMITTED, { name: 'news' });
      expect(tag?.name).toBe('news');
    });
  });
});

describe('defineCoasterConfig', () => {
  it('returns options it already made as they are, so nothing is registered twice', () => {
    const options = defineCoasterConfig({ entities: [Tag] });
    expect(defineCoasterConfig(options)).toBe(options);
    expect(options.entityManager).toBe(CoasterEntityManager);
  });
});
