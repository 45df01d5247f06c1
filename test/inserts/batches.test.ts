/**
 * Batches (issue 17): `getOrCreateMany`, `findOrCreateMany` and `failsafeAddMany` on every database and driver,
 * on the multi-row path and on the one-by-one path (an ORM with a flush subscriber), outside and inside
 * transactions. After each call the identity map and the database are checked, not only the results.
 */
import {
  AfterCreate,
  Check,
  Filter,
  UniqueConstraintViolationException,
  DriverException,
  DeadlockException,
  Entity,
  EntityRepositoryType,
  ForeignKeyConstraintViolationException,
  IsolationLevel,
  ManyToOne,
  PrimaryKey,
  Property,
  Unique,
  wrap,
} from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  CoasterEntityRepository,
  CoasterUsageError,
  ManagedKeyConflictError,
  TransactionRetryError,
  type FindOrCreateResult,
} from '../../src/index.js';
import { allDrivers, closeOrm, type QueryLog, type TestOrm } from '../support/databases.js';
import { Account, Address, Tag, raceEntities } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';

class LabelRepository extends CoasterEntityRepository<Label> {}

/** A label whose code may be missing: entities without one hold no unique key. */
@Entity({ repository: () => LabelRepository })
class Label {
  [EntityRepositoryType]?: LabelRepository;

  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string', nullable: true })
  @Unique()
  code?: string;

  @Property({ type: 'string', nullable: true })
  @Unique()
  slug?: string;
}

/** Its `afterCreate` refuses the name `broken`, once the row is inserted. */
@Entity()
class Gadget {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @AfterCreate()
  check(): void {
    if (this.name === 'broken') {
      throw new Error('Gadget.afterCreate refused broken');
    }
  }
}

/** A composite key across a relation and a scalar; hits may not be negative. */
@Entity()
@Unique({ properties: ['account', 'day'] })
@Check({ name: 'visit_hits_check', expression: 'hits >= 0' })
class Visit {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @ManyToOne(() => Account)
  account!: Account;

  @Property({ type: 'string' })
  day!: string;

  @Property({ type: 'integer', default: 0 })
  hits: number = 0;
}

/** A row hidden by a default filter still holds its unique name. */
@Entity()
@Filter({ name: 'visible', cond: { hidden: false }, default: true })
class Secret {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({ type: 'boolean', default: false })
  hidden: boolean = false;
}

const entities = [...raceEntities, Label, Gadget, Visit, Secret];

/** A quoting-free view of the log: `"tag"` and `` `tag` `` both read `tag`. */
function statements(log: QueryLog): string[] {
  return log.queries.map(q => q.replace(/["`]/g, '').replace(/ trx\d+/, ' trx'));
}

async function tagRows(orm: TestOrm): Promise<{ name: string; color: string | null }[]> {
  const tags = await orm.em.fork().find(Tag, {}, { orderBy: { name: 'asc' } });
  return tags.map(({ name, color }) => ({ name, color: color ?? null }));
}

/** Where a suite's calls run: outside a transaction, and inside one. */
const placements = [
  ['outside a transaction', false],
  ['inside a transaction', true],
] as const;

/** Runs `fn` on a fork of `orm`'s EntityManager, in a transaction if `inTransaction`. */
function runOn<R>(orm: TestOrm, inTransaction: boolean, fn: (em: TestOrm['em']) => Promise<R>): Promise<R> {
  return inTransaction ? orm.em.fork().transactional(fn) : fn(orm.em.fork());
}

/** Inserts a tag with a plain flush. */
async function seed(orm: TestOrm, values: { name: string; color?: string }): Promise<void> {
  const em = orm.em.fork();
  await em.persist(em.create(Tag, values)).flush();
}

describe.each(allDrivers)('batches on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities, ...path.options() }));
      // MariaDB: the server's version is asked once per ORM
      await orm.em.fork().getOrCreateMany(Tag, [{ name: 'warm-up' }]);
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    describe.each(placements)('%s', (_, inTransaction) => {
      const run = <R>(fn: (em: TestOrm['em']) => Promise<R>) => runOn(orm, inTransaction, fn);

      it('returns one result per row in input order, repeated keys as one row, created once', async () => {
        await seed(orm, { name: 'old', color: 'grey' });
        const results = await run(em =>
          em.getOrCreateMany(Tag, [
            { name: 'b', color: 'blue' },
            { name: 'old', color: 'red' },
            { name: 'a' },
            { name: 'b', color: 'ignored' },
          ]),
        );
        expectTypeOf(results).toEqualTypeOf<FindOrCreateResult<Tag>[]>();
        expect(results.map(({ entity, created }) => [entity.name, entity.color ?? null, created])).toEqual([
          ['b', 'blue', true],
          ['old', 'grey', false],
          ['a', null, true],
          ['b', 'blue', false],
        ]);
        expect(results[3].entity).toBe(results[0].entity);
        expect(await tagRows(orm)).toEqual([
          { name: 'a', color: null },
          { name: 'b', color: 'blue' },
          { name: 'old', color: 'grey' },
        ]);
      });

      it('leaves new entities managed with their snapshot and found ones as the managed instances', async () => {
        const em = orm.em.fork();
        const loaded = await em.findOrCreate(Tag, { name: 'old' }, { color: 'grey' });
        loaded.color = 'unflushed';
        const work = async (tx: TestOrm['em']) => {
          const results = await tx.getOrCreateMany(Tag, [{ name: 'old' }, { name: 'new', color: 'red' }]);
          expect(results[0].entity).toBe(loaded);
          expect(loaded.color).toBe('unflushed');
          return results;
        };
        const results = inTransaction ? await em.transactional(work) : await work(em);
        const created = results[1].entity;
        expect(created.id).toBeTypeOf('number');
        expect(em.getUnitOfWork().getById(Tag.name, created.id)).toBe(created);
        expect(wrap(created).isManaged()).toBe(true);
        log.clear();
        await em.flush();
        // the call flushed the pending change first, as a find does, and kept it: a later flush sends nothing
        expect(log.queries).toEqual([]);
        expect(await tagRows(orm)).toEqual([
          { name: 'new', color: 'red' },
          { name: 'old', color: 'unflushed' },
        ]);
      });

      it('names the row a foreign key refuses, writes none of the call, and leaves the transaction usable', async () => {
        const account = await orm.em.fork().findOrCreate(Account, { name: 'ada' });
        const em = orm.em.fork();
        const attempt = async (tx: TestOrm['em']) => {
          const call = tx.getOrCreateMany(Address, [
            { email: 'a@example.com', account: account.id },
            { email: 'b@example.com', account: 9999 },
            { email: 'c@example.com', account: account.id },
          ]);
          await expect(call).rejects.toBeInstanceOf(ForeignKeyConstraintViolationException);
          await expect(call).rejects.toThrow(/getOrCreateMany\(Address\): the database refused rows\[1\] \{ email: 'b@example.com', account: 9999 \}/);
          // the caller's transaction goes on
          await tx.getOrCreateMany(Tag, [{ name: 'after' }]);
        };
        if (inTransaction) {
          await em.transactional(attempt);
        } else {
          await attempt(em);
        }
        expect(await orm.em.fork().count(Address)).toBe(0);
        expect(await tagRows(orm)).toEqual([{ name: 'after', color: null }]);
        expect(em.getUnitOfWork().getIdentityMap().getStore(orm.getMetadata().get(Address.name)).size).toBe(0);
      });

      it('names the row a CHECK constraint refuses, in a chunk of several statements, writing none', async () => {
        const account = await orm.em.fork().findOrCreate(Account, { name: 'ada' });
        const rows = ['a', 'b', 'c', 'd', 'e'].map((day, i) => ({ account: account.id, day, hits: day === 'd' ? -1 : i }));
        const call = run(em => em.getOrCreateMany(Visit, rows, { chunkSize: 2 }));
        // MikroORM's MySQL driver maps MariaDB's CHECK errno (4025) to a plain DriverException
        await expect(call).rejects.toBeInstanceOf(DriverException);
        await expect(call).rejects.toThrow(/getOrCreateMany\(Visit\): the database refused rows\[3\] \{ account: \d+, day: 'd', hits: -1 \}/);
        expect(await orm.em.fork().count(Visit)).toBe(0);
      });

      it('works in chunks, in key order, reporting progress', async () => {
        const progress: [number, number][] = [];
        const names = ['e', 'c', 'a', 'd', 'b'];
        const results = await run(em =>
          em.getOrCreateMany(Tag, names.map(name => ({ name })), { chunkSize: 2, progress: (done, total) => progress.push([done, total]) }),
        );
        expect(results.map(r => [r.entity.name, r.created])).toEqual(names.map(name => [name, true]));
        expect(progress).toEqual([
          [2, 5],
          [4, 5],
          [5, 5],
        ]);
        expect(statements(log).filter(q => q.startsWith('insert')).length).toBe(path.name === 'fast' ? 3 : 5);
        // ids follow the key order, whatever the input order
        const ids = results.map(r => r.entity.id);
        expect([...results].sort((x, y) => (x.entity.name < y.entity.name ? -1 : 1)).map(r => r.entity.id)).toEqual([...ids].sort((x, y) => x - y));
      });

      it('findOrCreateMany returns the entities, and the repository offers the three methods', async () => {
        const tags = await run(em => em.findOrCreateMany(Tag, [{ name: 'x' }, { name: 'y' }]));
        expectTypeOf(tags).toEqualTypeOf<Tag[]>();
        expect(tags.map(t => t.name)).toEqual(['x', 'y']);
        await run(async em => {
          const labels = em.getRepository(Label);
          const [a] = await labels.findOrCreateMany([{ code: 'a' }]);
          expect(await labels.getOrCreateMany([{ code: 'a' }, { code: 'b' }])).toEqual([
            { entity: a, created: false },
            { entity: expect.objectContaining({ code: 'b' }), created: true },
          ]);
          const added = await labels.failsafeAddMany([em.create(Label, { code: 'c' }, { persist: false })]);
          expect(added[0]).toMatchObject({ code: 'c' });
        });
        expect(await orm.em.fork().count(Label)).toBe(3);
      });

      it('failsafeAddMany returns the instances it inserted and the stored rows of duplicates', async () => {
        await seed(orm, { name: 'old', color: 'grey' });
        const em = orm.em.fork();
        // not persisted by em.create: the transaction's fork, not `em`, would take them out of the persist stack
        const fresh = em.create(Tag, { name: 'fresh' }, { persist: false });
        const duplicate = em.create(Tag, { name: 'old', color: 'red' }, { persist: false });
        const twin = em.create(Tag, { name: 'fresh', color: 'twin' }, { persist: false });
        const work = (tx: TestOrm['em']) => tx.failsafeAddMany([fresh, duplicate, twin]);
        const added = inTransaction ? await em.transactional(work) : await work(em);
        expect(added[0]).toBe(fresh);
        expect(added[1]).toMatchObject({ name: 'old', color: 'grey' });
        expect(added[2]).toBe(fresh);
        expect(wrap(duplicate).isManaged()).toBe(false);
        expect(wrap(twin).isManaged()).toBe(false);
        log.clear();
        await em.flush();
        expect(log.queries).toEqual([]);
        expect(await tagRows(orm)).toEqual([
          { name: 'fresh', color: null },
          { name: 'old', color: 'grey' },
        ]);
      });

      it('failsafeAddMany takes entities that em.create persisted, and a later flush sends nothing', async () => {
        const em = orm.em.fork();
        const work = async (tx: TestOrm['em']) => {
          const tags = ['p', 'q'].map(name => tx.create(Tag, { name }));
          expect(await tx.failsafeAddMany(tags)).toEqual(tags);
          log.clear();
          await tx.flush();
          expect(log.queries).toEqual([]);
        };
        await (inTransaction ? em.transactional(work) : work(em));
        expect(await tagRows(orm)).toEqual([
          { name: 'p', color: null },
          { name: 'q', color: null },
        ]);
      });

      it('failsafeAddMany without a key every entity holds inserts one by one, duplicates resolving to undefined', async () => {
        const em = orm.em.fork();
        const entities = [{ code: 'a' }, {}, { code: 'a' }].map(values => em.create(Label, values, { persist: false }));
        const work = (tx: TestOrm['em']) => tx.failsafeAddMany(entities);
        const added = inTransaction ? await em.transactional(work) : await work(em);
        expect(added).toEqual([entities[0], entities[1], undefined]);
        expect(await orm.em.fork().count(Label)).toBe(2);
      });

      it('leaves no row of the call when an afterCreate hook throws', async () => {
        const call = run(em => em.getOrCreateMany(Gadget, [{ name: 'fine' }, { name: 'broken' }]));
        await expect(call).rejects.toThrow(/Gadget.afterCreate refused broken/);
        expect(await orm.em.fork().count(Gadget)).toBe(0);
      });

      it('takes a composite key over a relation, given as an entity or a primary key', async () => {
        const account = await orm.em.fork().findOrCreate(Account, { name: 'ada' });
        const results = await run(em =>
          em.getOrCreateMany(Visit, [
            { account: account.id, day: 'mon', hits: 1 },
            { account: em.getReference(Account, account.id), day: 'mon', hits: 2 },
            { account: account.id, day: 'tue' },
          ]),
        );
        expect(results.map(r => [r.entity.day, r.entity.hits, r.created])).toEqual([
          ['mon', 1, true],
          ['mon', 1, false],
          ['tue', 0, true],
        ]);
        expect(results[1].entity).toBe(results[0].entity);
        expect(await orm.em.fork().count(Visit)).toBe(2);
      });
    });

    it('emits the documented statements', async () => {
      await seed(orm, { name: 'b' });
      log.clear();
      const em = orm.em.fork();
      const results = await em.getOrCreateMany(Tag, [{ name: 'c' }, { name: 'b' }, { name: 'a' }]);
      // on PostgreSQL and SQLite the keys, and the rows to insert, go as one JSON document each
      const jsonSelect = 'select t0.* from json_populate_recordset(null::tag, ?) as keys cross join lateral (select * from tag as t0 where t0.name = keys.name offset 0) as t0';
      const sqliteSelect = "select t0.* from json_each(?) as keys cross join tag as t0 where t0.name = json_extract(keys.value, '$[0]')";
      const oneByOne = ['begin', 'savepoint trx', 'insert into tag (name) values (?) returning id', 'release savepoint trx', 'savepoint trx', 'insert into tag (name) values (?) returning id', 'release savepoint trx', 'commit'];
      const expected: Record<string, string[]> = {
        'fast postgresql': [
          jsonSelect,
          'begin',
          'insert into tag (name) select name from json_populate_recordset(null::tag, ?) on conflict (name) do nothing returning *',
          'commit',
        ],
        'fast sqlite': [
          sqliteSelect,
          'begin',
          "insert into tag (name) select json_extract(value, '$[0]') from json_each(?) where true on conflict (name) do nothing returning *",
          'commit',
        ],
        'fast mysql': [
          'select t0.* from tag as t0 where t0.name in (?, ?, ?)',
          'set transaction isolation level read committed',
          'begin',
          'insert into tag (name) values (?), (?) returning *',
          'commit',
        ],
        'savepoint postgresql': [jsonSelect, ...oneByOne],
        'savepoint sqlite': [sqliteSelect, ...oneByOne],
        'savepoint mysql': [
          'select t0.* from tag as t0 where t0.name in (?, ?, ?)',
          'set transaction isolation level read committed',
          'begin',
          'savepoint trx',
          'insert into tag (name) values (?)',
          'release savepoint trx',
          'savepoint trx',
          'insert into tag (name) values (?)',
          'release savepoint trx',
          'commit',
        ],
      };
      const family = db.name === 'sqlite' ? ' sqlite' : db.name === 'mariadb' || db.name === 'mysql' ? ' mysql' : ' postgresql';
      expect(statements(log)).toEqual(expected[`${path.name}${family}`]);
      expect(results.map(({ entity, created }) => [entity.name, created])).toEqual([
        ['c', true],
        ['b', false],
        ['a', true],
      ]);
      for (const { entity } of results) {
        expect(em.getUnitOfWork().getById(Tag.name, entity.id)).toBe(entity);
      }
      expect(await tagRows(orm)).toEqual(['a', 'b', 'c'].map(name => ({ name, color: null })));
    });

    it('an empty array resolves to [] without SQL', async () => {
      expect(await orm.em.fork().getOrCreateMany(Tag, [])).toEqual([]);
      expect(await orm.em.fork().failsafeAddMany([])).toEqual([]);
      expect(log.queries).toEqual([]);
    });

    it.each([
      ['not an array', () => orm.em.fork().getOrCreateMany(Tag, 'news' as never), /takes an array/],
      ['a row that is not an object', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a' }, 7 as never]), /rows\[1\] is 7/],
      ['an unknown property', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a', colour: 'x' } as never]), /'colour' is not a property/],
      ['an operator in the key', () => orm.em.fork().getOrCreateMany(Tag, [{ name: { $like: 'a%' } } as never]), /query operator/],
      ['a row without the key', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a' }, { color: 'x' }], { uniqueBy: ['name'] }), /rows\[1\].*uniqueBy \[ 'name' \]/],
      ['no key held by every row', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a' }, { color: 'x' }]), /none of Tag's unique keys/],
      ['several keys held', () => orm.em.fork().getOrCreateMany(Label, [{ code: 'a', slug: 'a' }]), /several of Label's unique keys have values in every row \(code; slug\)/],
      ['a uniqueBy that is no unique key', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a', color: 'x' }], { uniqueBy: ['color'] }), /uniqueBy \[ 'color' \] is not the properties of one of Tag's unique keys/],
      ['a uniqueBy wider than a key', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a', color: 'x' }], { uniqueBy: ['name', 'color'] }), /is not the properties of one/],
      ['a uniqueBy naming no property', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a' }], { uniqueBy: ['nom' as never] }), /uniqueBy names 'nom'/],
      ['a bad chunkSize', () => orm.em.fork().getOrCreateMany(Tag, [{ name: 'a' }], { chunkSize: 0 }), /chunkSize must be a positive integer/],
      ['failsafeAddMany of a plain object', () => orm.em.fork().failsafeAddMany([{ name: 'a' }]), /needs an entity instance/],
      ['failsafeAddMany of an entity without the key', () => orm.em.fork().failsafeAddMany([new Tag()], { uniqueBy: ['name'] }), /entities\[0\] Tag \{\} has no non-null value/],
      ['failsafeAddMany of two classes', () => orm.em.fork().failsafeAddMany<object>([new Tag(), new Label()]), /entities\[1\] a Label/],
    ])('refuses %s with a usage error before any SQL', async (_, call, message) => {
      await expect(call()).rejects.toBeInstanceOf(CoasterUsageError);
      await expect(call()).rejects.toThrow(message);
      expect(log.queries).toEqual([]);
    });

    it('returns a managed entity with the row\'s primary key and key without SQL, and refuses one with another key', async () => {
      const em = orm.em.fork();
      const [label] = await em.findOrCreateMany(Label, [{ code: 'a' }]);
      log.clear();
      const [same] = await em.getOrCreateMany(Label, [{ id: label.id, code: 'a' }], { uniqueBy: ['code'] });
      expect(same).toEqual({ entity: label, created: false });
      expect(log.queries).toEqual([]);
      const call = em.getOrCreateMany(Label, [{ id: label.id, code: 'b' }], { uniqueBy: ['code'] });
      await expect(call).rejects.toBeInstanceOf(ManagedKeyConflictError);
      expect(log.queries).toEqual([]);
      expect(label.code).toBe('a');
    });

    if (path.name === 'fast') it('binds at most 32,766 values per statement, whatever chunkSize says', async () => {
      // three columns: 10,922 rows per chunk (on SQLite a chunk written value by value takes statements of 500 rows:
      // batchStatements.test.ts)
      const names = Array.from({ length: 11_000 }, (_, i) => ({ name: `n${String(i).padStart(5, '0')}` }));
      const results = await orm.em.fork().getOrCreateMany(Tag, names, { chunkSize: 100_000 });
      expect(results.every(result => result.created)).toBe(true);
      expect(statements(log).filter(q => q.startsWith('insert')).length).toBe(2);
      expect(await orm.em.fork().count(Tag)).toBe(11_000);
    });

    if (path.name === 'fast' && db.name === 'postgresql') it('inside a transaction, works in a savepoint', async () => {
      await seed(orm, { name: 'b' });
      log.clear();
      await orm.em.fork().transactional(em => em.getOrCreateMany(Tag, [{ name: 'b' }, { name: 'a' }]));
      expect(statements(log)).toEqual([
        'begin',
        'select t0.* from json_populate_recordset(null::tag, ?) as keys cross join lateral (select * from tag as t0 where t0.name = keys.name offset 0) as t0',
        'savepoint trx',
        // a single row keeps its template
        'insert into tag (name) values (?) on conflict (name) do nothing returning *',
        'release savepoint trx',
        'commit',
      ]);
    });

    it('rejects with the database\'s unique violation a key whose row a filter hides, never silently', async () => {
      await orm.em.fork().insert(Secret, { name: 'hidden', hidden: true });
      log.clear();
      const call = orm.em.fork().getOrCreateMany(Secret, [{ name: 'shown' }, { name: 'hidden' }]);
      await expect(call).rejects.toBeInstanceOf(UniqueConstraintViolationException);
      if (path.name === 'fast' && (db.name === 'postgresql' || db.name === 'sqlite')) {
        // the select misses it, two rounds of insert-and-select skip it, then an insert without ON CONFLICT lets
        // the database name it
        expect(statements(log).map(q => q.split(' ')[0])).toEqual(['select', 'begin', 'insert', 'select', 'insert', 'select', 'insert', 'rollback']);
      }
      expect(await orm.em.fork().count(Secret, {}, { filters: false })).toBe(1);
    });

    it('takes the one key every row holds by default, and uniqueBy to choose', async () => {
      const [byCode] = await orm.em.fork().getOrCreateMany(Label, [{ code: 'a', slug: 'x' }], { uniqueBy: ['code'] });
      const [again] = await orm.em.fork().getOrCreateMany(Label, [{ code: 'a', slug: 'y' }], { uniqueBy: ['code'] });
      expect(again).toMatchObject({ created: false, entity: { id: byCode.entity.id, slug: 'x' } });
      const [bySlug] = await orm.em.fork().getOrCreateMany(Label, [{ slug: 'x' }]);
      expect(bySlug).toMatchObject({ created: false, entity: { id: byCode.entity.id } });
    });
  });

  describe('keys the database compares otherwise than exactly', () => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities }));
      const em = orm.em.fork();
      // the tag's name compared case-insensitively, in each database's own way: SQLite's NOCASE, PostgreSQL's citext,
      // MariaDB's default collation
      if (db.name === 'sqlite') {
        await em.execute('drop table `tag`');
        await em.execute('create table `tag` (`id` integer not null primary key autoincrement, `name` text collate nocase not null, `color` text null)');
        await em.execute('create unique index `tag_name_unique` on `tag` (`name`)');
      } else if (db.name === 'postgresql') {
        await em.execute('create extension if not exists citext');
        await em.execute('alter table "tag" alter column "name" type citext');
      }
      await em.getOrCreateMany(Tag, [{ name: 'probe' }]);
      expect(await em.fork().count(Tag, { name: 'PROBE' })).toBe(1);
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    const names = async () => (await orm.em.fork().find(Tag, {}, { orderBy: { id: 'asc' } })).map(tag => tag.name);

    /** Each of `entities` is `em`'s managed instance of its row, and a flush sends nothing: memory holds what is stored. */
    async function expectManagedAsStored(em: TestOrm['em'], entities: Tag[]): Promise<void> {
      for (const entity of entities) {
        expect(em.getUnitOfWork().getById(Tag.name, entity.id)).toBe(entity);
      }
      log.clear();
      await em.flush();
      expect(log.queries).toEqual([]);
    }

    describe.each(placements)('%s', (_, inTransaction) => {
      const run = <R>(fn: (em: TestOrm['em']) => Promise<R>) => runOn(orm, inTransaction, fn);

      it('returns the stored row for a key that differs from it only by case, and creates the others', async () => {
        const ada = (await orm.em.fork().getOrCreate(Tag, { name: 'ada' })).entity;
        const em = orm.em.fork();
        const call = (tx: TestOrm['em']) => tx.getOrCreateMany(Tag, [{ name: 'Ada' }, { name: 'bob' }]);
        const results = await (inTransaction ? em.transactional(call) : call(em));
        expect(results.map(({ entity, created }) => [entity.id, entity.name, created])).toEqual([
          [ada.id, 'ada', false],
          [expect.any(Number), 'bob', true],
        ]);
        for (const { entity } of results) {
          expect(em.getUnitOfWork().getById(Tag.name, entity.id)).toBe(entity);
        }
        log.clear();
        await em.flush();
        expect(log.queries).toEqual([]);
        expect(await names()).toEqual(['ada', 'bob']);
      });

      it('makes keys of one call that the database holds equal one row, created once, one instance', async () => {
        const results = await run(async em => {
          const results = await em.getOrCreateMany(Tag, [{ name: 'cat' }, { name: 'CAT' }, { name: 'dog' }, { name: 'Cat' }]);
          await expectManagedAsStored(em, results.map(result => result.entity));
          return results;
        });
        const [cat, CAT, dog, Cat] = results;
        expect(CAT.entity).toBe(cat.entity);
        expect(Cat.entity).toBe(cat.entity);
        expect([cat, CAT, Cat].filter(result => result.created)).toHaveLength(1);
        expect(dog.created).toBe(true);
        const stored = await names();
        expect(stored).toHaveLength(2);
        expect(stored).toContain(cat.entity.name);
        expect(stored).toContain('dog');
      });

      it('failsafeAddMany inserts the first of such keys and resolves the others to its entity', async () => {
        const entities = ['dan', 'DAN'].map(name => Object.assign(new Tag(), { name }));
        const results = await run(async em => {
          const results = await em.failsafeAddMany(entities);
          await expectManagedAsStored(em, [entities[1]]);
          return results;
        });
        // key order: 'DAN' before 'dan'; the other entity is detached
        expect(results).toEqual([entities[1], entities[1]]);
        expect(wrap(entities[0]).isManaged()).toBe(false);
        expect(await names()).toEqual(['DAN']);
      });

      it('stores a key with a lone surrogate as the database does, and returns that row', async () => {
        const results = await run(async em => {
          const results = await em.getOrCreateMany(Tag, [{ name: 'x\ud800' }, { name: 'y' }]);
          await expectManagedAsStored(em, results.map(result => result.entity)); // U+FFFD in memory too
          return results;
        });
        expect(results.map(({ entity, created }) => [entity.name, created])).toEqual([
          ['x\ufffd', true],
          ['y', true],
        ]);
        expect(await names()).toEqual(['x\ufffd', 'y']);
      });
    });

    // SQLite serialises its writers (and this in-memory database has one connection): nothing races there
    if (db.name !== 'sqlite') it('ends racing callers whose keys differ in case with one row and one created flag per key', async () => {
      const keys = Array.from({ length: 30 }, (_, i) => `key${i}`);
      const spellings = [(key: string) => key, (key: string) => key.toUpperCase(), (key: string) => key[0].toUpperCase() + key.slice(1)];
      const results = await Promise.all(spellings.flatMap(spell => [spell, spell]).map(spell => orm.em.fork().getOrCreateMany(Tag, keys.map(key => ({ name: spell(key) })))));
      expect(results.flat().filter(result => result.created)).toHaveLength(keys.length);
      expect((await names()).map(name => name.toLowerCase()).sort()).toEqual([...keys].sort());
    });

    it('refuses with a usage error, inside a transaction without a savepoint, once it wrote rows it cannot undo', async () => {
      const error = await orm.em
        .fork()
        .transactional(em => em.getOrCreateMany(Tag, [{ name: 'CAT' }, { name: 'cat' }], { savepoint: false, chunkSize: 1 }))
        .catch(e => e);
      expect(error).toBeInstanceOf(CoasterUsageError);
      expect(error.message).toMatch(/getOrCreateMany\(Tag\): the database matched a key .* Roll the transaction back/);
      expect(await names()).toEqual([]);
    });
  });

  describe('racing', () => {
    const WORKERS = 8;
    const KEYS = 60;
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      // SQLite's in-memory database lives on one connection: its callers take turns
      ({ orm, log } = await db.init({ entities, pool: { min: 0, max: db.name === 'sqlite' ? 1 : WORKERS + 2 } }));
    });
    afterAll(() => closeOrm(orm));

    it.each([
      ['outside transactions', false],
      ['inside transactions', true],
    ])(`${WORKERS} callers on shuffled overlapping keys %s end with one row per key, created once`, async (_, inTransaction) => {
      await orm.schema.clearDatabase();
      log.clear();
      const keys = Array.from({ length: KEYS }, (_, i) => `key-${String(i).padStart(3, '0')}`);
      // each worker takes an overlapping window of the keys, shuffled deterministically
      const batches = Array.from({ length: WORKERS }, (_, worker) => {
        const window = keys.filter((_, i) => (i + worker) % 3 !== 0);
        return window.map((name, i) => ({ name, order: (i * 7919 + worker * 104729) % 1000 })).sort((a, b) => a.order - b.order).map(({ name }) => ({ name }));
      });
      let deadlocks = 0;
      const results = await Promise.all(
        batches.map(async rows => {
          if (!inTransaction) {
            return orm.em.fork().getOrCreateMany(Tag, rows, { chunkSize: 16 });
          }
          // READ COMMITTED, MariaDB's default being REPEATABLE READ (whose snapshot would hide the rows racing
          // callers commit: TransactionRetryError); a deadlock (InnoDB's duplicate-key locks) rolls the caller's
          // transaction back: the caller retries it
          for (;;) {
            try {
              return await orm.em
                .fork()
                .transactional(tx => tx.getOrCreateMany(Tag, rows, { chunkSize: 16 }), { isolationLevel: IsolationLevel.READ_COMMITTED });
            } catch (error) {
              if (!(error instanceof DeadlockException) || db.name === 'postgresql') {
                throw error;
              }
              deadlocks++;
            }
          }
        }),
      );
      console.log(`${db.name} ${inTransaction ? 'inside' : 'outside'} transactions: ${deadlocks} deadlocks retried by the callers`);
      const stored = await orm.em.fork().find(Tag, {});
      const idOf = new Map(stored.map(tag => [tag.name, tag.id]));
      expect(stored.length).toBe(new Set(batches.flat().map(row => row.name)).size);
      const createdPerKey = new Map<string, number>();
      results.forEach((rows, worker) =>
        rows.forEach((result, i) => {
          expect(result.entity.name).toBe(batches[worker][i].name);
          expect(result.entity.id).toBe(idOf.get(result.entity.name));
          createdPerKey.set(result.entity.name, (createdPerKey.get(result.entity.name) ?? 0) + (result.created ? 1 : 0));
        }),
      );
      expect([...createdPerKey.values()].every(count => count === 1)).toBe(true);
      expect(createdPerKey.size).toBe(stored.length);
    });

    if (db.name !== 'sqlite') it('throws TransactionRetryError for a key that a REPEATABLE READ snapshot hides', async () => {
      await orm.schema.clearDatabase();
      const em = orm.em.fork();
      await em.begin({ isolationLevel: IsolationLevel.REPEATABLE_READ });
      try {
        await em.count(Account); // takes the snapshot
        await orm.em.fork().getOrCreateMany(Tag, [{ name: 'hidden' }]);
        await expect(em.getOrCreateMany(Tag, [{ name: 'hidden' }, { name: 'visible' }])).rejects.toBeInstanceOf(TransactionRetryError);
      } finally {
        await em.rollback();
      }
      expect(await tagRows(orm)).toEqual([{ name: 'hidden', color: null }]);
    });
  });
});
