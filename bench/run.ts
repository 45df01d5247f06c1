/**
 * `npm run bench`: what the race-safe helpers cost on PostgreSQL, each beside a baseline measured in
 * the same run, then failsafeAdd's fast path against its savepoint path on SQLite, and SQLite's batches. Uses
 * $COASTER_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) to create a scratch
 * database, or a throwaway server when nothing answers there; SQLite uses files in a temporary folder.
 * MariaDB's table uses $COASTER_TEST_MARIADB_URL (default mysql://root@127.0.0.1:3306/test), and is left out,
 * saying so, when no server answers there. $BENCH_DATABASES (comma-separated: postgresql, sqlite, mariadb; all three
 * when unset) runs only the tables of those databases, e.g. `BENCH_DATABASES=mariadb npm run bench`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MikroORM, type EventSubscriber } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { SqliteDriver } from '@mikro-orm/sqlite';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { BenchTag as Tag } from './entities.js';
import { type CoasterEntityManager, defineCoasterConfig } from '../src/index.js';
import {
  DEFAULT_POSTGRES_URL,
  POSTGRES_URL_VARIABLE,
  postgresAnswers,
  startThrowawayPostgres,
} from '../test/support/postgresServer.js';
import { DEFAULT_MARIADB_URL, MARIADB_URL_VARIABLE, mariadbAdmin, mariadbAnswers } from '../test/support/mariadbServer.js';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 400);
/** The databases whose tables run, from $BENCH_DATABASES; all three when it is unset. */
const DATABASES = ['postgresql', 'sqlite', 'mariadb'] as const;
const chosen = (process.env.BENCH_DATABASES || DATABASES.join(',')).split(',').map(name => name.trim());
const unknown = chosen.filter(name => !(DATABASES as readonly string[]).includes(name));
if (unknown.length > 0) {
  throw new Error(`BENCH_DATABASES: unknown ${unknown.join(', ')}; choose among ${DATABASES.join(', ')}`);
}
/** The scratch database of this run on PostgreSQL and MariaDB, named after the process so that runs side by side do not drop each other's. */
const BENCH_DATABASE = `coaster_bench_${process.pid}`;
const WORKERS = 8;
const KEYS = 20;
const CONTENTION_ROUNDS = 10;
/** Rows per batch in the batch table, and how many batches each side runs (after a quarter as many to warm up). */
const BATCH = 1_000;
const BATCH_ITERATIONS = Number(process.env.BENCH_BATCH_ITERATIONS ?? 20);

type Em = CoasterEntityManager<PostgreSqlDriver>;

interface Row {
  case: string;
  baseline: string;
  baselineMs: number;
  subjectMs: number;
  /** The ratio the issue asks for; `undefined` for rows that only explain the others. */
  target?: number;
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function time(op: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await op();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * Runs `baseline` and `subject` alternately, ITERATIONS times each after a warm-up, and returns their
 * median milliseconds. `reset` runs untimed after every operation.
 */
async function compare(
  baseline: (i: number) => Promise<unknown>,
  subject: (i: number) => Promise<unknown>,
  reset: () => void | Promise<void>,
  iterations = ITERATIONS,
  warmUp = Math.max(100, iterations / 4),
): Promise<[number, number]> {
  const samples: [number[], number[]] = [[], []];
  for (let i = -Math.ceil(warmUp); i < iterations; i++) {
    for (const [side, op] of [baseline, subject].entries()) {
      const ms = await time(() => op(i));
      await reset();
      if (i >= 0) {
        samples[side].push(ms);
      }
    }
  }
  return [median(samples[0]), median(samples[1])];
}

/** Runs `fn` in a transaction that is rolled back, so every case starts from the same table. */
async function inRolledBackTransaction<D extends AbstractSqlDriver>(
  orm: MikroORM<D, CoasterEntityManager<D>>,
  fn: (em: CoasterEntityManager<D>) => Promise<void>,
) {
  const em = orm.em.fork();
  await em.begin();
  try {
    await fn(em);
  } finally {
    await em.rollback();
  }
}

/** Prints `rows` as a table of medians, ratios and targets. */
function printRows(database: string, rows: Row[], iterations = ITERATIONS): void {
  console.log(`${database}, ${iterations} iterations per side, medians in milliseconds\n`);
  console.table(
    rows.map(r => ({
      case: r.case,
      baseline: r.baseline,
      'baseline ms': r.baselineMs.toFixed(3),
      'subject ms': r.subjectMs.toFixed(3),
      ratio: (r.subjectMs / r.baselineMs).toFixed(2),
      target: r.target === undefined ? '' : `<= ${r.target}`,
      met: r.target === undefined ? '' : r.subjectMs / r.baselineMs <= r.target ? 'yes' : 'NO',
    })),
  );
}

/** A flush subscriber: an ORM with one inserts on failsafeAdd's savepoint path, as before the fast path. */
class FlushListener implements EventSubscriber {
  afterFlush(): void {}
}

/** The floor: what node-postgres alone needs to insert a row or find the existing one. */
async function floorInsert(client: pg.ClientBase, name: string): Promise<unknown> {
  const inserted = await client.query('insert into bench_tag (name) values ($1) on conflict do nothing returning *', [name]);
  return inserted.rows[0] ?? (await client.query('select * from bench_tag where name = $1 limit 2', [name])).rows[0];
}

/**
 * The batch floor: what node-postgres alone needs to get or create `names`: one insert of them all that skips
 * existing ones, then one select of the names it did not return.
 */
async function floorBatch(client: pg.ClientBase, names: string[]): Promise<unknown[]> {
  const inserted = await client.query<{ name: string }>('insert into bench_tag (name) select unnest($1::text[]) on conflict do nothing returning *', [names]);
  const returned = new Set(inserted.rows.map(row => row.name));
  const missing = names.filter(name => !returned.has(name));
  const found = missing.length === 0 ? [] : (await client.query('select * from bench_tag where name = any($1)', [missing])).rows;
  return [...inserted.rows, ...found];
}

/** `BATCH` names, `prefix-0` ... */
const batchNames = (prefix: string) => Array.from({ length: BATCH }, (_, k) => `${prefix}-${k}`);

/**
 * The rows every database's batch table has: getOrCreateMany of `BATCH` new and existing rows against `floor`
 * (named `floorName`), and of new rows against `em.create` + `flush` of the same rows. Rows named `stored-*` are
 * inserted first.
 */
async function commonBatchRows<D extends AbstractSqlDriver>(
  em: CoasterEntityManager<D>,
  floorName: string,
  floor: (names: string[]) => Promise<unknown>,
): Promise<Row[]> {
  const rows: Row[] = [];
  const row = (name: string, baseline: string, [baselineMs, subjectMs]: [number, number], target?: number) =>
    rows.push({ case: name, baseline, baselineMs, subjectMs, target });
  const reset = () => em.clear();
  const many = (names: string[]) => em.getOrCreateMany(Tag, names.map(name => ({ name })));
  await many(batchNames('stored'));
  em.clear();
  const warmUp = BATCH_ITERATIONS / 4;
  const compared = (baseline: (i: number) => Promise<unknown>, subject: (i: number) => Promise<unknown>) =>
    compare(baseline, subject, reset, BATCH_ITERATIONS, warmUp);
  row(`getOrCreateMany, ${BATCH} new rows`, floorName, await compared(i => floor(batchNames(`batch-floor-${i}`)), i => many(batchNames(`new-${i}`))), 2);
  row(`getOrCreateMany, ${BATCH} existing rows`, floorName, await compared(() => floor(batchNames('stored')), () => many(batchNames('stored'))), 2);
  const flush = (i: number) => {
    batchNames(`flush-${i}`).forEach(name => em.create(Tag, { name }));
    return em.flush();
  };
  row(`getOrCreateMany, ${BATCH} new rows`, 'em.create + flush', await compared(flush, i => many(batchNames(`new2-${i}`))), 0.9);
  return rows;
}

/** The PostgreSQL batch table: the common rows against node-postgres, `em.upsertMany`, and getOrCreate in a loop. */
async function batchRows(orm: MikroORM<PostgreSqlDriver, Em>, raw: pg.ClientBase): Promise<Row[]> {
  const em = orm.em.fork();
  const rows = await commonBatchRows(em, 'floor (node-postgres)', names => floorBatch(raw, names));
  const row = (name: string, baseline: string, [baselineMs, subjectMs]: [number, number], target?: number) =>
    rows.push({ case: name, baseline, baselineMs, subjectMs, target });
  const reset = () => em.clear();
  const many = (prefix: string) => (i: number) => em.getOrCreateMany(Tag, batchNames(`${prefix}-${i}`).map(name => ({ name })));
  const warmUp = BATCH_ITERATIONS / 4;
  row(
    `em.upsertMany (onConflictAction: 'ignore'), ${BATCH} new rows`,
    'floor (node-postgres)',
    await compare(
      i => floorBatch(raw, batchNames(`batch-floor2-${i}`)),
      i => em.upsertMany(Tag, batchNames(`upsert-${i}`).map(name => ({ name })), { onConflictAction: 'ignore' }),
      reset,
      BATCH_ITERATIONS,
      warmUp,
    ),
  );
  row(
    `getOrCreateMany, ${BATCH} new rows`,
    `${BATCH} getOrCreate calls`,
    await compare(
      async i => {
        for (const name of batchNames(`loop-${i}`)) {
          await em.getOrCreate(Tag, { name });
        }
      },
      many('new3'),
      reset,
      Math.ceil(BATCH_ITERATIONS / 4),
      1,
    ),
    0.1,
  );
  return rows;
}

/**
 * WORKERS callers racing getOrCreateMany on overlapping, shuffled `BATCH`-key batches, outside transactions:
 * rows stored, created flags counted, errors escaped (deadlocks among them).
 */
async function racingBatches(orm: MikroORM<PostgreSqlDriver, Em>): Promise<void> {
  const keys = batchNames('race');
  const batches = Array.from({ length: WORKERS }, (_, worker) =>
    keys
      .filter((_, k) => (k + worker) % 4 !== 0)
      .map((name, k) => ({ name, order: (k * 7919 + worker * 104729) % 10007 }))
      .sort((a, b) => a.order - b.order)
      .map(({ name }) => ({ name })),
  );
  let escaped = 0;
  let deadlocks = 0;
  let created = 0;
  const elapsed = await time(() =>
    Promise.all(
      batches.map(rows =>
        orm.em
          .fork()
          .getOrCreateMany(Tag, rows)
          .then(
            results => (created += results.filter(result => result.created).length),
            (error: Error) => {
              escaped++;
              deadlocks += error.name === 'DeadlockException' ? 1 : 0;
            },
          ),
      ),
    ),
  );
  const stored = await orm.em.fork().count(Tag, { name: { $like: 'race-%' } });
  console.log(`\nRacing batches: ${WORKERS} callers, overlapping ${BATCH}-key batches, outside transactions\n`);
  console.table([{ 'ms': elapsed.toFixed(1), 'rows (expected)': `${stored} (${BATCH})`, 'created (expected)': `${created} (${stored})`, 'errors escaped': escaped, deadlocks }]);
}

/** One contention round: WORKERS transactions inserting the same KEYS keys in the same order. */
type Worker = (keys: string[]) => Promise<unknown>;

/** A pooled connection of a raw driver (node-postgres or mysql2), as a floor worker uses it. */
interface RawConnection {
  query(sql: string): Promise<unknown>;
  release(): void;
}

/** The floor's {@link Worker}: one transaction on a connection of its own, inserting each key with `insert`. */
function rawWorker<C extends RawConnection>(connect: () => Promise<C>, insert: (connection: C, name: string) => Promise<unknown>): Worker {
  return async keys => {
    const connection = await connect();
    try {
      await connection.query('begin');
      for (const name of keys) {
        await insert(connection, name);
      }
      await connection.query('commit');
    } catch (error) {
      // the insert's error is the one to report, not a failing rollback's
      await connection.query('rollback').catch(() => undefined);
      throw error;
    } finally {
      connection.release();
    }
  };
}

/**
 * CONTENTION_ROUNDS rounds of each worker in `workers` (by label), taking turns round by round, so that a load
 * that changes while the table runs (other jobs on the machine) weighs on every operation alike: a round is
 * WORKERS calls of the worker racing on KEYS new keys. Resolves to each operation's throughput over its rounds.
 */
async function contention(
  workers: [label: string, worker: Worker][],
  count: (prefix: string) => Promise<number>,
): Promise<{ label: string; opsPerSecond: number; escaped: number; rows: number }[]> {
  const escaped = new Map(workers.map(([label]) => [label, 0]));
  const elapsed = new Map(workers.map(([label]) => [label, 0]));
  // round -1, untimed, opens every pool's connections
  for (let round = -1; round < CONTENTION_ROUNDS; round++) {
    for (const [label, worker] of workers) {
      const keys = Array.from({ length: KEYS }, (_, k) => (round < 0 ? `warm-up-${label}-${k}` : `${label}-${round}-${k}`));
      const ms = await time(() => Promise.all(Array.from({ length: WORKERS }, () => worker(keys).catch(() => escaped.set(label, escaped.get(label)! + 1)))));
      elapsed.set(label, elapsed.get(label)! + (round < 0 ? 0 : ms));
    }
  }
  const ops = WORKERS * KEYS * CONTENTION_ROUNDS;
  return Promise.all(
    workers.map(async ([label]) => ({
      label,
      opsPerSecond: Math.round((ops / elapsed.get(label)!) * 1000),
      escaped: escaped.get(label)!,
      rows: await count(`${label}-`),
    })),
  );
}

/** A contention worker running `insert` for every key in one MikroORM transaction. */
function ormWorker<D extends AbstractSqlDriver>(
  orm: MikroORM<D, CoasterEntityManager<D>>,
  insert: (em: CoasterEntityManager<D>, name: string) => Promise<unknown>,
): Worker {
  return keys =>
    orm.em.fork().transactional(async em => {
      for (const name of keys) {
        await insert(em, name);
      }
    });
}

async function main(): Promise<void> {
  const adminUrl = process.env[POSTGRES_URL_VARIABLE] || DEFAULT_POSTGRES_URL;
  const server = (await postgresAnswers(adminUrl)) ? undefined : await startThrowawayPostgres();
  const admin = new pg.Client({ connectionString: server?.url ?? adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${BENCH_DATABASE} with (force)`);
  await admin.query(`create database ${BENCH_DATABASE}`);
  const url = new URL(server?.url ?? adminUrl);
  url.pathname = `/${BENCH_DATABASE}`;

  const options = { driver: PostgreSqlDriver, clientUrl: url.toString(), entities: [Tag], pool: { max: WORKERS + 2 } };
  const orm = await MikroORM.init<PostgreSqlDriver, Em>(defineCoasterConfig(options));
  const savepointOrm = await MikroORM.init<PostgreSqlDriver, Em>(defineCoasterConfig({ ...options, subscribers: [new FlushListener()] }));
  // a connection for each contention worker, and one more for `raw`, which the other tables hold throughout
  const pool = new pg.Pool({ connectionString: url.toString(), max: WORKERS + 1 });
  const raw = await pool.connect();
  try {
    await orm.schema.createSchema();
    const rows: Row[] = [];
    const row = (name: string, baseline: string, [baselineMs, subjectMs]: [number, number], target?: number) =>
      rows.push({ case: name, baseline, baselineMs, subjectMs, target });
    const newTag = (em: Em, name: string) => em.create(Tag, { name }, { persist: false });

    // inside a transaction (rolled back, so every case starts from the same table)
    await inRolledBackTransaction(orm, async em => {
      await em.failsafeAdd(newTag(em, 'existing'));
      em.clear();
      const persistMs = await compare(
        i => em.persist(em.create(Tag, { name: `persist-${i}` })).flush(),
        i => em.failsafeAdd(newTag(em, `fast-${i}`), { name: `fast-${i}` }),
        () => em.clear(),
      );
      row('in a transaction: failsafeAdd, new row', 'persist + flush', persistMs, 1.3);
      row(
        'in a transaction: failsafeAdd, existing row',
        'failsafeAdd, new row',
        await compare(
          i => em.failsafeAdd(newTag(em, `fast2-${i}`), { name: `fast2-${i}` }),
          () => em.failsafeAdd(newTag(em, 'existing'), { name: 'existing' }),
          () => em.clear(),
        ),
        1.15,
      );
      row(
        "in a transaction: failsafeAdd, new row, { savepoint: false }",
        'persist + flush',
        await compare(
          i => em.persist(em.create(Tag, { name: `persist2-${i}` })).flush(),
          i => em.failsafeAdd(newTag(em, `nosp-${i}`), { name: `nosp-${i}` }, { savepoint: false }),
          () => em.clear(),
        ),
      );
    });
    await inRolledBackTransaction(orm, async em => {
      // the floor in a transaction of its own, rolled back too
      await raw.query('begin');
      try {
        row(
          'in a transaction: getOrCreate, new row',
          'floor (node-postgres)',
          await compare(i => floorInsert(raw, `tx-pg-${i}`), i => em.getOrCreate(Tag, { name: `tx-get-${i}` }), () => em.clear()),
        );
      } finally {
        await raw.query('rollback');
      }
    });
    await inRolledBackTransaction(savepointOrm, async em => {
      row(
        'in a transaction: savepoint path, new row (before)',
        'persist + flush',
        await compare(
          i => em.persist(em.create(Tag, { name: `persist-${i}` })).flush(),
          i => em.failsafeAdd(newTag(em, `slow-${i}`), { name: `slow-${i}` }),
          () => em.clear(),
        ),
      );
    });

    // outside a transaction (rows stay; every name is new)
    const em = orm.em.fork();
    await em.failsafeAdd(newTag(em, 'existing'));
    em.clear();
    const outside = (prefix: string) => (i: number) => em.failsafeAdd(newTag(em, `${prefix}-${i}`), { name: `${prefix}-${i}` });
    row('outside: failsafeAdd, new row', 'persist + flush', await compare(i => em.persist(em.create(Tag, { name: `op-${i}` })).flush(), outside('on'), () => em.clear()), 0.75);
    row(
      'outside: failsafeAdd, existing row',
      'persist + flush',
      await compare(
        i => em.persist(em.create(Tag, { name: `op2-${i}` })).flush(),
        () => em.failsafeAdd(newTag(em, 'existing'), { name: 'existing' }),
        () => em.clear(),
      ),
      0.75,
    );
    row('outside: failsafeAdd, new row', 'floor (node-postgres)', await compare(i => floorInsert(raw, `pg-${i}`), outside('on2'), () => em.clear()), 1.7);
    row(
      'outside: failsafeAdd, existing row',
      'floor (node-postgres)',
      await compare(
        () => floorInsert(raw, 'existing'),
        () => em.failsafeAdd(newTag(em, 'existing'), { name: 'existing' }),
        () => em.clear(),
      ),
      1.7,
    );
    row(
      "outside: em.upsert (onConflictAction: 'ignore'), new row",
      'floor (node-postgres)',
      await compare(i => floorInsert(raw, `pg2-${i}`), i => em.upsert(Tag, { name: `upsert-${i}` }, { onConflictAction: 'ignore' }), () => em.clear()),
    );
    const slowEm = savepointOrm.em.fork();
    row(
      'outside: savepoint path, existing row (before)',
      'floor (node-postgres)',
      await compare(
        () => floorInsert(raw, 'existing'),
        () => slowEm.failsafeAdd(newTag(slowEm, 'existing'), { name: 'existing' }),
        () => slowEm.clear(),
      ),
    );
    row('outside: getOrCreate, new row', 'floor (node-postgres)', await compare(i => floorInsert(raw, `pg3-${i}`), i => em.getOrCreate(Tag, { name: `get-${i}` }), () => em.clear()), 1.6);
    row(
      'getOrCreate, existing row',
      'findOne',
      await compare(
        () => em.findOne(Tag, { name: 'existing' }),
        () => em.getOrCreate(Tag, { name: 'existing' }),
        () => em.clear(),
      ),
      1.1,
    );

    row(
      'outside: updateOrCreate, existing row',
      'em.upsert, existing row',
      await compare(
        i => em.upsert(Tag, { name: 'existing', note: `upsert-${i}` }),
        i => em.updateOrCreate(Tag, { name: 'existing' }, { note: `update-${i}` }),
        () => em.clear(),
      ),
      1.3,
    );
    row(
      'outside: updateOrCreate, new row',
      'em.upsert, new row',
      await compare(
        i => em.upsert(Tag, { name: `upsert-new-${i}`, note: 'new' }),
        i => em.updateOrCreate(Tag, { name: `update-new-${i}` }, { note: 'new' }),
        () => em.clear(),
      ),
      1.3,
    );

    printRows('PostgreSQL', rows);
    printRows(`PostgreSQL, batches of ${BATCH} rows, outside a transaction`, await batchRows(orm, raw), BATCH_ITERATIONS);
    await racingBatches(orm);

    const count = (prefix: string) => orm.em.fork().count(Tag, { name: { $like: `${prefix}%` } });
    const floorWorker = rawWorker(() => pool.connect(), floorInsert);
    const results = await contention(
      [
        ['floor', floorWorker],
        ['failsafeAdd', ormWorker(orm, (em, name) => em.failsafeAdd(newTag(em, name), { name }))],
        ['findOrCreate', ormWorker(orm, (em, name) => em.findOrCreate(Tag, { name }))],
        ['upsert-ignore', ormWorker(orm, (em, name) => em.upsert(Tag, { name }, { onConflictAction: 'ignore' }))],
        ['savepoint-path', ormWorker(savepointOrm, (em, name) => em.failsafeAdd(newTag(em, name), { name }))],
      ],
      count,
    );
    const floor = results[0];
    const labels: Record<string, string> = {
      floor: 'floor (node-postgres)',
      'upsert-ignore': "em.upsert (onConflictAction: 'ignore')",
      'savepoint-path': 'failsafeAdd, savepoint path (before)',
    };
    console.log(`\nContention: ${WORKERS} workers x ${KEYS} keys x ${CONTENTION_ROUNDS} rounds, each worker one transaction per round, operations taking turns by round\n`);
    console.table(
      results.map(r => ({
        operation: labels[r.label] ?? r.label,
        'ops/s': r.opsPerSecond,
        'vs floor': (r.opsPerSecond / floor.opsPerSecond).toFixed(2),
        target: r.label === 'failsafeAdd' ? '>= 0.45' : '',
        'errors escaped': r.escaped,
        'rows (expected)': `${r.rows} (${KEYS * CONTENTION_ROUNDS})`,
      })),
    );
  } finally {
    raw.release();
    await pool.end();
    await orm.close();
    await savepointOrm.close();
    await admin.query(`drop database if exists ${BENCH_DATABASE} with (force)`);
    await admin.end();
    await server?.stop();
  }
}

type SqliteEm = CoasterEntityManager<SqliteDriver>;

/**
 * failsafeAdd on SQLite, where the fast path sends `insert ... on conflict do nothing returning *` alone
 * (and the select only after a conflict): against the savepoint path, in and outside a transaction, for a
 * new and an existing row. Each ORM has a database file of its own in a temporary folder.
 */
async function sqliteRows(): Promise<Row[]> {
  const dir = await mkdtemp(join(tmpdir(), 'coaster-bench-'));
  const options = { driver: SqliteDriver, entities: [Tag] };
  const orm = await MikroORM.init<SqliteDriver, SqliteEm>(defineCoasterConfig({ ...options, dbName: join(dir, 'fast.sqlite') }));
  const savepointOrm = await MikroORM.init<SqliteDriver, SqliteEm>(
    defineCoasterConfig({ ...options, dbName: join(dir, 'savepoint.sqlite'), subscribers: [new FlushListener()] }),
  );
  try {
    await orm.schema.createSchema();
    await savepointOrm.schema.createSchema();
    const rows: Row[] = [];
    const row = (name: string, baseline: string, [baselineMs, subjectMs]: [number, number], target?: number) =>
      rows.push({ case: name, baseline, baselineMs, subjectMs, target });
    const add = (em: SqliteEm, name: string) => em.failsafeAdd(em.create(Tag, { name }, { persist: false }), { name });
    /** The four cases, `fast` and `slow` being EntityManagers of the two ORMs, in or outside a transaction. */
    const cases = async (where: string, fast: SqliteEm, slow: SqliteEm) => {
      await add(fast, 'existing');
      await add(slow, 'existing');
      const reset = () => {
        fast.clear();
        slow.clear();
      };
      row(`${where}: failsafeAdd, new row`, 'savepoint path', await compare(i => add(slow, `${where}-${i}`), i => add(fast, `${where}-${i}`), reset), 1);
      row(`${where}: failsafeAdd, existing row`, 'savepoint path', await compare(() => add(slow, 'existing'), () => add(fast, 'existing'), reset), 1);
    };
    await inRolledBackTransaction(orm, fast => inRolledBackTransaction(savepointOrm, slow => cases('in a transaction', fast, slow)));
    await cases('outside', orm.em.fork(), savepointOrm.em.fork());
    return rows;
  } finally {
    await orm.close();
    await savepointOrm.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The SQLite batch floor: the statements a batch needs, written by hand and sent through the same driver
 * (`em.execute`): one multi-row insert that skips existing names, then one select of the names it did not return.
 */
async function sqliteFloorBatch(em: SqliteEm, names: string[]): Promise<unknown[]> {
  const placeholders = names.map(() => '(?)').join(', ');
  const inserted = await em.execute<{ name: string }[]>(`insert into bench_tag (name) values ${placeholders} on conflict do nothing returning *`, names);
  const returned = new Set(inserted.map(row => row.name));
  const missing = names.filter(name => !returned.has(name));
  const found = missing.length === 0 ? [] : await em.execute(`select * from bench_tag where name in (${missing.map(() => '?').join(', ')})`, missing);
  return [...inserted, ...found];
}

/** getOrCreateMany of `BATCH` rows on a SQLite file: the common rows against the floor through the same driver. */
async function sqliteBatchRows(): Promise<Row[]> {
  const dir = await mkdtemp(join(tmpdir(), 'coaster-bench-'));
  const orm = await MikroORM.init<SqliteDriver, SqliteEm>(defineCoasterConfig({ driver: SqliteDriver, entities: [Tag], dbName: join(dir, 'batches.sqlite') }));
  try {
    await orm.schema.createSchema();
    const em = orm.em.fork();
    return await commonBatchRows(em, 'floor (same driver)', names => sqliteFloorBatch(em, names));
  } finally {
    await orm.close();
    await rm(dir, { recursive: true, force: true });
  }
}

type MariaDbEm = CoasterEntityManager<MariaDbDriver>;

/** The floor on MariaDB: what mysql2 alone needs to insert a row (`insert ... returning *`) or, on 1062, find it. */
async function mariadbFloorInsert(connection: mysql.Connection, name: string): Promise<unknown> {
  try {
    const [rows] = await connection.query('insert into bench_tag (name) values (?) returning *', [name]);
    return (rows as unknown[])[0];
  } catch (error) {
    if ((error as { errno?: number }).errno !== 1062) {
      throw error;
    }
    const [rows] = await connection.query('select * from bench_tag where name = ? limit 2', [name]);
    return (rows as unknown[])[0];
  }
}

/**
 * failsafeAdd on MariaDB through `@mikro-orm/mariadb`, against the same baselines as PostgreSQL's and the raw mysql2
 * floor, then under contention. The fast path sends `insert ... returning *` alone and the select only after a
 * 1062: a new row is one round trip, a duplicate two (PostgreSQL sends both statements as one string; MariaDB's
 * connectors run several statements in one round trip only with the connection-wide `multipleStatements`
 * option, which the library cannot turn on), so the "existing row vs new row" target has no MariaDB counterpart.
 */
async function mariadbTables(): Promise<void> {
  const serverUrl = process.env[MARIADB_URL_VARIABLE] || DEFAULT_MARIADB_URL;
  if (!(await mariadbAnswers(serverUrl))) {
    console.log(`\nMariaDB: no server answers at ${serverUrl}; its table is left out.`);
    return;
  }
  await mariadbAdmin(serverUrl, `drop database if exists ${BENCH_DATABASE}`, `create database ${BENCH_DATABASE}`);
  const url = new URL(serverUrl);
  url.pathname = `/${BENCH_DATABASE}`;
  const options = { driver: MariaDbDriver, clientUrl: url.toString(), entities: [Tag], pool: { max: WORKERS + 2 } };
  const orm = await MikroORM.init<MariaDbDriver, MariaDbEm>(defineCoasterConfig(options));
  const savepointOrm = await MikroORM.init<MariaDbDriver, MariaDbEm>(defineCoasterConfig({ ...options, subscribers: [new FlushListener()] }));
  const pool = mysql.createPool({ uri: url.toString(), connectionLimit: WORKERS });
  const raw = await mysql.createConnection({ uri: url.toString() });
  try {
    await orm.schema.createSchema();
    const rows: Row[] = [];
    const row = (name: string, baseline: string, [baselineMs, subjectMs]: [number, number], target?: number) =>
      rows.push({ case: name, baseline, baselineMs, subjectMs, target });
    const newTag = (em: MariaDbEm, name: string) => em.create(Tag, { name }, { persist: false });
    await inRolledBackTransaction(orm, async em => {
      await em.failsafeAdd(newTag(em, 'existing'));
      em.clear();
      row(
        'in a transaction: failsafeAdd, new row',
        'persist + flush',
        await compare(
          i => em.persist(em.create(Tag, { name: `persist-${i}` })).flush(),
          i => em.failsafeAdd(newTag(em, `fast-${i}`), { name: `fast-${i}` }),
          () => em.clear(),
        ),
        1.3,
      );
      row(
        'in a transaction: failsafeAdd, existing row (two round trips)',
        'failsafeAdd, new row',
        await compare(
          i => em.failsafeAdd(newTag(em, `fast2-${i}`), { name: `fast2-${i}` }),
          () => em.failsafeAdd(newTag(em, 'existing'), { name: 'existing' }),
          () => em.clear(),
        ),
      );
    });
    await inRolledBackTransaction(savepointOrm, async em => {
      await em.failsafeAdd(newTag(em, 'existing'));
      em.clear();
      row(
        'in a transaction: savepoint path, new row',
        'persist + flush',
        await compare(
          i => em.persist(em.create(Tag, { name: `persist-${i}` })).flush(),
          i => em.failsafeAdd(newTag(em, `slow-${i}`), { name: `slow-${i}` }),
          () => em.clear(),
        ),
      );
      row(
        'in a transaction: savepoint path, existing row',
        'persist + flush',
        await compare(
          i => em.persist(em.create(Tag, { name: `persist2-${i}` })).flush(),
          () => em.failsafeAdd(newTag(em, 'existing'), { name: 'existing' }),
          () => em.clear(),
        ),
      );
    });

    const em = orm.em.fork();
    await em.failsafeAdd(newTag(em, 'existing'));
    em.clear();
    const outside = (prefix: string) => (i: number) => em.failsafeAdd(newTag(em, `${prefix}-${i}`), { name: `${prefix}-${i}` });
    const existing = () => em.failsafeAdd(newTag(em, 'existing'), { name: 'existing' });
    const persist = (prefix: string) => (i: number) => em.persist(em.create(Tag, { name: `${prefix}-${i}` })).flush();
    row('outside: failsafeAdd, new row', 'persist + flush', await compare(persist('op'), outside('on'), () => em.clear()), 0.75);
    row('outside: failsafeAdd, existing row', 'persist + flush', await compare(persist('op2'), existing, () => em.clear()), 0.75);
    row('outside: failsafeAdd, new row', 'floor (mysql2)', await compare(i => mariadbFloorInsert(raw, `raw-${i}`), outside('on2'), () => em.clear()), 1.7);
    row('outside: failsafeAdd, existing row', 'floor (mysql2)', await compare(() => mariadbFloorInsert(raw, 'existing'), existing, () => em.clear()), 1.7);
    const slowEm = savepointOrm.em.fork();
    row(
      'outside: savepoint path, existing row',
      'floor (mysql2)',
      await compare(
        () => mariadbFloorInsert(raw, 'existing'),
        () => slowEm.failsafeAdd(newTag(slowEm, 'existing'), { name: 'existing' }),
        () => slowEm.clear(),
      ),
    );
    row('getOrCreate, existing row', 'findOne', await compare(() => em.findOne(Tag, { name: 'existing' }), () => em.getOrCreate(Tag, { name: 'existing' }), () => em.clear()), 1.1);
    printRows('MariaDB (@mikro-orm/mariadb)', rows);

    const count = (prefix: string) => orm.em.fork().count(Tag, { name: { $like: `${prefix}%` } });
    const floorWorker = rawWorker(() => pool.getConnection(), mariadbFloorInsert);
    const results = await contention(
      [
        ['floor', floorWorker],
        ['failsafeAdd', ormWorker(orm, (em, name) => em.failsafeAdd(newTag(em, name), { name }))],
        ['savepoint-path', ormWorker(savepointOrm, (em, name) => em.failsafeAdd(newTag(em, name), { name }))],
      ],
      count,
    );
    const floor = results[0];
    const labels: Record<string, string> = { floor: 'floor (mysql2)', 'savepoint-path': 'failsafeAdd, savepoint path' };
    console.log(`\nMariaDB contention: ${WORKERS} workers x ${KEYS} keys x ${CONTENTION_ROUNDS} rounds, each worker one transaction per round, operations taking turns by round\n`);
    console.table(
      results.map(r => ({
        operation: labels[r.label] ?? r.label,
        'ops/s': r.opsPerSecond,
        'vs floor': (r.opsPerSecond / floor.opsPerSecond).toFixed(2),
        target: r.label === 'failsafeAdd' ? '>= 0.45' : '',
        'errors escaped': r.escaped,
        'rows (expected)': `${r.rows} (${KEYS * CONTENTION_ROUNDS})`,
      })),
    );
  } finally {
    await raw.end();
    await pool.end();
    await orm.close();
    await savepointOrm.close();
    await mariadbAdmin(serverUrl, `drop database if exists ${BENCH_DATABASE}`);
  }
}

if (chosen.includes('postgresql')) {
  await main();
}
if (chosen.includes('sqlite')) {
  printRows('SQLite (files)', await sqliteRows());
  printRows(`SQLite (a file), batches of ${BATCH} rows, outside a transaction`, await sqliteBatchRows(), BATCH_ITERATIONS);
}
if (chosen.includes('mariadb')) {
  await mariadbTables();
}
