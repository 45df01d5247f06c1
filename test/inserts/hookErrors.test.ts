/**
 * A race-safe insert that rejects leaves no row (issue 15, point 1): an `afterCreate` that throws, in the
 * entity or in a subscriber, rolls its insert back; an `onCreate` or `beforeCreate` that throws does so
 * before the insert is sent. Run on SQLite, PostgreSQL and MariaDB and both insert paths, outside a transaction and inside
 * one whose other work commits; after each rejection the database, the identity map and a later flush
 * are checked, not only the error. Last, the documented exception: a subscriber's
 * `afterTransactionCommit`, which runs after the commit.
 */
import {
  AfterCreate,
  BeforeCreate,
  Entity,
  type EventArgs,
  type EventSubscriber,
  type EntityName,
  PrimaryKey,
  Property,
  Unique,
  wrap,
} from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { closeOrm, databases, type QueryLog, type TestOrm } from '../support/databases.js';
import { Tag, raceEntities } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';

/** Rails' `BrokenCar`: its after-create callback fails once the row is inserted. */
@Entity()
class BrokenCar {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @AfterCreate()
  fail(): void {
    throw new Error(`BrokenCar.afterCreate refused ${this.name}`);
  }
}

/** A car whose `afterCreate` is a subscriber's ({@link AfterCreateBreaker}), not its own. */
@Entity()
class WatchedCar {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;
}

/** A car whose `beforeCreate` hook fails. */
@Entity()
class UnbuildableCar {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @BeforeCreate()
  fail(): void {
    throw new Error(`UnbuildableCar.beforeCreate refused ${this.name}`);
  }
}

/** A car whose `onCreate` initializer fails when the change set is computed. */
@Entity()
class UnregisteredCar {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({
    type: 'string',
    onCreate: (car: UnregisteredCar) => {
      throw new Error(`UnregisteredCar.onCreate refused ${car.name}`);
    },
  })
  plate?: string;
}

/** A subscriber to {@link WatchedCar} only, whose `afterCreate` fails: no flush or transaction hooks. */
class AfterCreateBreaker implements EventSubscriber<WatchedCar> {
  getSubscribedEntities(): EntityName<WatchedCar>[] {
    return [WatchedCar];
  }

  afterCreate({ entity }: EventArgs<WatchedCar>): void {
    throw new Error(`AfterCreateBreaker refused ${entity.name}`);
  }
}

type Car = BrokenCar | WatchedCar | UnbuildableCar | UnregisteredCar;
type CarClass = new () => Car;

/** How each car fails: which hook, and whether the insert reaches the database before it does. */
const cars: { hook: string; entity: CarClass; message: RegExp; inserted: boolean }[] = [
  { hook: 'an entity @AfterCreate', entity: BrokenCar, message: /^BrokenCar.afterCreate refused Civic$/, inserted: true },
  { hook: "a subscriber's afterCreate", entity: WatchedCar, message: /^AfterCreateBreaker refused Civic$/, inserted: true },
  { hook: 'an entity @BeforeCreate', entity: UnbuildableCar, message: /^UnbuildableCar.beforeCreate refused Civic$/, inserted: false },
  { hook: 'an onCreate initializer', entity: UnregisteredCar, message: /^UnregisteredCar.onCreate refused Civic$/, inserted: false },
];

/** A race-safe call that inserts a car named `Civic`, and the candidate when the caller builds it. */
interface Call {
  method: string;
  call: (em: TestOrm['em'], entity: CarClass) => { candidate?: Car; result: Promise<unknown> };
}

/** A call given a candidate the caller built with `em.create`. */
function adding(method: string, add: (em: TestOrm['em'], candidate: Car) => Promise<unknown>): Call {
  return {
    method,
    call: (em, entity) => {
      const candidate = em.create(entity, { name: 'Civic' }, { persist: false });
      return { candidate, result: add(em, candidate) };
    },
  };
}

const calls: Call[] = [
  adding('failsafeAdd', (em, car) => em.failsafeAdd(car, { name: 'Civic' })),
  adding('failsafeAdd without filters', (em, car) => em.failsafeAdd(car)),
  adding('addAndCommit', (em, car) => em.addAndCommit(car, { name: 'Civic' })),
  { method: 'findOrCreate', call: (em, entity) => ({ result: em.findOrCreate(entity, { name: 'Civic' }) }) },
  { method: 'getOrCreate', call: (em, entity) => ({ result: em.getOrCreate(entity, { name: 'Civic' }) }) },
];

const cases = cars.flatMap(car => calls.map(call => ({ ...car, ...call })));

/**
 * The log without quotes, as in the other suites, and without the `show variables like 'auto_increment_increment'`
 * that MikroORM's MySQL-family drivers send once per ORM, at the first flush that inserts.
 */
function statements(log: QueryLog): string[] {
  return log.queries.filter(q => !q.startsWith('show variables')).map(q => q.replace(/["`]/g, ''));
}

describe.each(databases)('a race-safe insert that rejects leaves no row on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      const options = path.options();
      ({ orm, log } = await db.init({
        ...options,
        entities: [...raceEntities, BrokenCar, WatchedCar, UnbuildableCar, UnregisteredCar],
        subscribers: [...(options.subscribers ?? []), new AfterCreateBreaker()],
      }));
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    /**
     * Runs `test`'s call on `em` (inside a transaction when `inTransaction`), expecting the hook's error,
     * and checks what it sent and what `em` holds right after.
     */
    async function rejects(em: TestOrm['em'], test: (typeof cases)[number], inTransaction: boolean): Promise<void> {
      const table = orm.getMetadata().get(test.entity.name).tableName;
      log.clear();
      const { candidate, result } = test.call(em, test.entity);
      await expect(result).rejects.toThrow(test.message);

      const lookup = test.method.endsWith('OrCreate') ? [`select ${table[0]}0.* from ${table} as ${table[0]}0 where ${table[0]}0.name = ? limit ?`] : [];
      const [open, undo] = inTransaction ? ['savepoint trx1', 'rollback to savepoint trx1'] : ['begin', 'rollback'];
      expect(statements(log)).toEqual(
        test.inserted
          ? // an afterCreate listener puts the entity on the savepoint path on either ORM: the insert is rolled back
            // (MikroORM reads MariaDB's new id from the insert's result, without RETURNING)
            [...lookup, open, `insert into ${table} (name) values (?)${db.name === 'mariadb' ? '' : ' returning id'}`, undo]
          : // the hook throws before the insert: on the fast path before any SQL
            [...lookup, ...(path.name === 'fast' ? [] : [open, undo])],
      );

      // detached: not managed, not in the identity map, and a later flush sends nothing
      if (candidate) {
        expect(wrap(candidate, true).isManaged()).toBe(false);
      }
      expect(em.getUnitOfWork().getIdentityMap().getStore(orm.getMetadata().get(test.entity.name))).toEqual(new Map());
      log.clear();
      await em.flush();
      expect(log.queries).toEqual([]);
    }

    describe.each(cases)('$hook throwing in $method', test => {
      it('outside a transaction: no row, the entity detached', async () => {
        const em = orm.em.fork();
        await rejects(em, test, false);
        expect(await orm.em.fork().count(test.entity)).toBe(0);
      });

      it("inside a transaction: no row after the caller's transaction commits, its other work kept", async () => {
        await orm.em.fork().transactional(async tx => {
          await tx.failsafeAdd(tx.create(Tag, { name: 'before' }, { persist: false }));
          await rejects(tx, test, true);
          await tx.failsafeAdd(tx.create(Tag, { name: 'after' }, { persist: false }));
        });
        expect(await orm.em.fork().count(test.entity)).toBe(0);
        const tags = await orm.em.fork().find(Tag, {}, { orderBy: { name: 'asc' } });
        expect(tags.map(tag => tag.name)).toEqual(['after', 'before']);
      });
    });

    it('entities without afterCreate listeners keep their path in the same ORM', async () => {
      const em = orm.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }));
      // (MariaDB's fast path: `insert ... returning *`, which a flush never sends there)
      const fast = (q: string) => q.includes(db.name === 'mariadb' ? 'returning *' : 'on conflict do nothing');
      expect(statements(log).some(fast)).toBe(path.name === 'fast');
    });
  });
});

/** A subscriber whose `afterTransactionCommit` fails: it runs once the transaction is committed. */
class AfterCommitBreaker implements EventSubscriber {
  afterTransactionCommit(): void {
    throw new Error('AfterCommitBreaker refused the commit');
  }
}

describe.each(databases)("a subscriber's afterTransactionCommit on $name (documented: it runs too late)", db => {
  it('outside a transaction: its error rejects the call, the row stays committed, the entity detached', async () => {
    const { orm } = await db.init({ entities: raceEntities, subscribers: [new AfterCommitBreaker()] });
    try {
      const em = orm.em.fork();
      const tag = em.create(Tag, { name: 'news' }, { persist: false });
      await expect(em.failsafeAdd(tag, { name: 'news' })).rejects.toThrow('AfterCommitBreaker refused the commit');
      expect(wrap(tag, true).isManaged()).toBe(false);
      expect(await orm.em.fork().count(Tag, { name: 'news' })).toBe(1);
    } finally {
      await closeOrm(orm);
    }
  });
});
