import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeOrm, postgresql, type QueryLog, type TestOrm } from '../support/databases.js';
import { Tag, raceEntities } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';

const WORKERS = 10;
const ROUNDS = 5;
const KEYS = ['news', 'sport', 'weather'];

/**
 * Several web workers sharing one PostgreSQL: each worker is an EntityManager in its own transaction
 * on its own connection, inserting the same few keys at the same moment.
 */
describe.each(insertPaths)('contention on postgresql on the $name path', path => {
  let orm: TestOrm;
  let log: QueryLog;

  beforeAll(async () => {
    ({ orm, log } = await postgresql.init({ entities: raceEntities, pool: { min: 0, max: WORKERS + 2 }, ...path.options() }));
  });
  afterAll(() => closeOrm(orm));

  it(`${WORKERS} concurrent transactions calling failsafeAdd and findOrCreate on ${KEYS.length} keys all get the one row`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const keys = KEYS.map(key => `${key}-${round}`);
      const seen = await Promise.all(
        Array.from({ length: WORKERS }, (_, worker) =>
          orm.em.fork().transactional(async em => {
            const rows: Tag[] = [];
            // every worker walks the keys in the same order, so workers queue behind each other instead of deadlocking
            for (const name of keys) {
              rows.push(
                worker % 2 === 0
                  ? await em.findOrCreate(Tag, { name })
                  : await em.failsafeAdd(em.create(Tag, { name }), { name }),
              );
            }
            return rows.map(({ id, name }) => ({ id, name }));
          }),
        ),
      );

      const stored = await orm.em.fork().find(Tag, { name: { $in: keys } }, { orderBy: { name: 'asc' } });
      expect(stored.map(t => t.name)).toEqual([...keys].sort());
      const idOf = new Map(stored.map(t => [t.name, t.id]));
      for (const rows of seen) {
        expect(rows).toEqual(keys.map(name => ({ id: idOf.get(name), name })));
      }
    }
    // the race was real: inserts did collide and were recovered
    if (path.name === 'savepoint') {
      expect(log.queries.filter(q => q.startsWith('rollback to savepoint')).length).toBeGreaterThan(0);
    } else {
      // more inserts than rows, every duplicate resolved without an error on the server
      expect(log.queries.filter(q => q.includes('on conflict do nothing')).length).toBeGreaterThan(KEYS.length * ROUNDS);
      expect(log.errors).toEqual([]);
    }
  });
});
