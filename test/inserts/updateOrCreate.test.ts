import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BeforeCreate,
  BeforeUpdate,
  CheckConstraintViolationException,
  DeadlockException,
  DriverException,
  ForeignKeyConstraintViolationException,
  IsolationLevel,
  Check,
  Collection,
  Entity,
  EntityRepositoryType,
  ManyToOne,
  MikroORM,
  OneToMany,
  PrimaryKey,
  Property,
  Unique,
  UniqueConstraintViolationException,
  UnitOfWork,
  ValidationError,
  wrap,
  type EntityClass,
  type Opt,
} from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it, onTestFinished, vi } from 'vitest';
import {
  CoasterEntityRepository,
  CoasterUsageError,
  MultipleResultsError,
  Timestamped,
  TransactionRetryError,
  defineCoasterConfig,
  type CoasterEntityManager,
  type FindOrCreateResult,
} from '../../src/index.js';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { allDrivers, closeOrm, sqlite, type QueryLog, type TestOrm } from '../support/databases.js';
import { FlushWatcher } from '../support/insertPaths.js';

class MemberRepository extends CoasterEntityRepository<Member> {}

@Entity()
class Team {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  name!: string;

  @OneToMany(() => Member, member => member.team)
  members = new Collection<Member>(this);
}

/** A person keyed by a unique handle, with timestamps, a NOT NULL name, a CHECK and a foreign key. */
abstract class Person extends Timestamped {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  handle!: string;

  @Property({ type: 'string' })
  name!: string;

  @Property({ type: 'string', nullable: true })
  plan?: string;

  @Property({ type: 'integer' })
  @Check({ name: 'member_score_positive', expression: 'score >= 0' })
  score: Opt<number> = 0;

  @ManyToOne(() => Team, { nullable: true })
  team?: Team;
}

/** A {@link Person} with a hook, which a flush runs: updateOrCreate locks the row and flushes on every database. */
@Entity({ repository: () => MemberRepository })
class Member extends Person {
  [EntityRepositoryType]?: MemberRepository;

  @BeforeCreate()
  @BeforeUpdate()
  refuse(): void {
    if (this.name === 'refused') {
      throw new Error('refused by the hook');
    }
  }
}

/** A {@link Person} without hooks: on PostgreSQL, updateOrCreate sends its one statement. */
@Entity()
class Player extends Person {}

const entities = [Team, Member, Player];

/** The entities the suite runs with, and whether updateOrCreate sends its one statement for them (on PostgreSQL). */
const models: { name: string; entity: EntityClass<Person>; table: string; oneStatement: boolean }[] = [
  { name: 'Member (hooks: locks and flushes)', entity: Member, table: 'member', oneStatement: false },
  { name: 'Player (no hooks: one statement on PostgreSQL)', entity: Player, table: 'player', oneStatement: true },
];

/** What a member holds, as the database and the identity map are compared. */
function state(member: Person) {
  return {
    id: member.id,
    handle: member.handle,
    name: member.name,
    plan: member.plan ?? null,
    score: member.score,
    team: member.team?.id ?? null,
    createdAt: member.createdAt.getTime(),
    updatedAt: member.updatedAt.getTime(),
  };
}

/** Waits until the clock has passed `time`, so that a timestamp set afterwards differs from it. */
async function after(time: Date): Promise<void> {
  while (Date.now() <= time.getTime()) {
    await new Promise(resolve => setTimeout(resolve, 1));
  }
}

/** Both ways a call runs: in a transaction of its own, and in a savepoint of the caller's transaction. */
const modes = [
  { name: 'outside a transaction', run: <R>(em: CoasterEntityManager, fn: (em: CoasterEntityManager) => Promise<R>) => fn(em) },
  { name: 'inside a transaction', run: <R>(em: CoasterEntityManager, fn: (em: CoasterEntityManager) => Promise<R>) => em.transactional(fn) },
];

describe.each(allDrivers)('updateOrCreate on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;

  beforeAll(async () => {
    // one connection per racing caller (SQLite's in-memory database lives on its one connection)
    ({ orm, log } = await db.init({ entities, ...(db.name === 'sqlite' ? {} : { pool: { min: 0, max: 10 } }) }));
  });
  afterAll(() => closeOrm(orm));
  beforeEach(async () => {
    await orm.schema.clearDatabase();
    log.clear();
  });

  /** The statements logged since the last clear, without quotes, lower-cased. */
  function statements(): string[] {
    return log.statements.map(q => q.replace(/["`]/g, ''));
  }

  /** How this database begins the call's own transaction. */
  const begin =
    db.name === 'postgresql'
      ? ['start transaction isolation level read committed']
      : db.name === 'sqlite'
        ? ['begin']
        : ['set transaction isolation level read committed', 'begin'];

  /**
   * Resolves once a connection to this test's database waits on a row lock (PostgreSQL), or runs a locking
   * select, which the lock the test holds makes wait (MariaDB).
   */
  async function lockWait(): Promise<void> {
    const sql =
      db.name === 'postgresql'
        ? `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`
        : // information_schema.innodb_trx lags by seconds; the processlist shows the statement as soon as it runs
          `select count(*) as n from information_schema.processlist where db = database() and info like '%for update'`;
    for (let i = 0; i < 500; i++) {
      const [row] = await orm.em.fork().execute<{ n: string | number }[]>(sql);
      if (Number(row.n) > 0) {
        return;
      }
      await new Promise(resolve => setTimeout(resolve, 10));
    }
    throw new Error('no connection started waiting on a lock');
  }

  describe.each(models)('$name', model => {
    const Subject = model.entity;
    /** Whether updateOrCreate sends its one statement here: the model's, on PostgreSQL. */
    const one = db.name === 'postgresql' && model.oneStatement;
    const alias = `${model.table[0]}0`;
    /** The stored row, read by a fresh EntityManager. */
    async function stored(handle: string): Promise<ReturnType<typeof state> | null> {
      const row = await orm.em.fork().findOne(Subject, { handle });
      return row && state(row);
    }

    const lockingSelect = `select ${alias}.* from ${model.table} as ${alias} where ${alias}.handle = ? limit ?${db.name === 'sqlite' ? '' : ' for update'}`;
    const plainSelect = `select ${alias}.* from ${model.table} as ${alias} where ${alias}.handle = ? limit ?`;

    /**
     * The one statement on PostgreSQL, as logged: the update of `set` (and `updated_at` when they change) as the CTE
     * `found`, the insert of `inserted` (sorted column names) only when it updated nothing; inside a savepoint if asked.
     */
    function oneStatement(set: string[], inserted: string[], savepoint: boolean): string {
      const marks = (columns: string[]) => columns.map(() => '?').join(', ');
      const update =
        `update ${model.table} set ${set.map(c => `${c} = ?`).join(', ')}, ` +
        `updated_at = case when (${set.join(', ')}) is distinct from (${marks(set)}) then ? else updated_at end where handle = ? returning *`;
      const insert = `insert into ${model.table} (${inserted.join(', ')}) select ${marks(inserted)} where not exists (select 1 from found) on conflict do nothing returning *`;
      const statement = `with found as (${update}), inserted as (${insert}) select *, true as created from inserted union all select *, false from found where (select 1 from found) = 1`;
      return savepoint ? `savepoint failsafe_add; ${statement}; release savepoint failsafe_add` : statement;
    }

    /** What `mode` sends around the one statement: alone outside a transaction, in a savepoint inside one. */
    function oneStatementIn(mode: (typeof modes)[number], set: string[], inserted: string[]): string[] {
      return mode.name === 'outside a transaction' ? [oneStatement(set, inserted, false)] : ['begin', oneStatement(set, inserted, true), 'commit'];
    }

    /** Whether `sql` is the call's first look for the row: the locking select, or the one statement. */
    const firstLook = (sql: string) => sql === lockingSelect || sql.includes('with found as (update');

    describe.each(modes)('$name', mode => {
      it('creates the row from where + update + create when none matches, managed as after a flush', async () => {
        const em = orm.em.fork();
        const result = await mode.run(em, tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' }, { plan: 'free' }));
        expectTypeOf(result).toEqualTypeOf<FindOrCreateResult<Person>>();
        expect(result.created).toBe(true);
        const { entity } = result;
        expect(entity).toMatchObject({ handle: 'ada', name: 'Ada', plan: 'free', score: 0 });
        expect(entity.createdAt.getTime()).toBe(entity.updatedAt.getTime());
        expect(await stored('ada')).toEqual(state(entity));
        expect(em.getUnitOfWork().getById(Subject.name, entity.id)).toBe(entity);
        expect(em.getUnitOfWork().computeChangeSets(), 'nothing left to flush').toBeUndefined();
        expect(em.getUnitOfWork().getChangeSets()).toEqual([]);
      });

      it('locks an existing row and updates it with update only: @UpdatedAt moves, @CreatedAt does not', async () => {
        const first = await orm.em.fork().updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' }, { plan: 'free' });
        await after(first.entity.updatedAt);
        log.clear();
        const em = orm.em.fork();
        const result = await mode.run(em, tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.', score: 3 }, { plan: 'pro' }));
        expect(result.created).toBe(false);
        const { entity } = result;
        expect(entity).toMatchObject({ id: first.entity.id, handle: 'ada', name: 'Ada L.', plan: 'free', score: 3 });
        expect(entity.createdAt.getTime()).toBe(first.entity.createdAt.getTime());
        expect(entity.updatedAt.getTime()).toBeGreaterThan(first.entity.updatedAt.getTime());
        const sent = statements();
        expect(await stored('ada')).toEqual(state(entity));
        expect(em.getUnitOfWork().getById(Subject.name, entity.id)).toBe(entity);
        expect(wrap(entity).isTouched(), 'the snapshot holds the stored row').toBe(false);
        expect(em.getUnitOfWork().computeChangeSets(), 'nothing left to flush').toBeUndefined();
        expect(em.getUnitOfWork().getChangeSets()).toEqual([]);
        const update = `update ${model.table} set name = ?, score = ?, updated_at = ? where id = ?`;
        expect(sent).toEqual(
          one
            ? oneStatementIn(mode, ['name', 'score'], ['created_at', 'handle', 'name', 'plan', 'score', 'updated_at'])
            : mode.name === 'outside a transaction'
              ? [...begin, lockingSelect, update, 'commit']
              : ['begin', 'savepoint trx1', lockingSelect, update, 'release savepoint trx1', 'commit'],
        );
      });

      it('sends the locking select, then failsafeAdd, for a new row (MariaDB in a transaction: getOrCreate; PostgreSQL: the one statement)', async () => {
        await mode.run(orm.em.fork(), tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' }));
        const sent = statements();
        if (one) {
          expect(sent).toEqual(oneStatementIn(mode, ['name'], ['created_at', 'handle', 'name', 'score', 'updated_at']));
          return;
        }
        // the plain select that tells a row the snapshot shows (see the REPEATABLE READ tests)
        const plainReadToo = mode.name === 'inside a transaction' && (db.name === 'mariadb' || db.name === 'mysql') ? [plainSelect] : [];
        const [opening, closing] =
          mode.name === 'outside a transaction'
            ? [[...begin, lockingSelect], ['commit']]
            : [['begin', 'savepoint trx1', lockingSelect, ...plainReadToo], ['release savepoint trx1', 'commit']];
        expect(sent.slice(0, opening.length)).toEqual(opening);
        expect(sent.slice(-closing.length)).toEqual(closing);
        // the insert between them is failsafeAdd's (its statements are its own suites' business)
        expect(sent.slice(opening.length, -closing.length).some(q => q.includes(`insert into ${model.table}`))).toBe(true);
      });

      it('updates the instance this EntityManager manages, with the locked row\'s values', async () => {
        const em = orm.em.fork();
        const { entity: mine } = await em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
        await orm.em.fork().nativeUpdate(Subject, { handle: 'ada' }, { plan: 'set elsewhere' });
        const result = await mode.run(em, tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' }));
        expect(result).toEqual({ entity: mine, created: false });
        expect(mine).toMatchObject({ name: 'Ada L.', plan: 'set elsewhere' });
        expect(await stored('ada')).toEqual(state(mine));
        expect(em.getUnitOfWork().getById(Subject.name, mine.id)).toBe(mine);
      });

      it('flushes the managed instance\'s own unflushed changes first, as failsafeAdd flushes pending changes', async () => {
        const em = orm.em.fork();
        const { entity: mine } = await em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
        mine.plan = 'changed in memory';
        log.clear();
        await mode.run(em, tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' }));
        expect(mine).toMatchObject({ name: 'Ada L.', plan: 'changed in memory' });
        expect(await stored('ada')).toEqual(state(mine));
        const sent = statements();
        const flushed = sent.findIndex(q => q.startsWith(`update ${model.table} set plan`));
        expect(flushed).toBeGreaterThanOrEqual(0);
        expect(flushed).toBeLessThan(sent.findIndex(firstLook));
      });

      it('sends no UPDATE and keeps @UpdatedAt when update changes nothing', async () => {
        const { entity } = await orm.em.fork().updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
        await after(entity.updatedAt);
        log.clear();
        const again = await mode.run(orm.em.fork(), tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' }));
        expect(again.created).toBe(false);
        expect(state(again.entity)).toEqual(state(entity));
        const sent = statements();
        expect(await stored('ada')).toEqual(state(entity));
        if (one) {
          // the statement sets the same values, and updated_at only when one of them differs: the row keeps its values
          expect(sent).toEqual(oneStatementIn(mode, ['name'], ['created_at', 'handle', 'name', 'score', 'updated_at']));
        } else {
          expect(sent).toContain(lockingSelect);
          expect(sent.some(q => q.startsWith('update'))).toBe(false);
        }
      });

      it('leaves nothing for FlushMode.AUTO to flush when update changes nothing: a later query writes no pending entity', async () => {
        await orm.em.fork().insert(Subject, { handle: 'ada', name: 'Ada' });
        const em = orm.em.fork();
        const { entity } = await mode.run(em, tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' }));
        expect(wrap(entity).isTouched()).toBe(false);
        const pending = em.create(Team, { name: 'pending' });
        // FlushMode.AUTO (MikroORM's default) flushes before a query of an entity with changes: Subject has none
        expect(await em.find(Subject, { handle: 'ada' })).toEqual([entity]);
        expect(await orm.em.fork().count(Team), 'the pending team is not written by the query').toBe(0);
        expect(wrap(pending).isManaged()).toBe(false);
        await em.flush();
        expect(await orm.em.fork().count(Team)).toBe(1);
        expect(await stored('ada')).toEqual(state(entity));
      });

      it.each([
        ['a foreign key', { team: 999 }, ForeignKeyConstraintViolationException],
        // MikroORM's MySQL driver knows MySQL's CHECK error (3819) only, not MariaDB's 4025: a plain DriverException
        ['a CHECK', { score: -1 }, db.name === 'mysql' ? DriverException : CheckConstraintViolationException],
      ] as const)('lets %s violation through, nothing of the call written, on both paths', async (_, values, ErrorClass) => {
        const em = orm.em.fork();
        const { entity: mine } = await em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
        const before = state(mine);
        await mode.run(em, async tx => {
          await expect(tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.', ...values })).rejects.toBeInstanceOf(ErrorClass);
          await expect(tx.updateOrCreate(Subject, { handle: 'bob' }, { name: 'Bob', ...values })).rejects.toBeInstanceOf(ErrorClass);
          // the caller's transaction is still usable
          expect(await tx.count(Subject)).toBe(1);
        });
        expect(state(mine), 'the managed entity holds the stored row again').toEqual(before);
        expect(await stored('ada')).toEqual(before);
        expect(await stored('bob')).toBeNull();
        await em.flush();
        expect(await stored('ada'), 'a later flush writes nothing').toEqual(before);
      });

      it('refuses null for a NOT NULL property with MikroORM\'s errors, nothing written, on both paths', async () => {
        const em = orm.em.fork();
        const { entity: mine } = await em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
        const before = state(mine);
        await mode.run(em, async tx => {
          // MikroORM's assign refuses it, before the UPDATE
          await expect(tx.updateOrCreate(Subject, { handle: 'ada' }, { name: null })).rejects.toThrow(
            `You must pass a non-null value to the property name of entity ${Subject.name}`,
          );
          // validateRequired refuses it, before the INSERT
          await expect(tx.updateOrCreate(Subject, { handle: 'bob' }, { name: null })).rejects.toBeInstanceOf(ValidationError);
          expect(await tx.count(Subject)).toBe(1);
        });
        expect(await stored('bob')).toBeNull();
        expect(state(mine)).toEqual(before);
        expect(await stored('ada')).toEqual(before);
      });

      if (Subject === Member) it('writes nothing when a hook throws, on both paths, and puts the managed entity back', async () => {
        const em = orm.em.fork();
        const { entity: mine } = await em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
        const before = state(mine);
        await mode.run(em, async tx => {
          await expect(tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'refused', plan: 'pro' })).rejects.toThrow('refused by the hook');
          await expect(tx.updateOrCreate(Subject, { handle: 'bob' }, { name: 'refused' })).rejects.toThrow('refused by the hook');
        });
        expect(await stored('bob')).toBeNull();
        expect(state(mine)).toEqual(before);
        expect(await stored('ada')).toEqual(before);
      });

      it('gives racing callers on one key one row, no error, and one caller\'s values', async () => {
        const callers = 8;
        const results = await Promise.allSettled(
          Array.from({ length: callers }, (_, i) =>
            mode.run(orm.em.fork(), tx => tx.updateOrCreate(Subject, { handle: 'race' }, { name: `caller ${i}`, score: i }, { plan: `plan ${i}` })),
          ),
        );
        const rejected = results.flatMap(r => (r.status === 'rejected' ? [r.reason as unknown] : []));
        if ((db.name === 'mariadb' || db.name === 'mysql') && mode.name === 'inside a transaction') {
          // documented: in the callers' own transactions InnoDB's gap and shared locks can deadlock them,
          // and 1213 rolls a whole transaction back (outside a transaction the call avoids both)
          expect(rejected.filter(error => !(error instanceof DeadlockException))).toEqual([]);
        } else {
          expect(rejected).toEqual([]);
        }
        const fulfilled = results.flatMap(r => (r.status === 'fulfilled' ? [r.value] : []));
        expect(fulfilled.filter(r => r.created)).toHaveLength(1);
        const rows = await orm.em.fork().find(Subject, {});
        expect(rows).toHaveLength(1);
        const [row] = rows;
        const caller = Number(row.name.replace('caller ', ''));
        expect(row).toMatchObject({ name: `caller ${caller}`, score: caller });
        expect(fulfilled.map(r => r.entity.score)).toContain(caller);
        expect(row.plan).toBe(fulfilled.find(r => r.created)!.entity.plan);
        expect(fulfilled.every(r => r.entity.id === row.id)).toBe(true);
      });

      it('throws MultipleResultsError and writes nothing when the table lacks the unique key the entity declares', async () => {
        const index = `${model.table}_handle_unique`;
        const [drop, restore] =
          db.name === 'postgresql'
            ? [`alter table ${model.table} drop constraint ${index}`, `alter table ${model.table} add constraint ${index} unique (handle)`]
            : db.name === 'sqlite'
              ? [`drop index ${index}`, `create unique index ${index} on ${model.table} (handle)`]
              : [`alter table ${model.table} drop index ${index}`, `alter table ${model.table} add unique index ${index} (handle)`];
        await orm.em.fork().execute(drop);
        try {
          await orm.em.fork().insertMany(Subject, [{ handle: 'twin', name: 'One' }, { handle: 'twin', name: 'Two' }]);
          const em = orm.em.fork();
          await mode.run(em, async tx => {
            log.clear();
            // `create` makes the new row creatable, so the one statement serves the call on PostgreSQL
            const error = await tx.updateOrCreate(Subject, { handle: 'twin' }, { plan: 'x' }, { name: 'Three' }).catch((e: unknown) => e);
            expect(error).toBeInstanceOf(MultipleResultsError);
            expect(statements().some(firstLook)).toBe(true);
            expect(statements().some(q => q.includes('with found as (update'))).toBe(one);
            if (one) {
              // the one statement was undone by PostgreSQL's cardinality violation, which says what to do
              expect((error as Error).message).toMatch(/so its update was undone and nothing was written\. .* \(run your migrations\)/);
              expect((error as Error).cause).toMatchObject({ code: '21000' });
            }
            // a caller's transaction is still usable
            expect(await tx.count(Subject)).toBe(2);
          });
          expect(em.getUnitOfWork().getIdentityMap().values().filter(e => e instanceof Subject && e.plan === 'x')).toEqual([]);
          const rows = await orm.em.fork().find(Subject, { handle: 'twin' }, { orderBy: { name: 'asc' } });
          expect(rows.map(row => [row.name, row.plan ?? null])).toEqual([['One', null], ['Two', null]]);
        } finally {
          await orm.schema.clearDatabase();
          await orm.em.fork().execute(restore);
        }
      });
    });

    it('runs without a savepoint in the caller\'s transaction with savepoint: false', async () => {
      await orm.em.fork().updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
      log.clear();
      await orm.em.fork().transactional(tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' }, undefined, { savepoint: false }));
      expect(statements()).toEqual(
        one
          ? ['begin', oneStatement(['name'], ['created_at', 'handle', 'name', 'score', 'updated_at'], false), 'commit']
          : ['begin', lockingSelect, `update ${model.table} set name = ?, updated_at = ? where id = ?`, 'commit'],
      );
    });

    if (one) it('locks and flushes instead of the one statement where it cannot serve exactly', async () => {
      const em = orm.em.fork();
      const { entity: mine } = await em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
      const cases: [string, () => Promise<unknown>][] = [
        ['an empty update', () => em.updateOrCreate(Subject, { handle: 'ada' }, {}, { name: 'Ada' })],
        // the error of creating it (no name) is thrown only when no row matches
        ['a new row that cannot be created', () => em.updateOrCreate(Subject, { handle: 'ada' }, { plan: 'pro' })],
      ];
      for (const [name, call] of cases) {
        log.clear();
        await call();
        expect(statements(), name).toContain(lockingSelect);
        expect(statements().some(q => q.includes('with found as')), name).toBe(false);
        expect(await stored('ada'), name).toEqual(state(mine));
        expect(em.getUnitOfWork().getById(Subject.name, mine.id)).toBe(mine);
      }
      expect(mine).toMatchObject({ plan: 'pro' });
      // a relation to a managed entity is bound as its key
      const team = em.create(Team, { name: 'red' });
      await em.flush();
      log.clear();
      await em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada', team });
      expect(statements()).toEqual([oneStatement(['name', 'team_id'], ['created_at', 'handle', 'name', 'score', 'team_id', 'updated_at'], false)]);
      expect(mine.team).toBe(team);
      expect(await stored('ada')).toEqual(state(mine));
      // the TimestampSubscriber refuses a change of @CreatedAt in the flush
      await expect(em.updateOrCreate(Subject, { handle: 'ada' }, { createdAt: new Date(0) })).rejects.toThrow(/createdAt/);
      expect(await stored('ada')).toEqual(state(mine));
    });

    if (one) it('lets the database name a conflict on another unique key: the statement twice, then the insert without ON CONFLICT', async () => {
      const { entity: ada } = await orm.em.fork().updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
      log.clear();
      const em = orm.em.fork();
      await expect(em.updateOrCreate(Subject, { handle: 'bob' }, { name: 'Bob' }, { id: ada.id })).rejects.toBeInstanceOf(UniqueConstraintViolationException);
      const statement = oneStatement(['name'], ['created_at', 'handle', 'id', 'name', 'score', 'updated_at'], false);
      expect(statements()).toEqual([statement, statement, 'insert into player (created_at, handle, id, name, score, updated_at) values (?, ?, ?, ?, ?, ?) returning *']);
      expect(await stored('bob')).toBeNull();
      expect(await stored('ada')).toEqual(state(ada));
      expect(em.getUnitOfWork().getIdentityMap().values()).toEqual([]);
    });

    if (db.name !== 'sqlite') describe.each(modes)('a row another transaction inserts meanwhile, $name', mode => {
      it('is locked and updated once that transaction commits, not inserted twice', async () => {
        const other = orm.em.fork();
        await other.begin();
        await other.getOrCreate(Subject, { handle: 'ada' }, { name: 'Ada', plan: 'theirs' });
        log.clear();
        const em = orm.em.fork();
        // PostgreSQL: the locking select (the one statement's update) cannot see the uncommitted row, the insert
        // waits for it, finds it after the commit, and the call looks again; InnoDB: the locking select itself waits for the row
        const call = mode.run(em, tx => tx.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' }, { plan: 'mine' }));
        try {
          await lockWait();
        } finally {
          await other.commit();
        }
        const result = await call;
        expect(result.created).toBe(false);
        expect(result.entity).toMatchObject({ handle: 'ada', name: 'Ada L.', plan: 'theirs' });
        const sent = statements();
        expect(await stored('ada')).toEqual(state(result.entity));
        expect(em.getUnitOfWork().getById(Subject.name, result.entity.id)).toBe(result.entity);
        expect(em.getUnitOfWork().computeChangeSets(), 'nothing left to flush').toBeUndefined();
        expect(em.getUnitOfWork().getChangeSets()).toEqual([]);
        expect(sent.filter(firstLook)).toHaveLength(db.name === 'postgresql' ? 2 : 1);
        if (one) {
          // the other transaction's commit, then, inside a transaction, the caller's: the statements autocommit outside one
          expect(sent.filter(q => q === 'commit')).toHaveLength(mode.name === 'outside a transaction' ? 1 : 2);
        } else if (db.name === 'postgresql' && mode.name === 'outside a transaction') {
          // the first transaction wrote nothing and ends; the second one locks and updates
          expect(sent.filter(q => q === 'commit')).toHaveLength(3);
          expect(sent.filter(q => q === begin[0])).toHaveLength(2);
        }
      });
    });

    if (db.name !== 'sqlite') describe('under REPEATABLE READ', () => {
      it('throws TransactionRetryError for a row committed after the snapshot (PostgreSQL), locks and updates it (MariaDB)', async () => {
        const em = orm.em.fork();
        await em.begin({ isolationLevel: IsolationLevel.REPEATABLE_READ });
        try {
          expect(await em.count(Subject)).toBe(0); // takes the snapshot
          await orm.em.fork().updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
          const call = em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' });
          if (db.name === 'postgresql') {
            await expect(call).rejects.toBeInstanceOf(TransactionRetryError);
            // the savepoint was rolled back: the transaction goes on
            expect(await em.count(Team)).toBe(0);
          } else {
            // InnoDB's locking read sees the latest committed row, whatever the snapshot
            await expect(call).resolves.toMatchObject({ created: false, entity: { name: 'Ada L.' } });
          }
        } finally {
          await em.commit();
        }
        expect(await stored('ada')).toMatchObject({ name: db.name === 'postgresql' ? 'Ada' : 'Ada L.' });
      });

      if (db.name === 'postgresql') it('lets PostgreSQL\'s serialization failure through for a row changed or deleted after the snapshot', async () => {
        for (const change of ['update', 'delete'] as const) {
          await orm.schema.clearDatabase();
          await orm.em.fork().updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
          const em = orm.em.fork();
          await em.begin({ isolationLevel: IsolationLevel.REPEATABLE_READ });
          try {
            expect(await em.count(Subject)).toBe(1); // takes the snapshot
            await (change === 'update'
              ? orm.em.fork().nativeUpdate(Subject, { handle: 'ada' }, { plan: 'elsewhere' })
              : orm.em.fork().nativeDelete(Subject, { handle: 'ada' }));
            // 40001 "could not serialize access due to concurrent update/delete", from the locking select
            await expect(em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' })).rejects.toMatchObject({ code: '40001' });
            expect(await em.count(Team), 'the savepoint was rolled back: the transaction goes on').toBe(0);
          } finally {
            await em.rollback();
          }
        }
      });

      if (db.name !== 'postgresql') it('throws TransactionRetryError for a row the snapshot shows but that was deleted since (MariaDB)', async () => {
        await orm.em.fork().updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada' });
        const em = orm.em.fork();
        await em.begin({ isolationLevel: IsolationLevel.REPEATABLE_READ });
        try {
          expect(await em.count(Subject)).toBe(1); // takes the snapshot
          await orm.em.fork().nativeDelete(Subject, { handle: 'ada' });
          const call = em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' });
          await expect(call).rejects.toThrow(TransactionRetryError);
          await expect(em.updateOrCreate(Subject, { handle: 'ada' }, { name: 'Ada L.' })).rejects.toThrow(/found no row to lock 2 times/);
        } finally {
          await em.rollback();
        }
        expect(await stored('ada')).toBeNull();
      });
    });
  });

  it.each<[string, object, object | undefined, RegExp]>([
    ['update contradicting where', { handle: 'bob', name: 'x' }, undefined, /'handle' has one value in `where` and another/],
    ['create contradicting where', { name: 'x' }, { handle: 'bob' }, /'handle' has one value in `where` and another/],
    ['an unknown property in update', { nickname: 'x' }, undefined, /writes `update` to a Member row, but 'nickname' is not a property/],
    ['an unknown property in create', { name: 'x' }, { nickname: 'x' }, /writes `create` to a Member row, but 'nickname' is not a property/],
    ['a primary key in update', { id: 5, name: 'x' }, undefined, /would change the primary key 'id'/],
  ])('refuses %s with a usage error before any SQL', async (_, update, create, message) => {
    const em = orm.em.fork();
    const call = em.updateOrCreate(Member, { handle: 'ada' }, update as never, create as never);
    await expect(call).rejects.toBeInstanceOf(CoasterUsageError);
    await expect(em.updateOrCreate(Member, { handle: 'ada' }, update as never, create as never)).rejects.toThrow(message);
    expect(log.queries).toEqual([]);
  });

  it('refuses a collection in update or create with a usage error before any SQL', async () => {
    const em = orm.em.fork();
    await expect(em.updateOrCreate(Team, { id: 1 }, { members: [] })).rejects.toThrow(/`update` gives the collection 'members'/);
    await expect(em.updateOrCreate(Team, { id: 1 }, { name: 'x' }, { members: [] })).rejects.toThrow(/`create` gives the collection 'members'/);
    await expect(em.updateOrCreate(Team, { id: 1 }, { members: [] })).rejects.toBeInstanceOf(CoasterUsageError);
    expect(log.queries).toEqual([]);
  });

  it('applies getOrCreate\'s where rules before any SQL', async () => {
    const em = orm.em.fork();
    await expect(em.updateOrCreate(Member, { name: 'Ada' }, { plan: 'x' })).rejects.toThrow(/is race-safe only when a unique constraint covers `where`/);
    await expect(em.updateOrCreate(Member, { handle: { $like: 'a%' } } as never, {})).rejects.toThrow(/is a query operator/);
    await expect(em.updateOrCreate(Member, {}, { name: 'x' })).rejects.toBeInstanceOf(CoasterUsageError);
    expect(log.queries).toEqual([]);
  });

  it.each(models)('throws MultipleResultsError when where matches several rows (checkUnique: false), nothing written: $name', async ({ entity: Subject }) => {
    const em = orm.em.fork();
    await em.updateOrCreate(Subject, { handle: 'a' }, { name: 'Twin' });
    await em.updateOrCreate(Subject, { handle: 'b' }, { name: 'Twin' });
    await expect(em.updateOrCreate(Subject, { name: 'Twin' }, { plan: 'x' }, { handle: 'c' }, { checkUnique: false })).rejects.toBeInstanceOf(
      MultipleResultsError,
    );
    expect(await orm.em.fork().count(Subject, { plan: 'x' })).toBe(0);
  });

  it('skips the flush of nothing before its statements, but flushes for a flush listener registered at run time', async () => {
    const fresh = await db.init({ entities });
    const commits = vi.spyOn(UnitOfWork.prototype, 'commit');
    onTestFinished(async () => {
      commits.mockRestore();
      await closeOrm(fresh.orm);
    });
    // PostgreSQL's one statement, on an empty EntityManager: no flush at all (elsewhere the locking path flushes)
    const em = fresh.orm.em.fork();
    await em.updateOrCreate(Player, { handle: 'ada' }, { name: 'Ada' });
    if (db.name === 'postgresql') {
      expect(commits).not.toHaveBeenCalled();
      expect(fresh.log.statements.map(q => q.replace(/"/g, ''))).toEqual([expect.stringContaining('with found as (update player')]);
    }

    // a listener added to the EventManager after the first call: the flush before the statements reaches it
    commits.mockClear();
    const watcher = new FlushWatcher();
    em.getEventManager().registerSubscriber(watcher);
    em.clear();
    const { entity } = await em.updateOrCreate(Player, { handle: 'ada' }, { name: 'Ada L.' });
    expect(commits).toHaveBeenCalled();
    expect(watcher.flushes).toBeGreaterThanOrEqual(1);
    expect(entity).toMatchObject({ handle: 'ada', name: 'Ada L.' });
    expect(em.getUnitOfWork().getById(Player.name, entity.id)).toBe(entity);
    expect(await fresh.orm.em.fork().findOneOrFail(Player, { handle: 'ada' })).toMatchObject({ name: 'Ada L.' });
  });

  it('is offered by CoasterEntityRepository', async () => {
    const members = orm.em.fork().getRepository(Member);
    expect(await members.updateOrCreate({ handle: 'ada' }, { name: 'Ada' })).toMatchObject({ created: true, entity: { name: 'Ada' } });
    expect(await members.updateOrCreate({ handle: 'ada' }, { name: 'Ada L.' })).toMatchObject({ created: false, entity: { name: 'Ada L.' } });
  });
});

/**
 * Three connections, not eight: node-sqlite3 runs statements on libuv's pool of four threads, and a
 * BEGIN IMMEDIATE waiting for the write lock keeps its thread busy, so with more waiters than threads the
 * holder could not run its next statement until the busy timeout (test/sessions/sqliteFile.test.ts races
 * separate processes instead).
 */
const SQLITE_CONNECTIONS = 3;

describe(`updateOrCreate on a SQLite file shared by ${SQLITE_CONNECTIONS} connections`, () => {
  const orms: MikroORM[] = [];
  let directory: string;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'coaster-update-'));
    const options = defineCoasterConfig({ driver: SqliteDriver, dbName: join(directory, 'db.sqlite'), entities });
    for (let i = 0; i < SQLITE_CONNECTIONS; i++) {
      // each ORM has its one connection to the file; every transaction begins IMMEDIATE
      orms.push(await MikroORM.init(options));
    }
    await orms[0].schema.createSchema();
  });
  afterAll(async () => {
    for (const orm of orms) {
      await orm.close(true);
    }
    await rm(directory, { recursive: true, force: true });
  });

  it('gives racing callers one row, no error, one caller\'s values: the write lock is held from the select to the commit', async () => {
    const results = await Promise.all(
      orms.map((orm, i) =>
        (orm.em.fork() as CoasterEntityManager).updateOrCreate(Member, { handle: 'race' }, { name: `caller ${i}`, score: i }),
      ),
    );
    expect(results.filter(r => r.created)).toHaveLength(1);
    const rows = await orms[0].em.fork().find(Member, {});
    expect(rows).toHaveLength(1);
    expect(results.map(r => r.entity.name)).toContain(rows[0].name);
    expect(rows[0].score).toBe(Number(rows[0].name.replace('caller ', '')));
  });
});

describe('updateOrCreate with disableTransactions', () => {
  it('rejects with MikroORM\'s ValidationError before writing: the lock needs a transaction', async () => {
    const { orm } = await sqlite.init({ entities, disableTransactions: true });
    try {
      const em = orm.em.fork();
      await expect(em.updateOrCreate(Member, { handle: 'ada' }, { name: 'Ada' })).rejects.toThrow(
        /An open transaction is required for this operation/,
      );
      expect(await orm.em.fork().count(Member)).toBe(0);
    } finally {
      await closeOrm(orm);
    }
  });
});
