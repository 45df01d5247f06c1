/**
 * failsafeAdd's fast path (`insert ... on conflict do nothing returning *`): what it sends, that a
 * duplicate raises no error on the server, that it leaves the entity as a flush would, the
 * `savepoint: false` option, and every case that takes the savepoint path instead.
 */
import {
  AfterCreate,
  BeforeCreate,
  DeferMode,
  Embeddable,
  Embedded,
  Entity,
  type EntityName,
  type EventArgs,
  type EventSubscriber,
  ForeignKeyConstraintViolationException,
  ManyToOne,
  OnLoad,
  type Opt,
  PrimaryKey,
  Property,
  Unique,
  UnitOfWork,
  ValidationError,
} from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { AutoInitDefault, CreatedAt, type InsertPathAware, UpdatedAt } from '../../src/index.js';
import { closeOrm, databases, type QueryLog, type TestOrm, withPrimary } from '../support/databases.js';
import { Account, Address, Tag, raceEntities } from '../support/entities.js';
import { FlushWatcher } from '../support/insertPaths.js';
import { ChildForPrimary, ParentForPrimary, primaryEntities } from '../primary/entities.js';

/** An entity with everything a flush fills in on insert. */
@Entity()
class Note {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  title!: string;

  /** Set by MikroORM's `onCreate` when the flush computes the change set. */
  @Property({ type: 'string', onCreate: () => 'made on create' })
  origin!: Opt<string>;

  /** Filled by the database: only `returning *` brings it back. */
  @Property({ type: 'integer', defaultRaw: '42' })
  answer!: Opt<number>;

  @Property({ type: 'string', default: 'draft' })
  @AutoInitDefault()
  status!: Opt<string>;

  @CreatedAt()
  createdAt!: Opt<Date>;

  @UpdatedAt()
  updatedAt!: Opt<Date>;

  /** What the entity's own hooks saw, in order; not a column. */
  @Property({ persist: false, type: 'json' })
  trace: Opt<string[]> = [];

  @BeforeCreate()
  beforeCreate(): void {
    this.trace.push(`beforeCreate ${this.origin}`);
    this.title = this.title.trim();
  }
}

/** An entity with an `afterCreate` hook: its error must roll the insert back, which only the savepoint path does. */
@Entity()
class Announced {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  /** What the hook saw; not a column. */
  @Property({ persist: false, type: 'json' })
  trace: Opt<string[]> = [];

  @AfterCreate()
  afterCreate(): void {
    this.trace.push(`afterCreate ${this.id}`);
  }
}

/** A subscriber with only an `afterCreate`, for {@link Tag}: no flush or transaction hooks. */
class TagAnnouncer implements EventSubscriber<Tag> {
  readonly created: string[] = [];

  getSubscribedEntities(): EntityName<Tag>[] {
    return [Tag];
  }

  afterCreate({ entity }: EventArgs<Tag>): void {
    this.created.push(entity.name);
  }
}

@Entity()
class Versioned {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({ type: 'integer', version: true })
  version!: Opt<number>;
}

@Entity()
@Unique({ properties: ['code'], deferMode: DeferMode.INITIALLY_DEFERRED })
class Deferred {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  code!: string;
}

@Embeddable()
class Money {
  @Property({ type: 'integer' })
  cents!: number;
}

@Entity()
class Priced {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  sku!: string;

  @Embedded(() => Money)
  price!: Money;
}

@Entity({ discriminatorColumn: 'kind', abstract: true })
abstract class Animal {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({ type: 'string' })
  kind!: string;
}

@Entity({ discriminatorValue: 'dog' })
class Dog extends Animal {}

@Entity()
class Loaded {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  loads: Opt<number> = 0;

  @OnLoad()
  counted(): void {
    this.loads++;
  }
}

@Entity()
class Comment {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  body!: string;

  @ManyToOne(() => Tag, { nullable: true })
  tag?: Tag;
}

const entities = [...raceEntities, ...primaryEntities, Note, Announced, Versioned, Deferred, Priced, Animal, Dog, Loaded, Comment];

/** The log without quotes, as in the other suites. */
function statements(log: QueryLog): string[] {
  return log.queries.map(q => q.replace(/["`]/g, ''));
}

/** Inserts a tag named `news` through an EntityManager of its own. */
function addTag(orm: TestOrm, filters?: { name: string }): Promise<Tag | undefined> {
  const em = orm.em.fork();
  return em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }), filters);
}

/** Whether the log holds the fast path's insert (MariaDB's `insert ... returning *`, which a flush never sends there). */
function tookFastPath(log: QueryLog): boolean {
  return statements(log).some(q => q.includes('on conflict do nothing returning *') || /^insert .* returning \*$/.test(q));
}

describe.each(databases)('the fast path on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;

  beforeAll(async () => {
    ({ orm, log } = await db.init({ entities }, withPrimary));
  });
  afterAll(() => closeOrm(orm));
  beforeEach(async () => {
    await orm.schema.clearDatabase();
    log.clear();
  });

  describe('a duplicate raises no error on the server', () => {
    it.each([
      ['outside a transaction, with filters', false, true],
      ['outside a transaction, without filters', false, false],
      ['inside a transaction, with filters', true, true],
      ['inside a transaction, without filters', true, false],
    ])('%s', async (_, inTransaction, withFilters) => {
      const existing = (await addTag(orm, { name: 'news' }))!;
      log.clear();
      const em = orm.em.fork();
      const add = (tx: TestOrm['em']) =>
        tx.failsafeAdd(tx.create(Tag, { name: 'news' }, { persist: false }), withFilters ? { name: 'news' } : undefined);
      const result = inTransaction ? await em.transactional(add) : await add(em);

      expect(result === undefined ? undefined : { id: result.id }).toEqual(withFilters ? { id: existing.id } : undefined);
      // MikroORM logs every statement the database refused at level error; on MariaDB the duplicate is the
      // insert's 1062, which rolls back that statement only: no savepoint, no rollback statement either
      expect(log.errors.map(q => q.replace(/["`]/g, ''))).toEqual(db.name === 'mariadb' ? ['insert into tag (name) values (?) returning *'] : []);
      expect(statements(log).filter(q => /rollback/.test(q))).toEqual([]);
      expect(await orm.em.fork().count(Tag)).toBe(1);
    });

    it('where the savepoint path logs the unique violation it recovered from (so the check above can fail)', async () => {
      const { orm: slow, log: slowLog } = await db.init({ entities: raceEntities, subscribers: [new FlushWatcher()] });
      onTestFinished(() => closeOrm(slow));
      await addTag(slow);
      slowLog.clear();
      await addTag(slow, { name: 'news' });
      expect(slowLog.errors).toEqual([expect.stringMatching(/^insert into/)]);
    });
  });

  describe('leaves the entity as a flush would', () => {
    it('onCreate, AutoInitDefault, timestamps and database defaults set; beforeCreate fired; a later flush sends nothing', async () => {
      const em = orm.em.fork();
      const note = em.create(Note, { title: ' hello ' }, { persist: false });
      expect(await em.failsafeAdd(note, { title: 'hello' })).toBe(note);
      expect(tookFastPath(log)).toBe(true);

      expect(note).toMatchObject({ title: 'hello', origin: 'made on create', answer: 42, status: 'draft' });
      expect(note.trace).toEqual(['beforeCreate made on create']);
      expect(note.createdAt).toBeInstanceOf(Date);
      expect(note.updatedAt).toEqual(note.createdAt);
      expect(em.getUnitOfWork().getById(Note.name, note.id)).toBe(note);

      const row = await orm.em.fork().findOneOrFail(Note, note.id);
      expect(row).toMatchObject({ title: 'hello', origin: 'made on create', answer: 42, status: 'draft', createdAt: note.createdAt });
      log.clear();
      await em.flush();
      expect(log.queries).toEqual([]);
      note.status = 'published';
      await em.flush();
      expect(statements(log)[statements(log).length - 2]).toMatch(/^update note set status = \?, updated_at = \? where id = \?$/);
    });

    it('a duplicate fires beforeCreate, and returns the managed row unchanged', async () => {
      const em = orm.em.fork();
      const first = await em.failsafeAdd(em.create(Note, { title: 'hello' }, { persist: false }), { title: 'hello' });
      first.status = 'unsaved change';
      const second = em.create(Note, { title: 'hello' }, { persist: false });
      expect(await em.failsafeAdd(second, { title: 'hello' })).toBe(first);
      expect(second.trace).toEqual(['beforeCreate made on create']);
      expect(first.status).toBe('unsaved change');
      expect(em.getUnitOfWork().getById(Note.name, first.id)).toBe(first);
    });

    it('validateRequired refuses a missing required value before any SQL', async () => {
      const em = orm.em.fork();
      const error = await em.failsafeAdd(em.create(Tag, {} as never, { persist: false })).catch(e => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(log.queries).toEqual([]);
    });

    it('the entity is managed with its relation, and a later change to the relation is flushed', async () => {
      const em = orm.em.fork();
      const tag = await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }), { name: 'news' });
      const comment = await em.failsafeAdd(em.create(Comment, { body: 'hi', tag }, { persist: false }), { body: 'hi' });
      expect(comment.tag).toBe(tag);
      comment.tag = undefined;
      await em.flush();
      expect(await orm.em.fork().findOneOrFail(Comment, { body: 'hi' })).toMatchObject({ tag: null });
    });
  });

  describe('errors', () => {
    it('a foreign key violation inside a transaction rolls back only its savepoint', async () => {
      await orm.em.fork().transactional(async em => {
        const orphan = em.create(Address, { email: 'x@y.z', account: em.getReference(Account, 404) }, { persist: false });
        await expect(em.failsafeAdd(orphan)).rejects.toBeInstanceOf(ForeignKeyConstraintViolationException);
        await em.failsafeAdd(em.create(Tag, { name: 'after' }, { persist: false }));
      });
      if (db.name === 'postgresql') {
        expect(statements(log)).toContain('rollback to savepoint failsafe_add; release savepoint failsafe_add');
      }
      expect(await orm.em.fork().count(Tag)).toBe(1);
    });

    it('filters that match no row after a conflict: the row is inserted plainly, and the unique violation propagates', async () => {
      await addTag(orm);
      log.clear();
      const em = orm.em.fork();
      const error = await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }), { name: 'other' }).catch(e => e);
      expect(error.constructor.name).toBe('UniqueConstraintViolationException');
      expect(statements(log).some(q => /^insert into tag \(name\) values \(\?\) returning \*$/.test(q))).toBe(true);
      expect(await orm.em.fork().count(Tag)).toBe(1);
    });
  });

  describe('savepoint: false', () => {
    it('sends the insert and the select without a savepoint and resolves a duplicate', async () => {
      await addTag(orm);
      log.clear();
      const found = await orm.em.fork().transactional(em =>
        em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }), { name: 'news' }, { savepoint: false }),
      );
      expect(found.name).toBe('news');
      const insert = 'insert into tag (name) values (?) on conflict do nothing returning *';
      const select = 'select t0.* from tag as t0 where t0.name = ? limit ?';
      expect(statements(log)).toEqual(
        {
          postgresql: ['begin', `${insert}; ${select}`, 'commit'],
          sqlite: ['begin', insert, select, 'commit'],
          // never a savepoint on MariaDB: the option changes nothing there
          mariadb: ['begin', 'insert into tag (name) values (?) returning *', select, 'commit'],
        }[db.name as 'postgresql' | 'sqlite' | 'mariadb'],
      );
    });

    it('a foreign key violation aborts the caller transaction on PostgreSQL (the documented trade-off)', async () => {
      const em = orm.em.fork();
      await em.begin();
      try {
        await em.failsafeAdd(em.create(Tag, { name: 'before' }, { persist: false }), undefined, { savepoint: false });
        const orphan = em.create(Address, { email: 'x@y.z', account: em.getReference(Account, 404) }, { persist: false });
        await expect(em.failsafeAdd(orphan, undefined, { savepoint: false })).rejects.toBeInstanceOf(ForeignKeyConstraintViolationException);
        const next = em.failsafeAdd(em.create(Tag, { name: 'after' }, { persist: false }), undefined, { savepoint: false });
        if (db.name === 'postgresql') {
          await expect(next).rejects.toThrow(/current transaction is aborted/);
        } else {
          await expect(next).resolves.toMatchObject({ name: 'after' }); // SQLite aborts only the statement
        }
      } finally {
        await em.rollback();
      }
      expect(await orm.em.fork().count(Tag)).toBe(0);
    });
  });

  describe('the savepoint path, chosen per entity', () => {
    it.each([
      ['a versioned entity', (em: TestOrm['em']) => em.create(Versioned, { name: 'a' }, { persist: false })],
      ['a deferrable unique constraint', (em: TestOrm['em']) => em.create(Deferred, { code: 'a' }, { persist: false })],
      ['an embedded property', (em: TestOrm['em']) => em.create(Priced, { sku: 'a', price: { cents: 1 } }, { persist: false })],
      ['single table inheritance', (em: TestOrm['em']) => em.create(Dog, { name: 'rex', kind: 'dog' }, { persist: false })],
      ['an onLoad hook', (em: TestOrm['em']) => em.create(Loaded, { name: 'a' }, { persist: false })],
      ['an afterCreate hook', (em: TestOrm['em']) => em.create(Announced, { name: 'a' }, { persist: false })],
      ['the parent of a primary relationship', (em: TestOrm['em']) => em.create(ParentForPrimary, { name: 'p' }, { persist: false })],
      [
        'the child of a primary relationship',
        async (em: TestOrm['em']) => {
          const parent = (await em.fork().failsafeAdd(em.create(ParentForPrimary, { name: 'p' }, { persist: false })))!;
          return em.create(ChildForPrimary, { name: 'c', parent: em.getReference(ParentForPrimary, parent.id) }, { persist: false });
        },
      ],
      [
        'a new related entity, which a flush inserts with it (cascade)',
        (em: TestOrm['em']) => em.create(Comment, { body: 'hi', tag: em.create(Tag, { name: 'new' }, { persist: false }) }, { persist: false }),
      ],
    ] as [string, (em: TestOrm['em']) => object][])('%s', async (_, build) => {
      const em = orm.em.fork();
      const entity = await build(em);
      log.clear();
      expect(await em.failsafeAdd(entity)).toBe(entity);
      expect(tookFastPath(log)).toBe(false);
      expect(statements(log)[0]).toBe('begin');
      expect(statements(log).at(-1)).toBe('commit');
    });

    it('an ORM with a flush subscriber', async () => {
      const watcher = new FlushWatcher();
      const { orm: watched, log: watchedLog } = await db.init({ entities: raceEntities, subscribers: [watcher] });
      onTestFinished(() => closeOrm(watched));
      const em = watched.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }));
      expect(tookFastPath(watchedLog)).toBe(false);
      expect(watcher.flushes).toBeGreaterThan(0);
    });

    it("a subscriber's afterCreate, for the entities it subscribes to", async () => {
      const announcer = new TagAnnouncer();
      const { orm: announced, log: announcedLog } = await db.init({ entities: raceEntities, subscribers: [announcer] });
      onTestFinished(() => closeOrm(announced));
      const em = announced.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }));
      expect(tookFastPath(announcedLog)).toBe(false);
      expect(announcer.created).toEqual(['news']);
      announcedLog.clear();
      await em.failsafeAdd(em.create(Account, { name: 'ada' }, { persist: false }));
      expect(tookFastPath(announcedLog)).toBe(true);
    });

    it('the afterCreate hook fires once, with the inserted key', async () => {
      const em = orm.em.fork();
      const announced = em.create(Announced, { name: 'a' }, { persist: false });
      await em.transactional(tx => tx.failsafeAdd(announced));
      expect(announced.trace).toEqual([`afterCreate ${announced.id}`]);
    });

    it('entities with none of these, in the same ORM, take the fast path', async () => {
      const em = orm.em.fork();
      await em.failsafeAdd(em.create(Tag, { name: 'news' }, { persist: false }));
      expect(tookFastPath(log)).toBe(true);
    });
  });
});

describe.each(databases)('the flush before the fast path on $name', db => {
  /** A flush listener that lets inserts take the fast path: the flush of nothing must still reach it. */
  class FastFlushWatcher extends FlushWatcher implements InsertPathAware {
    insertNeedsFlush(): undefined {
      return undefined;
    }
  }

  it('is skipped when nothing is managed or pending and no one but TimestampSubscriber listens to flushes', async () => {
    const watcher = new FastFlushWatcher();
    const [plain, watched] = [await db.init({ entities: raceEntities }), await db.init({ entities: raceEntities, subscribers: [watcher] })];
    const commits = vi.spyOn(UnitOfWork.prototype, 'commit');
    onTestFinished(async () => {
      commits.mockRestore();
      await closeOrm(plain.orm);
      await closeOrm(watched.orm);
    });

    // an empty EntityManager: no flush, the insert alone
    const em = plain.orm.em.fork();
    const news = await em.failsafeAdd(em.create(Tag, { name: 'news' }), { name: 'news' });
    expect(commits).not.toHaveBeenCalled();
    expect(tookFastPath(plain.log)).toBe(true);
    expect(em.getUnitOfWork().getById(Tag.name, news.id)).toBe(news);

    // one managed entity: the flush runs, and sends its change
    news.name = 'headlines';
    await em.failsafeAdd(em.create(Tag, { name: 'sports' }, { persist: false }), { name: 'sports' });
    expect(commits).toHaveBeenCalledTimes(1);
    expect((await plain.orm.em.fork().find(Tag, {}, { orderBy: { id: 'asc' } })).map(tag => tag.name)).toEqual(['headlines', 'sports']);

    // an empty EntityManager whose ORM has a flush listener: the flush of nothing runs, and the listener sees it
    commits.mockClear();
    const watchedEm = watched.orm.em.fork();
    const weather = await watchedEm.failsafeAdd(watchedEm.create(Tag, { name: 'weather' }, { persist: false }), { name: 'weather' });
    expect(commits).toHaveBeenCalledTimes(1);
    expect(watcher.flushes).toBe(1);
    expect(tookFastPath(watched.log)).toBe(true);
    expect(watchedEm.getUnitOfWork().getById(Tag.name, weather.id)).toBe(weather);
  });
});
