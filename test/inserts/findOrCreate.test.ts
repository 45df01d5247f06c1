import { Entity, EntityRepositoryType, IsolationLevel, PrimaryKey, Property, Unique, UniqueConstraintViolationException } from '@mikro-orm/core';
import { SqlEntityManager } from '@mikro-orm/knex';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { CoasterEntityRepository, CoasterUsageError, TransactionRetryError, type FindOrCreateResult } from '../../src/index.js';
import { allDrivers, closeOrm, databases, type QueryLog, type TestDatabase, type TestOrm } from '../support/databases.js';
import { Tag, raceEntities } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';

class LabelRepository extends CoasterEntityRepository<Label> {}

/** An entity served by a CoasterEntityRepository. */
@Entity({ repository: () => LabelRepository })
class Label {
  [EntityRepositoryType]?: LabelRepository;

  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;
}

const entities = [...raceEntities, Label];

describe.each(databases)('findOrCreate on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities, ...path.options() }));
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    it('creates the row from where plus data when none matches', async () => {
      const em = orm.em.fork();
      const tag = await em.findOrCreate(Tag, { name: 'news' }, { color: 'red' });
      expectTypeOf(tag).toEqualTypeOf<Tag>();
      expect(tag).toMatchObject({ name: 'news', color: 'red' });
      expect(await orm.em.fork().findOneOrFail(Tag, { name: 'news' })).toMatchObject({ id: tag.id, color: 'red' });
    });

    it('finds the existing row with one select, using data only on create', async () => {
      const em = orm.em.fork();
      const created = await em.findOrCreate(Tag, { name: 'news' }, { color: 'red' });
      log.clear();
      const found = await orm.em.fork().findOrCreate(Tag, { name: 'news' }, { color: 'blue' });
      expect(found).toMatchObject({ id: created.id, color: 'red' });
      expect(log.queries.map(q => q.replace(/["`]/g, ''))).toEqual(['select t0.* from tag as t0 where t0.name = ? limit ?']);
    });

    it('returns the instance already in the identity map', async () => {
      const em = orm.em.fork();
      const created = await em.findOrCreate(Tag, { name: 'news' });
      expect(await em.findOrCreate(Tag, { name: 'news' })).toBe(created);
    });

    it('tells with getOrCreate whether the call created the row', async () => {
      const first = await orm.em.fork().getOrCreate(Tag, { name: 'news' });
      const second = await orm.em.fork().getOrCreate(Tag, { name: 'news' });
      expectTypeOf(first).toEqualTypeOf<FindOrCreateResult<Tag>>();
      expect(first.created).toBe(true);
      expect(second).toMatchObject({ created: false, entity: { id: first.entity.id } });
    });

    it.each([
      ['an operator on a property', { name: { $like: 'n%' } }, /'name.\$like' is a query operator/],
      ['a top-level operator', { $or: [{ name: 'a' }, { name: 'b' }] }, /'\$or' is a query operator/],
    ])('rejects %s in where with a usage error, before touching the database', async (_, where, message) => {
      const em = orm.em.fork();
      const call = em.findOrCreate(Tag, where as never);
      await expect(call).rejects.toBeInstanceOf(CoasterUsageError);
      await expect(em.findOrCreate(Tag, where as never)).rejects.toThrow(message);
      expect(log.queries).toEqual([]);
    });

    it('rethrows a violation of another unique column, since where matches nothing', async () => {
      const em = orm.em.fork();
      await em.findOrCreate(Tag, { name: 'news' });
      // `where` misses (no tag is red) but the insert collides on the unique name; no unique key covers `color`
      const call = orm.em.fork().findOrCreate(Tag, { color: 'red' }, { name: 'news' }, { checkUnique: false });
      await expect(call).rejects.toBeInstanceOf(UniqueConstraintViolationException);
    });

    describe('through CoasterEntityRepository', () => {
      it('offers failsafeAdd, addAndCommit, findOrCreate and getOrCreate', async () => {
        const em = orm.em.fork();
        const labels = em.getRepository(Label);
        expectTypeOf(labels).toEqualTypeOf<LabelRepository>();
        const news = await labels.findOrCreate({ name: 'news' });
        expect(await labels.getOrCreate({ name: 'news' })).toEqual({ entity: news, created: false });
        expect(await labels.failsafeAdd(em.create(Label, { name: 'news' }))).toBeUndefined();
        expect(await labels.addAndCommit(em.create(Label, { name: 'news' }), { name: 'news' })).toBe(news);
        expect(await labels.addAndCommit(em.create(Label, { name: 'sport' }), { name: 'sport' })).toMatchObject({
          name: 'sport',
        });
        expect(await orm.em.fork().count(Label)).toBe(2);
      });
    });
  });
});

describe.each(databases)('CoasterEntityRepository without CoasterEntityManager on $name', db => {
  it('tells to enable CoasterEntityManager', async () => {
    const { orm } = await db.init({ entities });
    try {
      const plain = new SqlEntityManager(orm.config, orm.em.getDriver(), orm.getMetadata(), false);
      const labels = new LabelRepository(plain, Label);
      const call = labels.findOrCreate({ name: 'news' });
      await expect(call).rejects.toBeInstanceOf(CoasterUsageError);
      await expect(labels.findOrCreate({ name: 'news' })).rejects.toThrow(
        /The repository of Label needs a CoasterEntityManager.*defineCoasterConfig/,
      );
      expect(await orm.em.fork().count(Label)).toBe(0);
    } finally {
      await closeOrm(orm);
    }
  });
});

describe.each(allDrivers.filter(db => db.name !== 'sqlite'))('findOrCreate racing another transaction on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;

    beforeAll(async () => {
      ({ orm } = await db.init({ entities, ...path.options() }));
    });
    afterAll(() => closeOrm(orm));
    beforeEach(() => orm.schema.clearDatabase());

    /** a inserts `news` in a transaction; b's find misses it, b's insert waits on a's lock, a commits. */
    async function race(isolationLevel?: IsolationLevel) {
      const [a, b] = [orm.em.fork(), orm.em.fork()];
      await a.begin();
      const mine = await a.getOrCreate(Tag, { name: 'news' }, { color: 'red' });
      expect(mine.created).toBe(true);
      // b's find cannot see a's uncommitted row; its insert then waits on a's lock
      const theirs = b.transactional(tx => tx.getOrCreate(Tag, { name: 'news' }, { color: 'blue' }), { isolationLevel });
      theirs.catch(() => undefined);
      await waitForLockWait(db, orm.em.fork()).catch(async error => {
        await a.rollback();
        throw error;
      });
      await a.commit();
      return { mine: mine.entity, theirs };
    }

    it('recovers the row a concurrent transaction inserted after the find missed it (READ COMMITTED)', async () => {
      const { mine, theirs } = await race(IsolationLevel.READ_COMMITTED);
      const result = await theirs;
      expect(result.created).toBe(false);
      expect(result.entity).toMatchObject({ id: mine.id, color: 'red' });
      expect(await orm.em.fork().count(Tag, { name: 'news' })).toBe(1);
    });

    it("under the database's default isolation: recovers it (PostgreSQL), or asks for a retry (MariaDB's REPEATABLE READ)", async () => {
      const { mine, theirs } = await race();
      if (db.name === 'postgresql') {
        expect(await theirs).toMatchObject({ created: false, entity: { id: mine.id } });
      } else {
        // b's find took its snapshot before a committed: only a locking read sees the row, which b may not return
        const error = await theirs.catch(e => e);
        expect(error).toBeInstanceOf(TransactionRetryError);
        expect(error).toMatchObject({ entityName: 'Tag', isolationLevel: 'repeatable read' });
        expect(await orm.em.fork().transactional(tx => tx.getOrCreate(Tag, { name: 'news' }))).toMatchObject({
          created: false,
          entity: { id: mine.id },
        });
      }
      expect(await orm.em.fork().count(Tag, { name: 'news' })).toBe(1);
    });
  });
});

/**
 * Resolves once some connection to this test's database waits on a row lock (polled, at most 2 s). On MariaDB,
 * an insert still running: it waits on the lock, or is about to (innodb_trx, refreshed every 0.1 s or so, lags).
 */
async function waitForLockWait(db: TestDatabase, em: { execute: TestOrm['em']['execute'] }): Promise<void> {
  const sql =
    db.name === 'postgresql'
      ? `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`
      : `select count(*) as n from information_schema.processlist where db = database() and info like 'insert into%'`;
  for (let i = 0; i < 200; i++) {
    const rows = await em.execute<{ n: string }[]>(sql);
    if (Number(rows[0].n) > 0) {
      return;
    }
    await new Promise(resolve => setTimeout(resolve, 10));
  }
  throw new Error('no connection started waiting on a lock');
}
