import { DeadlockException, IsolationLevel } from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TransactionRetryError } from '../../src/index.js';
import { allDrivers, closeOrm, type QueryLog, type TestOrm } from '../support/databases.js';
import { Tag, raceEntities } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';

const WORKERS = 8;
const KEYS = Array.from({ length: 20 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
/** Attempts per worker: a retry finds every row its first attempt raced for, so two would do. */
const ATTEMPTS = 5;

/** How each worker runs its calls: in a transaction of an isolation level (the database's default if none), or not. */
interface Mode {
  name: string;
  transaction: boolean;
  isolationLevel?: IsolationLevel;
}

const modes: Mode[] = [
  { name: 'in transactions of the default isolation level', transaction: true },
  { name: 'in REPEATABLE READ transactions', transaction: true, isolationLevel: IsolationLevel.REPEATABLE_READ },
  { name: 'in READ COMMITTED transactions', transaction: true, isolationLevel: IsolationLevel.READ_COMMITTED },
  { name: 'outside transactions', transaction: false },
];

/** A promise that resolves once `count` callers have arrived. */
function barrier(count: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>(resolve => (open = resolve));
  return () => {
    if (++arrived === count) {
      open();
    }
    return opened;
  };
}

/**
 * Several web workers sharing one database server: each worker is an EntityManager on its own connection,
 * calling getOrCreate and failsafeAdd on the same keys at the same moment. In a transaction, a worker may be
 * told to retry it (TransactionRetryError: a REPEATABLE READ snapshot hides the winner's row; on MariaDB also
 * DeadlockException, which InnoDB raises when waiters of one key queue shared locks): it rolls back and runs
 * the transaction again, as the README tells applications to. No other error may come out: never a bare
 * unique violation for a row that exists.
 */
describe.each(allDrivers.filter(db => db.name !== 'sqlite'))('contention on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;
    let log: QueryLog;

    beforeAll(async () => {
      ({ orm, log } = await db.init({ entities: raceEntities, pool: { min: 0, max: WORKERS + 2 }, ...path.options() }));
    });
    afterAll(() => closeOrm(orm));
    beforeEach(async () => {
      await orm.schema.clearDatabase();
      log.clear();
    });

    it.each(modes)(`${WORKERS} workers racing getOrCreate and failsafeAdd on ${KEYS.length} keys $name all get the one row`, async mode => {
      // in a transaction, every worker takes its snapshot before anyone inserts, so the race is certain
      const allStarted = barrier(WORKERS);
      const retries: unknown[] = [];
      const work = async (worker: number, em: TestOrm['em'], first: boolean) => {
        if (first && mode.transaction) {
          await em.count(Tag, { name: 'none' });
          await allStarted();
        }
        const rows: Tag[] = [];
        // every worker walks the keys in the same order, so workers queue behind each other
        for (const name of KEYS) {
          rows.push(
            worker % 2 === 0
              ? (await em.getOrCreate(Tag, { name })).entity
              : await em.failsafeAdd(em.create(Tag, { name }), { name }),
          );
        }
        return rows.map(({ id, name }) => ({ id, name }));
      };
      const seen = await Promise.all(
        Array.from({ length: WORKERS }, async (_, worker) => {
          for (let attempt = 0; ; attempt++) {
            const em = orm.em.fork();
            try {
              return mode.transaction
                ? await em.transactional(tx => work(worker, tx, attempt === 0), { isolationLevel: mode.isolationLevel })
                : await work(worker, em, attempt === 0);
            } catch (error) {
              const retry = error instanceof TransactionRetryError || (db.name !== 'postgresql' && error instanceof DeadlockException);
              if (!mode.transaction || !retry || attempt === ATTEMPTS - 1) {
                throw error;
              }
              retries.push(error);
            }
          }
        }),
      );

      const stored = await orm.em.fork().find(Tag, {}, { orderBy: { name: 'asc' } });
      expect(stored.map(t => t.name)).toEqual(KEYS);
      const idOf = new Map(stored.map(t => [t.name, t.id]));
      for (const rows of seen) {
        expect(rows).toEqual(KEYS.map(name => ({ id: idOf.get(name), name })));
      }
      const inserts = log.queries.filter(q => /insert into ["`]tag["`]/.test(q)).length;
      if (mode.transaction) {
        // the race was real: inserts did collide and were recovered
        expect(inserts).toBeGreaterThan(KEYS.length);
      }
      // a retry is only ever asked for where a snapshot can hide the winner's row, or InnoDB breaks a lock cycle
      if (mode.isolationLevel === IsolationLevel.READ_COMMITTED || (mode.transaction && !mode.isolationLevel && db.name === 'postgresql')) {
        expect(retries.filter(error => error instanceof TransactionRetryError)).toEqual([]);
      }
    });
  });
});
