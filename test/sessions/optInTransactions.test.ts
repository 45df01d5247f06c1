import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { ManagedSessionError, closeOrm, defineCoasterConfig, initOrm, managedSession } from '../../src/index.js';
import { closeOrm as closeTestOrm, databases, type TestDatabase, type TestOrm } from '../support/databases.js';
import { Counter, Note, sessionEntities } from '../support/sessionEntities.js';
import { sessionQueries, sqlFor } from '../support/sessionSql.js';

let testOrm: TestOrm | undefined;

afterEach(async () => {
  await closeOrm();
  await closeTestOrm(testOrm);
  testOrm = undefined;
});

async function start(db: TestDatabase, optInTransactions: boolean) {
  const { orm, log } = await db.init({ entities: sessionEntities, optInTransactions });
  testOrm = orm;
  return { orm, log };
}

describe.each(databases)('opt-in transactions on $name', db => {
  const sql = sqlFor(db);
  const insertCounter = 'insert into "counter" ("value") values (?) returning "id"';
  const insertNote = 'insert into "note" ("owner", "body") values (?, ?) returning "id"';
  const selectNotes = 'select "n0".* from "note" as "n0"';

  it('a flush outside a transaction sends no BEGIN or COMMIT, inside transactional it does, a read never does', async () => {
    const { orm, log } = await start(db, true);

    const em = orm.em.fork();
    em.create(Note, { owner: 'a', body: 'autocommitted' });
    em.create(Counter, {});
    await em.flush();
    expect(sessionQueries(log)).toEqual(sql(insertCounter, insertNote));
    expect(await orm.em.fork().count(Note)).toBe(1);

    log.clear();
    await orm.em.fork().transactional(async tx => {
      tx.create(Note, { owner: 'a', body: 'atomic' });
      tx.create(Counter, {});
    });
    expect(sessionQueries(log)).toEqual(sql('begin', insertCounter, insertNote, 'commit'));

    log.clear();
    await orm.em.fork().find(Note, {});
    expect(sessionQueries(log)).toEqual(sql(selectNotes));
  });

  it('without the option, MikroORM wraps the same flush in a transaction', async () => {
    const { orm, log } = await start(db, false);
    const em = orm.em.fork();
    em.create(Note, { owner: 'a', body: 'implicit' });
    em.create(Counter, {});
    await em.flush();
    expect(sessionQueries(log)).toEqual(sql('begin', insertCounter, insertNote, 'commit'));
  });

  it('em.begin()...commit() is atomic, nested transactional is a savepoint, rollback leaves nothing', async () => {
    const { orm, log } = await start(db, true);
    const em = orm.em.fork();
    await em.begin();
    em.create(Note, { owner: 'a', body: 'outer' });
    await em.transactional(async tx => void tx.create(Note, { owner: 'a', body: 'nested' }));
    await em.commit();
    expect(sessionQueries(log)).toEqual(
      sql('begin', 'savepoint "trx1"', insertNote, 'release savepoint "trx1"', insertNote, 'commit'),
    );

    log.clear();
    const other = orm.em.fork();
    await other.begin();
    other.create(Note, { owner: 'b', body: 'rolled back' });
    await other.flush();
    await other.rollback();
    expect(sessionQueries(log)).toEqual(sql('begin', insertNote, 'rollback'));
    expect((await orm.em.fork().find(Note, {}, { orderBy: { body: 'asc' } })).map(n => n.body)).toEqual(['nested', 'outer']);
  });

  it('managed sessions keep their transaction', async () => {
    const { orm, log } = await start(db, true);
    await initOrm(orm);
    await managedSession(async em => void em.create(Note, { owner: 'a', body: 'managed' }));
    expect(sessionQueries(log)).toEqual(sql('begin', insertNote, 'commit'));
  });

  it.each([
    { optInTransactions: true, countersLeft: 1 },
    { optInTransactions: false, countersLeft: 0 },
  ])(
    'the trade-off: a failing flush outside a transaction leaves $countersLeft of its earlier statements (optInTransactions: $optInTransactions)',
    async ({ optInTransactions, countersLeft }) => {
      const { orm, log } = await start(db, optInTransactions);
      await orm.em.fork().insert(Note, { owner: 'a', body: 'taken' });
      log.clear();

      const em = orm.em.fork();
      em.create(Note, { owner: 'b', body: 'taken' });
      em.create(Counter, {});
      await expect(em.flush()).rejects.toBeInstanceOf(UniqueConstraintViolationException);
      const statements = sql(insertCounter, insertNote);
      expect(sessionQueries(log)).toEqual(optInTransactions ? statements : ['begin', ...statements, 'rollback']);
      expect(await orm.em.fork().count(Counter)).toBe(countersLeft);
    },
  );
});

describe('the optInTransactions option', () => {
  it('sets implicitTransactions: false and is not passed on to MikroORM', () => {
    const options = defineCoasterConfig({ driver: SqliteDriver, dbName: ':memory:', optInTransactions: true });
    expect(options.implicitTransactions).toBe(false);
    expect(options).not.toHaveProperty('optInTransactions');
    expect(defineCoasterConfig({ driver: SqliteDriver, optInTransactions: false })).not.toHaveProperty('implicitTransactions');
  });

  it('refuses implicitTransactions: true beside it', () => {
    expect(() => defineCoasterConfig({ driver: SqliteDriver, optInTransactions: true, implicitTransactions: true })).toThrow(
      ManagedSessionError,
    );
    expect(() => defineCoasterConfig({ driver: SqliteDriver, optInTransactions: true, implicitTransactions: true })).toThrow(
      /^optInTransactions: true means flushes outside a transaction run without one \(implicitTransactions: false\), but implicitTransactions: true was also given/,
    );
  });
});
