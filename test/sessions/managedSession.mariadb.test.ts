import {
  BeforeCreate,
  DeadlockException,
  DriverException,
  Entity,
  IsolationLevel,
  MikroORM,
  PrimaryKey,
  Property,
  TransactionPropagation,
  Unique,
  type EventArgs,
} from '@mikro-orm/core';
import { MariaDbKnexDialect, MySqlKnexDialect } from '@mikro-orm/knex';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import mysql from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import {
  closeOrm,
  CommitOutcomeUnknownError,
  defineCoasterConfig,
  getOrm,
  initOrm,
  managedSession,
  ManagedSessionError,
  onCommit,
  TransactionRolledBackError,
  type CoasterEntityManager,
  type CoasterOptions,
} from '../../src/index.js';
import { closeOrm as closeTestOrm, mariadb, mariadbUrlFor, mysql as mysqlDriver, type TestDatabase, type TestOrm } from '../support/databases.js';
import { Counter, Note, sessionEntities } from '../support/sessionEntities.js';

import { sessionQueries } from '../support/sessionSql.js';

/** How many times {@link until} polls, 10 ms apart, before it gives up: 10 seconds. */
const POLLS = 1_000;

/** Polls `condition` until it holds. @throws when it still does not after {@link POLLS} polls. */
async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let poll = 0; poll < POLLS; poll++) {
    if (await condition()) {
      return;
    }
    await new Promise(resolve => setTimeout(resolve, 10));
  }
  throw new Error(`gave up waiting until ${what}`);
}

let testOrm: TestOrm | undefined;
const connections: mysql.Connection[] = [];

afterEach(async () => {
  for (const connection of connections.splice(0)) {
    await connection.end();
  }
  await closeOrm();
  await closeTestOrm(testOrm);
  testOrm = undefined;
});

/** A MariaDB database of its own through `db`'s driver, with the session entities, made the process-wide ORM. */
async function start(db: TestDatabase, options: Partial<CoasterOptions> = {}) {
  const { orm, log } = await db.init({ entities: sessionEntities, ...options });
  testOrm = orm;
  await initOrm(orm);
  return { orm, log };
}

/** A connection of its own to the ORM's database, outside its pool (closed after the test). */
async function anotherConnection(): Promise<mysql.Connection> {
  const connection = await mysql.createConnection({ uri: getOrm().config.get('clientUrl') });
  connections.push(connection);
  return connection;
}

/** Runs `sql` on a connection of its own, closed after it, and returns the rows. */
async function query<Row>(sql: string, params: unknown[] = []): Promise<Row[]> {
  const connection = await mysql.createConnection({ uri: getOrm().config.get('clientUrl') });
  try {
    const [rows] = await connection.query(sql, params);
    return rows as Row[];
  } finally {
    await connection.end();
  }
}

/** The bodies of the committed notes, read outside any session. */
async function committedBodies(): Promise<string[]> {
  return (await query<{ body: string }>('select body from note order by body')).map(row => row.body);
}

/** The id of the server connection (thread) serving `em`, on its transaction's connection inside a transaction. */
async function connectionId(em: CoasterEntityManager): Promise<number> {
  const [{ id }] = await em.execute<{ id: number | string }[]>('select connection_id() as id');
  return Number(id);
}

/** Waits until the server connection `id` runs an UPDATE (the server's process list; bounded poll). */
async function runningUpdate(id: number): Promise<void> {
  const watcher = await anotherConnection();
  await until(async () => {
    const [rows] = await watcher.query(`select 1 from information_schema.processlist where id = ? and info like 'update%'`, [id]);
    return (rows as unknown[]).length > 0;
  }, `connection ${id} runs an update`);
}

/**
 * Makes the nested transaction `tx` lose a deadlock: another connection, heavier (it inserted 200 rows; InnoDB
 * rolls back the lighter transaction of a deadlock), locks counter 2; `tx` locks counter 1, then asks for counter
 * 2; once it does (it then waits, or is about to), the other connection asks for counter 1, closing the cycle
 * whichever request comes last. Rejects with `tx`'s DeadlockException; the other connection then goes on and
 * rolls back.
 */
async function loseDeadlock(tx: CoasterEntityManager): Promise<never> {
  const other = await anotherConnection();
  await other.query('begin');
  await other.query('insert into counter (value) select seq from seq_1_to_200');
  await other.query('update counter set value = -1 where id = 2');
  await tx.nativeUpdate(Counter, { id: 1 }, { value: 1 });
  const id = await connectionId(tx);
  const otherWaits = runningUpdate(id).then(() => other.query('update counter set value = -1 where id = 1'));
  try {
    await tx.nativeUpdate(Counter, { id: 2 }, { value: 2 });
    throw new Error('the deadlock was expected to roll this transaction back');
  } finally {
    await otherWaits;
    await other.query('rollback');
  }
}

/** Set by a test: the next {@link Badge} to be inserted loses a deadlock first, inside the batch's savepoint. */
let deadlockNextBadge = false;

/** A row the batch methods insert; its `beforeCreate` runs inside the batch's savepoint, on its connection. */
@Entity()
class Badge {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  code!: string;

  @BeforeCreate()
  async loseDeadlockIfArmed(args: EventArgs<Badge>): Promise<void> {
    if (deadlockNextBadge) {
      deadlockNextBadge = false;
      await loseDeadlock(args.em as CoasterEntityManager);
    }
  }
}

describe.each([mariadb, mysqlDriver])('managed sessions on MariaDB through $name', db => {
  describe('readOnly', () => {
    it.each([undefined, IsolationLevel.READ_COMMITTED, IsolationLevel.SERIALIZABLE])(
      'with isolation level %s: begins with valid SQL, reads, and a write is refused (1792) with nothing written',
      async isolationLevel => {
        const { log } = await start(db);
        await managedSession(async em => em.create(Note, { owner: 'a', body: 'committed' }));
        log.clear();

        const count = await managedSession(em => em.count(Note), { readOnly: true, isolationLevel });
        expect(count).toBe(1);
        const begin = isolationLevel ? `set transaction isolation level ${isolationLevel}, read only` : 'set transaction read only';
        expect(log.queries).toEqual([begin, 'begin', 'select count(*) as `count` from `note` as `n0`', 'commit']);

        const write = managedSession(async em => em.create(Note, { owner: 'a', body: 'refused' }), { readOnly: true, isolationLevel });
        await expect(write).rejects.toBeInstanceOf(DriverException);
        await expect(write).rejects.toMatchObject({ errno: 1792, sqlState: '25006' });
        expect(await committedBodies()).toEqual(['committed']);
      },
    );

    it('applies the isolation level: READ COMMITTED sees a concurrent commit between two reads, the default REPEATABLE READ does not', async () => {
      await start(db);
      const countTwice = (isolationLevel?: IsolationLevel) =>
        managedSession(
          async em => {
            const before = await em.count(Note);
            await query(`insert into note (owner, body) values ('elsewhere', ?)`, [`${isolationLevel ?? 'default'}`]);
            return [before, await em.count(Note)];
          },
          { readOnly: true, isolationLevel },
        );
      expect(await countTwice(IsolationLevel.READ_COMMITTED)).toEqual([0, 1]);
      expect(await countTwice()).toEqual([1, 1]);
    });
  });

  describe('retries', () => {
    it('retries the loser of a real deadlock (1213), so both sessions commit', async () => {
      await start(db);
      const [first, second] = await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);
      let bothLocked!: () => void;
      const locked = new Promise<void>(resolve => (bothLocked = resolve));
      let lockers = 0;
      const errors: unknown[] = [];

      /** Locks `a`, waits until the other session locked `b`, then locks `b`: one of the two must deadlock. */
      const crossUpdate = (a: Counter, b: Counter) =>
        managedSession(
          async em => {
            await em.nativeUpdate(Counter, { id: a.id }, { value: 1 });
            if (++lockers === 2) {
              bothLocked();
            }
            await locked;
            await em.nativeUpdate(Counter, { id: b.id }, { value: 2 }).catch(error => {
              errors.push(error);
              throw error;
            });
          },
          { retries: 1, retryDelay: 1 },
        );

      await Promise.all([crossUpdate(first, second), crossUpdate(second, first)]);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(DeadlockException);
      expect(errors[0]).toMatchObject({ errno: 1213, sqlState: '40001' });
      // the loser's writes, made after the winner's: its first counter 1, its second 2
      const values = await query<{ value: number }>('select value from counter order by id');
      expect(values.map(row => row.value).sort()).toEqual([1, 2]);
    });

    it('retries a record changed since the snapshot (1020, innodb_snapshot_isolation)', async () => {
      await start(db, { pool: { min: 1, max: 1 } }); // one connection: the session variable stays for both attempts
      const { id } = await managedSession(async em => em.create(Counter, { value: 0 }));
      await getOrm().em.getConnection().execute('set session innodb_snapshot_isolation = on');
      let attempts = 0;
      const errors: unknown[] = [];

      const value = await managedSession(
        async em => {
          const counter = await em.findOneOrFail(Counter, id); // takes the snapshot
          if (++attempts === 1) {
            await query('update counter set value = 100 where id = ?', [id]);
          }
          counter.value += 1;
          await em.flush().catch(error => {
            errors.push(error);
            throw error;
          });
          return counter.value;
        },
        { retries: 1, retryDelay: 1 },
      );

      expect(attempts).toBe(2);
      expect(value).toBe(101);
      expect(errors).toEqual([expect.objectContaining({ errno: 1020 })]);
      expect(await query('select value from counter')).toEqual([{ value: 101 }]);
    });

    it('does not retry a lock wait timeout (1205): it fails the statement only', async () => {
      await start(db);
      await managedSession(async em => em.create(Counter, {}));
      const other = await anotherConnection();
      await other.query('begin');
      await other.query('update counter set value = -1 where id = 1');
      let attempts = 0;
      const session = managedSession(
        async em => {
          attempts++;
          await em.execute('set innodb_lock_wait_timeout = 1');
          await em.nativeUpdate(Counter, { id: 1 }, { value: 1 });
        },
        { retries: 3, retryDelay: 1 },
      );
      await expect(session).rejects.toMatchObject({ errno: 1205 });
      await other.query('rollback');
      expect(attempts).toBe(1);
    });
  });

  describe('a nested level that loses the whole transaction (deadlock, 1213)', () => {
    it("a batch's own savepoint too: the enclosing session rejects with TransactionRolledBackError, nothing committed", async () => {
      await start(db, { entities: [...sessionEntities, Badge] });
      await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);
      const nested: unknown[] = [];

      const session = managedSession(async em => {
        em.create(Note, { owner: 'outer', body: 'before' });
        await em.flush();
        deadlockNextBadge = true;
        await em.getOrCreateMany(Badge, [{ code: 'a' }, { code: 'b' }]).catch(error => nested.push(error));
        em.create(Note, { owner: 'outer', body: 'after' }); // would autocommit without the guard
      });

      const error = await session.catch((rejection: unknown) => rejection);
      expect(nested).toEqual([expect.any(DeadlockException)]);
      expect(error).toBeInstanceOf(TransactionRolledBackError);
      expect((error as TransactionRolledBackError).cause).toBe(nested[0]);
      expect(await committedBodies()).toEqual([]);
      expect(await query('select code from badge')).toEqual([]);
    });

    it("a batch's deadlock left uncaught is retried with the whole session by `retries`, which commits once", async () => {
      await start(db, { entities: [...sessionEntities, Badge] });
      await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);
      const attempts: unknown[] = [];
      const results = await managedSession(
        async em => {
          attempts.push(em);
          em.create(Note, { owner: 'outer', body: `attempt ${attempts.length}` });
          await em.flush();
          deadlockNextBadge = attempts.length === 1;
          return em.getOrCreateMany(Badge, [{ code: 'a' }, { code: 'b' }]);
        },
        { retries: 1, retryDelay: 1 },
      );
      expect(attempts).toHaveLength(2);
      expect(results.map(result => [result.entity.code, result.created])).toEqual([
        ['a', true],
        ['b', true],
      ]);
      expect(await committedBodies()).toEqual(['attempt 2']);
      expect(await query('select code from badge order by code')).toEqual([{ code: 'a' }, { code: 'b' }]);
    });

    it('rejects the outer session with TransactionRolledBackError instead of committing what follows the caught failure', async () => {
      const { log } = await start(db);
      await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);
      log.clear();
      const nested: unknown[] = [];
      const committed: string[] = [];

      const session = managedSession(async em => {
        em.create(Note, { owner: 'outer', body: 'before' });
        await em.flush();
        await em.transactional(tx => loseDeadlock(tx)).catch(error => nested.push(error));
        em.create(Note, { owner: 'outer', body: 'after' }); // would autocommit without the guard
        onCommit(() => committed.push('ran'));
      });

      const error = await session.catch((rejection: unknown) => rejection);
      expect(nested).toEqual([expect.any(DeadlockException)]);
      expect(error).toBeInstanceOf(TransactionRolledBackError);
      expect((error as TransactionRolledBackError).cause).toBe(nested[0]);
      expect((error as Error).message).toMatch(/^The database rolled back this whole transaction when a nested transaction [\s\S]* Run the whole transaction again/);
      expect(committed).toEqual([]);
      expect(await committedBodies()).toEqual([]);
      const queries = sessionQueries(log);
      expect(queries.slice(queries.indexOf('rollback to savepoint `trx1`'))).toEqual([
        'rollback to savepoint `trx1`',
        'select @@in_transaction as open',
        'start transaction read only',
        'rollback',
      ]);
    });

    it('refuses a write after the caught failure (1792 in the read-only stand-in), attached to the TransactionRolledBackError', async () => {
      await start(db);
      await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);

      const session = managedSession(async em => {
        em.create(Note, { owner: 'outer', body: 'before' });
        await em.flush();
        await em.transactional(tx => loseDeadlock(tx)).catch(() => undefined);
        em.create(Note, { owner: 'outer', body: 'after' });
        await em.flush();
      });

      const error = await session.catch((rejection: unknown) => rejection);
      expect(error).toBeInstanceOf(TransactionRolledBackError);
      expect((error as TransactionRolledBackError).afterwards).toMatchObject({ errno: 1792 });
      expect(await committedBodies()).toEqual([]);
    });

    it('through nested sessions and em.transactional levels alike; retries re-run the whole session, which then commits once', async () => {
      await start(db);
      await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);
      let attempts = 0;
      const levels: unknown[] = [];

      await managedSession(
        async em => {
          attempts++;
          em.create(Note, { owner: 'outer', body: 'before' });
          await em.flush();
          await managedSession(async session =>
            session.transactional(async tx => {
              if (attempts === 1) {
                await tx.transactional(inner => loseDeadlock(inner)).catch(error => levels.push(error));
              }
            }),
          ).catch(error => levels.push(error));
          em.create(Note, { owner: 'outer', body: 'after' });
        },
        { retries: 1, retryDelay: 1 },
      );

      expect(attempts).toBe(2);
      // the deadlocked level, then the nested session around the em.transactional level around it
      expect(levels).toEqual([expect.any(DeadlockException), expect.any(TransactionRolledBackError)]);
      expect(await committedBodies()).toEqual(['after', 'before']);
    });

    it('leaves the outer session alone when a REQUIRES_NEW transaction inside it (another connection) loses a deadlock', async () => {
      const { log } = await start(db);
      await managedSession(async em => [em.create(Counter, {}), em.create(Counter, {})]);
      log.clear();

      await managedSession(async em => {
        em.create(Note, { owner: 'outer', body: 'before' });
        await em.flush();
        const separate = em.transactional(tx => loseDeadlock(tx), { propagation: TransactionPropagation.REQUIRES_NEW });
        await expect(separate).rejects.toBeInstanceOf(DeadlockException);
        em.create(Note, { owner: 'outer', body: 'after' });
      });

      expect(await committedBodies()).toEqual(['after', 'before']);
      expect(sessionQueries(log)).not.toContain('select @@in_transaction as open');
    });

    it('leaves the outer session alone when the nested failure rolled back only its savepoint', async () => {
      const { log } = await start(db);
      await managedSession(async em => em.create(Note, { owner: 'first', body: 'taken' }));
      log.clear();

      await managedSession(async em => {
        em.create(Note, { owner: 'outer', body: 'before' });
        await em.flush();
        await em.execute('set innodb_lock_wait_timeout = 1');
        const other = await anotherConnection();
        await other.query('begin');
        await other.query(`update note set owner = 'locked' where body = 'taken'`);
        await em
          .transactional(tx => tx.nativeUpdate(Note, { body: 'taken' }, { owner: 'outer' }))
          .catch(error => expect(error).toMatchObject({ errno: 1205 })); // a lock wait timeout: the statement only
        await other.query('rollback');
        em.create(Note, { owner: 'outer', body: 'after' });
      });

      expect(await committedBodies()).toEqual(['after', 'before', 'taken']);
      expect(sessionQueries(log)).toContain('select @@in_transaction as open');
      expect(sessionQueries(log)).not.toContain('start transaction read only');
    });
  });

  describe('a COMMIT whose connection is killed', () => {
    it('rejects with CommitOutcomeUnknownError, never retried, and the next sessions commit', async () => {
      await start(db);
      let attempts = 0;
      const session = managedSession(
        async em => {
          attempts++;
          em.create(Note, { owner: 'session', body: 'lost' });
          await em.flush();
          await query(`kill ${await connectionId(em)}`);
        },
        { retries: 3, retryDelay: 1 },
      );

      const error = await session.catch((rejection: unknown) => rejection);
      expect(error).toBeInstanceOf(CommitOutcomeUnknownError);
      // the mariadb connector's 08S01 (ER_CMD_CONNECTION_CLOSED or ER_SOCKET_UNEXPECTED_CLOSE); mysql2's error has no
      // SQLSTATE, and which one it is depends on when the socket's end arrives: PROTOCOL_CONNECTION_LOST, EPIPE, or
      // "Can't add new command when connection is in closed state" (no code at all)
      const cause = (error as Error).cause as Error & { sqlState?: string };
      expect(cause.message).toMatch(/^COMMIT; - /);
      expect(cause.sqlState).toBe(db.name === 'mariadb' ? '08S01' : undefined);
      expect(attempts).toBe(1);
      expect(await committedBodies()).toEqual([]);
      const bodies = await Promise.all([0, 1, 2].map(i => managedSession(async em => em.create(Note, { owner: 'next', body: `next/${i}` }).body)));
      expect(bodies).toEqual(['next/0', 'next/1', 'next/2']);
    });
  });

  describe('the knex client class', () => {
    it("keeps the application's own, with read-only transactions with an isolation level still valid SQL", async () => {
      const sent: string[] = [];
      const Dialect = db.name === 'mariadb' ? MariaDbKnexDialect : MySqlKnexDialect;
      class RecordingDialect extends Dialect {
        _query(connection: unknown, obj: { sql: string }): unknown {
          sent.push(obj.sql);
          return super._query(connection, obj);
        }
      }
      await start(db, { driverOptions: { client: RecordingDialect } });
      sent.length = 0;
      await managedSession(em => em.count(Note), { readOnly: true, isolationLevel: IsolationLevel.REPEATABLE_READ });
      expect(sent).toEqual(['SET TRANSACTION ISOLATION LEVEL repeatable read, READ ONLY;', 'BEGIN;', 'select count(*) as `count` from `note` as `n0`', 'COMMIT;']);
    });
  });
});

describe('a MySQL-family driver whose knex client class is not known', () => {
  it('is refused at MikroORM.init', async () => {
    class UnknownMysqlDriver extends MariaDbDriver {
      override getDependencies(): string[] {
        return ['knex', 'some-mysql'];
      }
    }
    const init = MikroORM.init(defineCoasterConfig({ driver: UnknownMysqlDriver, clientUrl: mariadbUrlFor('test'), entities: sessionEntities, connect: false }));
    await expect(init).rejects.toBeInstanceOf(ManagedSessionError);
    await expect(init).rejects.toThrow(
      /^defineCoasterConfig\(\) makes read-only transactions with an isolation level valid SQL on MySQL and MariaDB .* a driver depending on knex, some-mysql\. Use @mikro-orm\/mariadb or @mikro-orm\/mysql, or pass the client class as driverOptions\.client\.$/,
    );
  });
});
