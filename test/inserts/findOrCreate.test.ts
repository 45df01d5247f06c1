import {
  BeforeCreate,
  Entity,
  EntityRepositoryType,
  ForeignKeyConstraintViolationException,
  Formula,
  IsolationLevel,
  ManyToOne,
  OneToOne,
  type Opt,
  PrimaryKey,
  Property,
  type Rel,
  Type,
  Unique,
  UniqueConstraintViolationException,
  ValidationError,
} from '@mikro-orm/core';
import { SqlEntityManager } from '@mikro-orm/knex';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { CoasterEntityRepository, CoasterUsageError, MultipleResultsError, TransactionRetryError, type FindOrCreateResult } from '../../src/index.js';
import { allDrivers, closeOrm, databases, postgresql, type QueryLog, type TestDatabase, type TestOrm } from '../support/databases.js';
import { Account, Address, Tag, raceEntities } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';
import { findFirstReason } from '../../src/inserts/insertPath.js';

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

/** A member whose name is required: finding one by its nick needs none. */
@Entity()
class Member {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  nick!: string;

  @Property({ type: 'string' })
  name!: string;
}

const entities = [...raceEntities, Label, Member];

/** getOrCreate's one statement on PostgreSQL (quotes removed): `select` as "found", the insert of `values` into `columns` only if it finds nothing. */
function oneStatement(table: string, select: string, columns: string, values: string): string {
  const insert = `insert into ${table} (${columns}) select ${values} where not exists (select 1 from found) on conflict do nothing returning *`;
  return `with found as (${select}), inserted as (${insert}) select *, true as created from inserted union all select *, false from found`;
}

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

    it('finds the existing row with one statement, using data only on create', async () => {
      const em = orm.em.fork();
      const created = await em.findOrCreate(Tag, { name: 'news' }, { color: 'red' });
      log.clear();
      const found = await orm.em.fork().findOrCreate(Tag, { name: 'news' }, { color: 'blue' });
      expect(found).toMatchObject({ id: created.id, color: 'red' });
      const select = 'select t0.* from tag as t0 where t0.name = ? limit ?';
      // PostgreSQL's fast path sends its select and its insert as one statement, whose insert finds the row and does not run
      expect(log.queries.map(q => q.replace(/["`]/g, ''))).toEqual([
        db.name === 'postgresql' && path.name === 'fast' ? oneStatement('tag', select, 'color, name', '?, ?') : select,
      ]);
    });

    it('a found row needs nothing that only creating needs: a required value, a collection to insert with it', async () => {
      await orm.em.fork().findOrCreate(Member, { nick: 'ada' }, { name: 'Ada' });
      await orm.em.fork().findOrCreate(Account, { name: 'acme' });
      const em = orm.em.fork();
      expect(await em.getOrCreate(Member, { nick: 'ada' })).toMatchObject({ created: false, entity: { nick: 'ada', name: 'Ada' } });
      expect(await em.getOrCreate(Account, { name: 'acme' }, { addresses: [{ email: 'a@acme.test' }] })).toMatchObject({ created: false });
      await expect(em.getOrCreate(Member, { nick: 'bob' })).rejects.toBeInstanceOf(ValidationError);
      await expect(em.getOrCreate(Account, { name: 'other' }, { addresses: [{ email: 'a@other.test' }] })).rejects.toBeInstanceOf(CoasterUsageError);
      const stored = await orm.em.fork().find(Member, {});
      expect(stored.map(({ nick, name }) => ({ nick, name }))).toEqual([{ nick: 'ada', name: 'Ada' }]);
      expect(await orm.em.fork().count(Account)).toBe(1);
      expect(await orm.em.fork().count(Address)).toBe(0);
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

/** An entity with a beforeCreate hook: it must not run when the row exists, so getOrCreate finds first. */
@Entity()
class Hooked {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @BeforeCreate()
  before(): void {
    hookCalls.push(this.name);
  }
}

/** The names {@link Hooked}'s hook saw. */
const hookCalls: string[] = [];

/** An entity with a formula, which em.find selects and `returning *` does not: getOrCreate finds first. */
@Entity()
class Scored {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Formula(alias => `${alias}.id * 2`, { type: 'integer' })
  double?: Opt<number>;
}

/** A lazy property, which em.find leaves out. */
@Entity()
class Lazy {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({ type: 'text', lazy: true, nullable: true })
  notes?: string;
}

/** An eager relation, which em.find populates. */
@Entity()
class Eager {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @ManyToOne(() => Tag, { eager: true, nullable: true })
  tag?: Tag;
}

/** The inverse side of a one-to-one, which em.find joins. */
@Entity()
class Holder {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @OneToOne(() => Passport, passport => passport.holder)
  passport?: Rel<Passport>;
}

@Entity()
class Passport {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @OneToOne(() => Holder, holder => holder.passport, { owner: true, nullable: true })
  holder?: Rel<Holder>;
}

/** A type that em.find converts in SQL. */
class Shouted extends Type<string, string> {
  override convertToJSValueSQL(key: string): string {
    return `upper(${key})`;
  }

  override getColumnType(): string {
    return 'text';
  }
}

@Entity()
class Loud {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({ type: Shouted, nullable: true })
  shout?: string;
}

/** An entity with a column named like the one statement's flag. */
@Entity()
class Flagged {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({ type: 'boolean' })
  created!: boolean;
}

describe('getOrCreate in one statement on postgresql', () => {
  let orm: TestOrm;
  let log: QueryLog;
  const select = 'select t0.* from tag as t0 where t0.name = ? limit ?';
  const statement = oneStatement('tag', select, 'name', '?');

  beforeAll(async () => {
    ({ orm, log } = await postgresql.init({ entities: [...entities, Hooked, Scored, Lazy, Eager, Holder, Passport, Loud, Flagged] }));
  });
  afterAll(() => closeOrm(orm));
  beforeEach(async () => {
    await orm.schema.clearDatabase();
    hookCalls.length = 0;
    log.clear();
  });

  /** The SQL sent since the last `log.clear()`, without quotes. */
  const sent = () => log.queries.map(q => q.replace(/"/g, ''));

  /** The state of tag's id sequence. */
  async function sequence(): Promise<unknown> {
    return (await orm.em.fork().execute('select last_value, is_called from tag_id_seq'))[0];
  }

  it('a miss: the one statement inserts the row, managed as after a flush', async () => {
    const em = orm.em.fork();
    const { entity, created } = await em.getOrCreate(Tag, { name: 'news' });
    expect(sent()).toEqual([statement]);
    expect(created).toBe(true);
    expect(em.getUnitOfWork().getById(Tag.name, entity.id)).toBe(entity);
    expect(await orm.em.fork().find(Tag, {})).toEqual([expect.objectContaining({ id: entity.id, name: 'news', color: null })]);
    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]);
  });

  it('a hit: the same statement finds the row, takes no sequence value, and merges it as em.find does', async () => {
    const { entity: stored } = await orm.em.fork().getOrCreate(Tag, { name: 'news' }, { color: 'red' });
    const before = await sequence();
    log.clear();
    const em = orm.em.fork();
    const first = await em.getOrCreate(Tag, { name: 'news' }, { color: 'blue' });
    const second = await em.getOrCreate(Tag, { name: 'news' });
    expect(sent()).toEqual([oneStatement('tag', select, 'color, name', '?, ?'), statement]);
    expect(first).toEqual({ created: false, entity: expect.objectContaining({ id: stored.id, name: 'news', color: 'red' }) });
    expect(second.entity).toBe(first.entity);
    expect(em.getUnitOfWork().getById(Tag.name, stored.id)).toBe(first.entity);
    expect(await sequence()).toEqual(before);
    expect(await orm.em.fork().find(Tag, {})).toEqual([expect.objectContaining({ id: stored.id, name: 'news', color: 'red' })]);
  });

  it('in a transaction: one round trip in a savepoint, none with savepoint: false', async () => {
    await orm.em.fork().transactional(async em => {
      expect((await em.getOrCreate(Tag, { name: 'news' })).created).toBe(true);
      expect((await em.getOrCreate(Tag, { name: 'news' })).created).toBe(false);
      expect((await em.getOrCreate(Tag, { name: 'sports' }, undefined, { savepoint: false })).created).toBe(true);
    });
    const inSavepoint = `savepoint failsafe_add; ${statement}; release savepoint failsafe_add`;
    expect(sent()).toEqual(['begin', inSavepoint, inSavepoint, statement, 'commit']);
    expect((await orm.em.fork().find(Tag, {}, { orderBy: { id: 'asc' } })).map(tag => tag.name)).toEqual(['news', 'sports']);
  });

  it('where matching several rows: MultipleResultsError, nothing inserted, no sequence value taken', async () => {
    const em = orm.em.fork();
    await em.getOrCreate(Tag, { name: 'a' }, { color: 'red' });
    await em.getOrCreate(Tag, { name: 'b' }, { color: 'red' });
    const before = await sequence();
    log.clear();
    const error = await em.getOrCreate(Tag, { color: 'red' }, { name: 'c' }, { checkUnique: false }).catch(e => e);
    expect(error).toBeInstanceOf(MultipleResultsError);
    expect(error.message).toMatch(/^getOrCreate\(Tag, \{ color: 'red' \}\) matched 2 or more rows/);
    expect(sent()).toEqual([oneStatement('tag', 'select t0.* from tag as t0 where t0.color = ? limit ?', 'color, name', '?, ?')]);
    expect(await sequence()).toEqual(before);
    expect(await orm.em.fork().count(Tag)).toBe(2);
  });

  it('a foreign key violation inside a transaction rolls back only the savepoint', async () => {
    await orm.em.fork().transactional(async em => {
      const orphan = em.getOrCreate(Address, { email: 'x@y.z' }, { account: em.getReference(Account, 404) });
      await expect(orphan).rejects.toBeInstanceOf(ForeignKeyConstraintViolationException);
      await em.getOrCreate(Tag, { name: 'after' });
    });
    expect(sent()).toContain('rollback to savepoint failsafe_add; release savepoint failsafe_add');
    expect((await orm.em.fork().find(Tag, {})).map(tag => tag.name)).toEqual(['after']);
    expect(await orm.em.fork().count(Address)).toBe(0);
  });

  it('with changes to flush, it finds first: a hit leaves them pending, as em.find does', async () => {
    await orm.em.fork().getOrCreate(Tag, { name: 'news' });
    const em = orm.em.fork();
    em.create(Account, { name: 'acme' });
    log.clear();
    const news = await em.getOrCreate(Tag, { name: 'news' });
    expect(news.created).toBe(false);
    expect(sent()).toEqual([select]);
    expect(await orm.em.fork().count(Account)).toBe(0);
    await em.flush();
    news.entity.color = 'red';
    log.clear();
    expect((await em.getOrCreate(Tag, { name: 'sports' })).created).toBe(true);
    // em.find flushes a changed Tag first (MikroORM's auto flush), as it always has
    expect(sent()).toEqual(['begin', 'update tag set color = ? where id = ?', 'commit', select, `insert into tag (name) values (?) on conflict do nothing returning *; ${select}`]);
    log.clear();
    expect((await em.getOrCreate(Tag, { name: 'weather' })).created).toBe(true);
    expect(sent()).toEqual([statement]);
  });

  it("a hit leaves no trace of the entity it would have inserted: not in its relation's inverse collection", async () => {
    const em = orm.em.fork();
    const acme = await em.findOrCreate(Account, { name: 'acme' });
    const { entity: address } = await em.getOrCreate(Address, { email: 'a@acme.test' }, { account: acme });
    const found = await em.getOrCreate(Address, { email: 'a@acme.test' }, { account: acme });
    expect(found).toEqual({ created: false, entity: address });
    expect(acme.addresses.getItems()).toEqual([address]);
    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]);
    expect((await orm.em.fork().find(Address, {})).map(({ email }) => email)).toEqual(['a@acme.test']);
  });

  it('the flag column takes another name when the entity has a column named created', async () => {
    const em = orm.em.fork();
    const made = await em.getOrCreate(Flagged, { name: 'a' }, { created: false });
    expect(made).toMatchObject({ created: true, entity: { name: 'a', created: false } });
    expect(sent()[0]).toMatch(/ select \*, true as created_ from inserted union all select \*, false from found$/);
    await em.getOrCreate(Flagged, { name: 'b' }, { created: true });
    const found = await orm.em.fork().getOrCreate(Flagged, { name: 'b' }, { created: false });
    expect(found).toMatchObject({ created: false, entity: { name: 'b', created: true } });
    const stored = await orm.em.fork().find(Flagged, {}, { orderBy: { name: 'asc' } });
    expect(stored.map(({ name, created }) => ({ name, created }))).toEqual([
      { name: 'a', created: false },
      { name: 'b', created: true },
    ]);
  });

  it.each([
    ['a lazy property', Lazy, 'notes'],
    ['an eager relation', Eager, 'tag'],
    ['an inverse one-to-one', Holder, 'passport'],
    ['a custom type converted in SQL', Loud, 'shout'],
  ] as const)('an entity with %s finds first', async (_, entity, prop) => {
    expect(findFirstReason(orm.em, orm.getMetadata().get(entity.name))).toBe(`a find loads its ${prop} otherwise than as a column of its row`);
    const created = await orm.em.fork().getOrCreate(entity, { name: 'a' });
    const found = await orm.em.fork().getOrCreate(entity, { name: 'a' });
    expect([created.created, found.created, found.entity.id]).toEqual([true, false, created.entity.id]);
    expect(sent()[0]).toMatch(/^select /);
    expect(sent().some(q => q.startsWith('with found'))).toBe(false);
  });

  it.each([
    ['a beforeCreate hook', Hooked, 'hooked', '*'],
    ['a formula', Scored, 'scored', '*, {alias}.id * 2 as double'],
  ] as const)('an entity with %s finds first, then inserts on a miss only', async (_, entity, table, columns) => {
    const created = await orm.em.fork().getOrCreate(entity, { name: 'a' });
    const found = await orm.em.fork().getOrCreate(entity, { name: 'a' });
    const selectAs = (alias: string) => `select ${alias}.${columns.replace('{alias}', alias)} from ${table} as ${alias} where ${alias}.name = ? limit ?`;
    const find = selectAs(`${table[0]}0`);
    expect(sent()).toEqual([find, `insert into ${table} (name) values (?) on conflict do nothing returning *; ${selectAs('t0')}`, find]);
    expect([created.created, found.created, found.entity.id]).toEqual([true, false, created.entity.id]);
    if (entity === Hooked) {
      expect(hookCalls).toEqual(['a']);
    } else {
      expect(found.entity).toMatchObject({ double: created.entity.id * 2 });
    }
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
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities, ...path.options() }));
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    /** a inserts `news` in a transaction; b's find misses it, b's insert waits on a's lock, a commits. */
    async function race(isolationLevel?: IsolationLevel) {
      const [a, b] = [orm.em.fork(), orm.em.fork()];
      await a.begin();
      const mine = await a.getOrCreate(Tag, { name: 'news' }, { color: 'red' });
      expect(mine.created).toBe(true);
      // a's connection, which waitForLockWait must not take for b's
      const [{ id: ownConnection }] = db.name === 'postgresql' ? [{ id: 0 }] : await a.execute<{ id: number }[]>('select connection_id() as id');
      // b's find cannot see a's uncommitted row; its insert then waits on a's lock
      const theirs = b.transactional(tx => tx.getOrCreate(Tag, { name: 'news' }, { color: 'blue' }), { isolationLevel });
      theirs.catch(() => undefined);
      await waitForLockWait(db, orm.em.fork(), ownConnection).catch(async error => {
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

    if (db.name === 'postgresql' && path.name === 'fast') {
      it('PostgreSQL: the lost race is the one statement finding and inserting nothing, then the select', async () => {
        const { mine, theirs } = await race(IsolationLevel.READ_COMMITTED);
        expect(await theirs).toMatchObject({ created: false, entity: { id: mine.id, color: 'red' } });
        const statement = oneStatement('tag', 'select t0.* from tag as t0 where t0.name = ? limit ?', 'color, name', '?, ?');
        const inSavepoint = `savepoint failsafe_add; ${statement}; release savepoint failsafe_add`;
        // a's statement, then b's, which waited for a's commit, then b's select
        expect(log.queries.map(q => q.replace(/"/g, '')).filter(q => q.includes(' tag '))).toEqual([
          inSavepoint,
          inSavepoint,
          'select t0.* from tag as t0 where t0.name = ? limit ?',
        ]);
        expect(await orm.em.fork().count(Tag)).toBe(1);
      });

      it('PostgreSQL under REPEATABLE READ: the row committed after the snapshot asks for a retry', async () => {
        const { theirs } = await race(IsolationLevel.REPEATABLE_READ);
        const error = await theirs.catch(e => e);
        expect(error).toBeInstanceOf(TransactionRetryError);
        expect(error).toMatchObject({ entityName: 'Tag', isolationLevel: 'repeatable read', cause: { code: '40001' } });
        expect(await orm.em.fork().count(Tag)).toBe(1);
      });
    }
  });
});

/**
 * Resolves once some connection to this test's database waits on a row lock (polled, at most 2 s). On MariaDB,
 * an insert still running on another connection than `holder`'s (the lock holder's): it waits on the lock, or is
 * about to (innodb_trx, refreshed every 0.1 s or so, lags). The holder's own insert, just answered, could still
 * show there under load: taken for the waiter's, it let the holder commit before the waiter's find (a CI run).
 */
async function waitForLockWait(db: TestDatabase, em: { execute: TestOrm['em']['execute'] }, holder: number): Promise<void> {
  const sql =
    db.name === 'postgresql'
      ? `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`
      : `select count(*) as n from information_schema.processlist where db = database() and info like 'insert into%' and id <> ?`;
  for (let i = 0; i < 200; i++) {
    const rows = await em.execute<{ n: string }[]>(sql, db.name === 'postgresql' ? [] : [holder]);
    if (Number(rows[0].n) > 0) {
      return;
    }
    await new Promise(resolve => setTimeout(resolve, 10));
  }
  throw new Error('no connection started waiting on a lock');
}
