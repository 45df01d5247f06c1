/**
 * The edges where race-safe inserts used to resolve while memory and database disagreed: natural keys of
 * managed entities, lookups that change managed entities, ambiguous or nested `where`, violations that are
 * not duplicates, pending dependents, snapshot isolation and replicas. Every test compares the identity
 * map and the rows, not only what the call returned.
 */
import {
  Check,
  CheckConstraintViolationException,
  DriverException,
  Embeddable,
  Embedded,
  Entity,
  ForeignKeyConstraintViolationException,
  IsolationLevel,
  ManyToOne,
  NotNullConstraintViolationException,
  PrimaryKey,
  Property,
  type RequiredEntityData,
  Unique,
  UniqueConstraintViolationException,
} from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { CoasterUsageError, ManagedKeyConflictError, MultipleResultsError, TransactionRetryError } from '../../src/index.js';
import { allDrivers, closeOrm, postgresql, type QueryLog, type TestOrm } from '../support/databases.js';
import { Account, Address, Tag, raceEntities } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';

/** A user whose primary key is a natural key chosen by the application. */
@Entity()
class Member {
  @PrimaryKey({ type: 'string' })
  nick!: string;

  @Property({ type: 'string' })
  @Unique()
  email!: string;

  @Property({ type: 'string', nullable: true })
  name?: string;
}

/** A post whose tag is optional: a NULL foreign key is a legal, and silent, way to lose the link. */
@Entity()
class Post {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  title!: string;

  @ManyToOne(() => Tag, { nullable: true })
  tag?: Tag;
}

/** A product whose price the database checks. */
@Entity()
@Check({ name: 'product_price_positive', expression: 'price > 0' })
class Product {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  sku!: string;

  @Property({ type: 'integer' })
  price!: number;

  /** Required in the database; `validateRequired: false` lets a missing value reach it. */
  @Property({ type: 'string' })
  label!: string;
}

/** A venue's address, stored in the venue's own columns. */
@Embeddable()
class VenueAddress {
  @Property({ type: 'string' })
  city!: string;

  @Property({ type: 'string', nullable: true })
  street?: string;
}

/** A venue located by an embedded address: `where` may name the embeddable's properties. */
@Entity()
@Unique({ properties: ['name', 'address.city'] })
class Venue {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  name!: string;

  @Embedded(() => VenueAddress)
  address!: VenueAddress;
}

const entities = [...raceEntities, Member, Post, Product, Venue];

/** Inserts rows through an EntityManager of their own. */
async function seed<T extends object>(orm: TestOrm, entity: new () => T, ...data: RequiredEntityData<T>[]): Promise<void> {
  const em = orm.em.fork();
  data.forEach(row => em.create(entity, row));
  await em.flush();
}

describe.each(allDrivers)('race-safe inserts at the edges on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities, validateRequired: false, ...path.options() }));
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    /** Every row of an entity, read by a fresh EntityManager. */
    async function rows<T extends object>(entity: new () => T, orderBy: string): Promise<Record<string, unknown>[]> {
      const found = await orm.em.fork().find(entity, {}, { orderBy: { [orderBy]: 'asc' } as never });
      return found.map(row => ({ ...row }));
    }

    async function seedMember(): Promise<void> {
      await seed(orm, Member, { nick: 'ada', email: 'ada@example.com', name: 'Ada' });
    }

    describe('a new instance with the primary key of a managed entity (1)', () => {
      it.each([
        ['failsafeAdd', (em: TestOrm['em'], m: Member) => em.failsafeAdd(m, { nick: 'ada' })],
        ['addAndCommit', (em: TestOrm['em'], m: Member) => em.addAndCommit(m, { nick: 'ada' })],
      ])('%s returns the managed instance, which keeps its values, its place and its later changes', async (_, add) => {
        await seedMember();
        const em = orm.em.fork();
        const managed = await em.findOneOrFail(Member, { nick: 'ada' });
        managed.name = 'Countess';
        const candidate = new Member();
        Object.assign(candidate, { nick: 'ada', email: 'ada@example.com', name: 'Impostor' });

        const result = await add(em, candidate);

        expect(result).toBe(managed);
        expect(managed.name).toBe('Countess');
        expect(em.getUnitOfWork().getById(Member.name, 'ada')).toBe(managed);
        managed.name = 'Lovelace';
        await em.flush();
        expect(await rows(Member, 'nick')).toEqual([{ nick: 'ada', email: 'ada@example.com', name: 'Lovelace' }]);
        await em.flush();
        expect(await orm.em.fork().count(Member)).toBe(1);
      });

      it('failsafeAdd without filters ignores the duplicate and leaves the managed entity alone', async () => {
        await seedMember();
        const em = orm.em.fork();
        const managed = await em.findOneOrFail(Member, { nick: 'ada' });
        const candidate = Object.assign(new Member(), { nick: 'ada', email: 'other@example.com' });
        expect(await em.failsafeAdd(candidate)).toBeUndefined();
        expect(em.getUnitOfWork().getById(Member.name, 'ada')).toBe(managed);
        managed.name = 'Lovelace';
        await em.flush();
        expect(await rows(Member, 'nick')).toEqual([{ nick: 'ada', email: 'ada@example.com', name: 'Lovelace' }]);
      });

      it('failsafeAdd of a natural key loaded by another EntityManager recovers the row as usual', async () => {
        await seedMember();
        const em = orm.em.fork();
        const candidate = Object.assign(new Member(), { nick: 'ada', email: 'ada@example.com' });
        const result = await em.failsafeAdd(candidate, { nick: 'ada' });
        expect(result).not.toBe(candidate);
        expect(result).toMatchObject({ nick: 'ada', name: 'Ada' });
        expect(em.getUnitOfWork().getById(Member.name, 'ada')).toBe(result);
      });
    });

    describe('a lookup never changes a managed entity (2)', () => {
      it('getOrCreate whose where matches the managed entity returns it, created: false', async () => {
        await seedMember();
        const em = orm.em.fork();
        const managed = await em.findOneOrFail(Member, { nick: 'ada' });
        const result = await em.getOrCreate(Member, { nick: 'ada', name: 'Ada' }, { email: 'ignored@example.com' });
        expect(result).toEqual({ entity: managed, created: false });
        expect(managed.email).toBe('ada@example.com');
      });

      it('failsafeAdd(em.create(E, { existingKey })) is refused, naming the merge MikroORM made', async () => {
        await seedMember();
        const em = orm.em.fork();
        await em.findOneOrFail(Member, { nick: 'ada' });
        const merged = em.create(Member, { nick: 'ada', email: 'ada@example.com', name: 'Merged' });
        const error = await em.failsafeAdd(merged, { nick: 'ada' }).catch(e => e);
        expect(error).toBeInstanceOf(CoasterUsageError);
        expect(error.message).toMatch(/MikroORM merged `data` into the managed entity: call em.refresh\(\)/);
        await em.refresh(merged);
        expect(merged.name).toBe('Ada');
      });
    });

    describe('the same conflict gives the same error class, whether or not the key is managed (issue 15)', () => {
      /** A new Member with ada's key but another e-mail; the filters match no row. */
      const impostor = () => Object.assign(new Member(), { nick: 'ada', email: 'new@example.com' });
      const conflicts: [string, (em: TestOrm['em']) => Promise<unknown>][] = [
        ['getOrCreate', em => em.getOrCreate(Member, { nick: 'ada', name: 'Different' }, { email: 'new@example.com' })],
        ['findOrCreate', em => em.findOrCreate(Member, { nick: 'ada', name: 'Different' }, { email: 'new@example.com' })],
        ['failsafeAdd', em => em.failsafeAdd(impostor(), { email: 'new@example.com' })],
        ['addAndCommit', em => em.addAndCommit(impostor(), { email: 'new@example.com' })],
      ];

      it.each(conflicts.flatMap(([method, call]) => [false, true].map(inTransaction => ({ method, call, inTransaction }))))(
        '$method (in a transaction: $inTransaction): a UniqueConstraintViolationException, row and managed entity untouched',
        async ({ method, call, inTransaction }) => {
          await seedMember();
          const ada = { nick: 'ada', email: 'ada@example.com', name: 'Ada' };
          for (const loaded of [false, true]) {
            const em = orm.em.fork();
            let managed: Member | undefined;
            log.clear();
            const attempt = async (tx: TestOrm['em']) => {
              managed = loaded ? await tx.findOneOrFail(Member, { nick: 'ada' }) : undefined;
              const error = await call(tx).then(() => undefined, (e: Error) => e);
              await tx.count(Member); // the caller's transaction is still usable
              return error;
            };
            const error = inTransaction ? await em.transactional(attempt) : await attempt(em);

            expect(error).toBeInstanceOf(UniqueConstraintViolationException);
            if (loaded) {
              // nothing sent: the managed entity is the duplicate
              expect(error).toBeInstanceOf(ManagedKeyConflictError);
              expect(error).toMatchObject({ entityName: 'Member', primaryKey: 'ada', code: undefined });
              expect(error?.message).toMatch(
                new RegExp(`^${method === 'addAndCommit' ? 'failsafeAdd' : method}\\(Member, .*already manages as a Member that does not match`),
              );
              expect(log.statements.filter(q => q.startsWith('insert'))).toEqual([]);
              expect({ ...managed }).toEqual(ada);
              expect(em.getUnitOfWork().getById(Member.name, 'ada')).toBe(managed);
            } else {
              // the database refused the insert
              expect(error?.constructor).toBe(UniqueConstraintViolationException);
              expect(em.getUnitOfWork().getById(Member.name, 'ada')).toBeUndefined();
            }
            log.clear();
            await em.flush();
            expect(log.queries).toEqual([]);
            expect(await rows(Member, 'nick')).toEqual([ada]);
          }
        },
      );

      it('filters matching several rows: MultipleResultsError caused by a unique violation either way', async () => {
        await seed(
          orm,
          Member,
          { nick: 'ada', email: 'ada@example.com', name: 'Ada' },
          { nick: 'bob', email: 'bob@example.com', name: 'Twin' },
          { nick: 'bo', email: 'bo@example.com', name: 'Twin' },
        );
        for (const loaded of [false, true]) {
          const em = orm.em.fork();
          if (loaded) {
            await em.findOneOrFail(Member, { nick: 'ada' });
          }
          const error = await em.failsafeAdd(impostor(), { name: 'Twin' }).catch(e => e);
          expect(error).toBeInstanceOf(MultipleResultsError);
          expect(error.message).toMatch(/^Recovering from a conflicting insert of Member, the filters \{ name: 'Twin' \} matched 2/);
          expect(error.cause).toBeInstanceOf(UniqueConstraintViolationException);
          expect(error.cause instanceof ManagedKeyConflictError).toBe(loaded);
        }
        expect(await orm.em.fork().count(Member)).toBe(3);
      });
    });

    describe('where (3, 4, 5)', () => {
      it('several rows matching where throw MultipleResultsError and insert nothing', async () => {
        await seed(orm, Tag, { name: 'a', color: 'red' }, { name: 'b', color: 'red' });
        const em = orm.em.fork();
        // no unique key covers `color`: opted out, as a caller with a constraint only in the database would
        const error = await em.findOrCreate(Tag, { color: 'red' }, { name: 'c' }, { checkUnique: false }).catch(e => e);
        expect(error).toBeInstanceOf(MultipleResultsError);
        expect(error).toMatchObject({ entityName: 'Tag', count: 2 });
        expect(error.message).toMatch(/^findOrCreate\(Tag, \{ color: 'red' \}\) matched 2 or more rows/);
        expect((await rows(Tag, 'name')).map(t => t.name)).toEqual(['a', 'b']);
        expect(em.getUnitOfWork().getIdentityMap().values().map(tag => (tag as Tag).name).sort()).toEqual(['a', 'b']);
      });

      it.each([
        ['an empty where', {}, /findOrCreate\(Address, where\) needs a `where` with at least one property/],
        ['an operator inside a relation', { account: { name: { $like: 'a%' } } }, /'account.name.\$like' is a query operator/],
        ['an array', { email: ['a', 'b'] }, /'email' is an\s+array/],
        ['an array inside a relation', { account: { id: [1, 2] } }, /'account.id' is an\s+array/],
        ['a relation given by its other columns', { account: { name: 'acme' } }, /would insert a second Account/],
        ['an unknown property', { mail: 'x' }, /'mail' is not a property of Address/],
        ['a document on a scalar', { email: { a: 1 } }, /'email' is an object/],
      ])('%s is refused with CoasterUsageError before any SQL', async (_, where, message) => {
        await seed(orm, Account, { name: 'acme' });
        log.clear();
        const em = orm.em.fork();
        const error = await em.findOrCreate(Address, where as never).catch(e => e);
        expect(error).toBeInstanceOf(CoasterUsageError);
        expect(error.message).toMatch(message);
        expect(log.queries).toEqual([]);
        expect(await orm.em.fork().count(Account)).toBe(1);
        expect(await orm.em.fork().count(Address)).toBe(0);
      });

      it('a collection of the entity itself is refused too', async () => {
        const error = await orm.em.fork().findOrCreate(Account, { addresses: [] } as never).catch(e => e);
        expect(error).toBeInstanceOf(CoasterUsageError);
        expect(error.message).toMatch(/cannot filter on or create from the collection 'addresses'/);
      });

      it('an embeddable as a plain object finds and creates; its unknown keys and operators are refused', async () => {
        const created = await orm.em.fork().getOrCreate(Venue, { name: 'hall', address: { city: 'Oslo' } });
        const found = await orm.em.fork().getOrCreate(Venue, { name: 'hall', address: { city: 'Oslo' } });
        expect([created.created, found.created, found.entity.id]).toEqual([true, false, created.entity.id]);
        expect((await orm.em.fork().find(Venue, {})).map(venue => ({ ...venue.address }))).toEqual([{ city: 'Oslo', street: null }]);
        log.clear();
        for (const [where, message] of [
          [{ name: 'hall', address: { town: 'Oslo' } }, /'address.town' is not a property of VenueAddress/],
          [{ name: 'hall', address: { city: { $like: 'O%' } } }, /'address.city.\$like' is a query operator/],
        ] as const) {
          const error = await orm.em.fork().findOrCreate(Venue, where as never).catch(e => e);
          expect(error).toBeInstanceOf(CoasterUsageError);
          expect(error.message).toMatch(message);
        }
        expect(log.queries).toEqual([]);
        expect(await orm.em.fork().count(Venue)).toBe(1);
      });

      it('a relation given as an entity, a primary key or a primary-key object finds and creates', async () => {
        const em = orm.em.fork();
        const acme = await em.findOrCreate(Account, { name: 'acme' });
        const first = await em.getOrCreate(Address, { email: 'a@acme.test', account: acme });
        const byKey = await orm.em.fork().getOrCreate(Address, { email: 'a@acme.test', account: acme.id });
        const byKeyObject = await orm.em.fork().getOrCreate(Address, { email: 'b@acme.test', account: { id: acme.id } });
        expect([first.created, byKey.created, byKeyObject.created]).toEqual([true, false, true]);
        expect(await orm.em.fork().count(Account)).toBe(1);
        expect(await orm.em.fork().count(Address, { account: acme.id })).toBe(2);
      });

      it('data contradicting where is refused and nothing is written', async () => {
        const em = orm.em.fork();
        const error = await em.findOrCreate(Tag, { name: 'x' }, { name: 'y' }).catch(e => e);
        expect(error).toBeInstanceOf(CoasterUsageError);
        expect(error.message).toMatch(/'name' has one value in `where` and another in `data`/);
        expect(await orm.em.fork().count(Tag)).toBe(0);
        expect(await em.findOrCreate(Tag, { name: 'x' }, { name: 'x', color: 'red' })).toMatchObject({ name: 'x', color: 'red' });
      });
    });

    describe('violations that are not duplicates (6)', () => {
      it.each([
        ['a foreign key', ForeignKeyConstraintViolationException, (em: TestOrm['em']) => em.create(Address, { email: 'x@y.z', account: em.getReference(Account, 404) }, { persist: false })],
        // @mikro-orm/mysql's converter knows MySQL's CHECK error (3819), not MariaDB's (4025): a plain DriverException
        ['a CHECK', db.name === 'mysql' ? DriverException : CheckConstraintViolationException, (em: TestOrm['em']) => em.create(Product, { sku: 's1', price: -1, label: 'x' }, { persist: false })],
        ['a NOT NULL', NotNullConstraintViolationException, (em: TestOrm['em']) => em.create(Product, { sku: 's1', price: 1 } as never, { persist: false })],
      ])('%s violation propagates, with or without filters, the caller transaction still usable', async (_, exception, build) => {
        await orm.em.fork().transactional(async em => {
          await expect(em.failsafeAdd(build(em))).rejects.toBeInstanceOf(exception);
          await expect(em.failsafeAdd(build(em), { id: 1 } as never)).rejects.toBeInstanceOf(exception);
          await em.failsafeAdd(em.create(Tag, { name: 'after' }, { persist: false }));
        });
        expect((await rows(Tag, 'name')).map(t => t.name)).toEqual(['after']);
        expect(await orm.em.fork().count(Address)).toBe(0);
        expect(await orm.em.fork().count(Product)).toBe(0);
      });
    });

    describe('pending dependents (7)', () => {
      it('a pending entity with a nullable foreign key to it: refused, nothing written, no NULL', async () => {
        await seed(orm, Tag, { name: 'news' });
        const em = orm.em.fork();
        const tag = em.create(Tag, { name: 'news' });
        em.create(Post, { title: 'hello', tag });
        log.clear();
        const error = await em.failsafeAdd(tag, { name: 'news' }).catch(e => e);
        expect(error).toBeInstanceOf(CoasterUsageError);
        expect(error.message).toMatch(/but Post waiting to be flushed would be written with it or point at it. Nothing was written/);
        expect(log.queries).toEqual([]);
        expect(await orm.em.fork().count(Post)).toBe(0);
      });

      it('a pending entity with a required foreign key to it, and its own collection: refused', async () => {
        const em = orm.em.fork();
        const account = em.create(Account, { name: 'acme' });
        em.create(Address, { email: 'a@acme.test', account });
        const error = await em.failsafeAdd(account, { name: 'acme' }).catch(e => e);
        expect(error).toBeInstanceOf(CoasterUsageError);
        expect(error.message).toMatch(/Account\.addresses, Address waiting to be flushed/);
        expect(await orm.em.fork().count(Account)).toBe(0);
      });

      it('a managed entity re-pointed at it: refused, its old link kept in the database', async () => {
        const seed = orm.em.fork();
        seed.create(Post, { title: 'hello', tag: seed.create(Tag, { name: 'old' }) });
        await seed.flush();
        const em = orm.em.fork();
        const post = await em.findOneOrFail(Post, { title: 'hello' });
        const tag = em.create(Tag, { name: 'new' }, { persist: false });
        post.tag = tag;
        await expect(em.failsafeAdd(tag, { name: 'new' })).rejects.toBeInstanceOf(CoasterUsageError);
        expect(await orm.em.fork().findOneOrFail(Post, { title: 'hello' }, { populate: ['tag'] })).toMatchObject({ tag: { name: 'old' } });
      });

      it('the documented order works: add first, then point the dependent at what it returned', async () => {
        await seed(orm, Tag, { name: 'news' });
        const em = orm.em.fork();
        const tag = await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }), { name: 'news' });
        em.create(Post, { title: 'hello', tag });
        await em.flush();
        const post = await orm.em.fork().findOneOrFail(Post, { title: 'hello' }, { populate: ['tag'] });
        expect(post.tag).toMatchObject({ id: tag.id, name: 'news' });
      });
    });

    it('the whole findOrCreate reads from the primary, never from a replica (9)', async () => {
      // a replica without the schema: any read sent there fails
      const replica = db.name === 'sqlite' ? { dbName: ':memory:' } : { clientUrl: inject('postgresUrl') };
      const replicated = await db.init({ entities, replicas: [{ name: 'schemaless', ...replica }], preferReadReplicas: true, ...path.options() });
      try {
        const em = replicated.orm.em.fork();
        const { created } = await em.getOrCreate(Tag, { name: 'news' });
        expect(created).toBe(true);
        expect(await replicated.orm.em.fork().count(Tag, {}, { connectionType: 'write' })).toBe(1);
        expect((await em.getOrCreate(Tag, { name: 'news' })).created).toBe(false);
      } finally {
        await closeOrm(replicated.orm);
      }
    });
  });
});

describe.each(insertPaths)('race-safe inserts under snapshot isolation on postgresql on the $name path (8)', path => {
  let orm: TestOrm;

  beforeAll(async () => {
    ({ orm } = await postgresql.init({ entities, ...path.options() }));
  });
  afterAll(() => closeOrm(orm));
  beforeEach(() => orm.schema.clearDatabase());

  it.each([IsolationLevel.REPEATABLE_READ, IsolationLevel.SERIALIZABLE])(
    '%s: a conflict with a visible row that the filters do not match is the unique violation, not a retry',
    async isolationLevel => {
      await seed(orm, Tag, { name: 'news' });
      const error = await orm.em
        .fork()
        .transactional(em => em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }), { name: 'elsewhere' }), {
          isolationLevel,
        })
        .catch(e => e);
      expect(error).toBeInstanceOf(UniqueConstraintViolationException);
      expect(error).not.toBeInstanceOf(TransactionRetryError);
    },
  );

  it('REPEATABLE READ: a row committed after the snapshot is still a TransactionRetryError', async () => {
    const em = orm.em.fork();
    await em.begin({ isolationLevel: IsolationLevel.REPEATABLE_READ });
    try {
      await em.count(Tag); // takes the snapshot
      await seed(orm, Tag, { name: 'news' });
      const error = await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }), { name: 'news' }).catch(e => e);
      expect(error).toBeInstanceOf(TransactionRetryError);
    } finally {
      await em.rollback();
    }
  });

  it('replicas: a row deleted on the primary but still on the replica is created again', async () => {
    const replica = await postgresql.init({ entities });
    const replicaUrl = replica.orm.config.getClientUrl();
    const { orm: primary } = await postgresql.init({
      entities,
      replicas: [{ name: 'lagging', clientUrl: replicaUrl }],
      preferReadReplicas: true,
      ...path.options(),
    });
    try {
      await seed(replica.orm, Tag, { name: 'news' });
      const { entity, created } = await primary.em.fork().getOrCreate(Tag, { name: 'news' });
      expect(created).toBe(true);
      expect(await primary.em.fork().find(Tag, {}, { connectionType: 'write' })).toEqual([expect.objectContaining({ id: entity.id, name: 'news' })]);
    } finally {
      await closeOrm(primary);
      await closeOrm(replica.orm);
    }
  });
});
