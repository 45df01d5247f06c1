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
import { IsolationLevel, MikroORM, type EventSubscriber } from '@mikro-orm/core';
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
const CONTENTION_ROUNDS = 30;
/** Rows per batch in the batch table, and how many batches each side runs (after a quarter as many to warm up). */
const BATCH = 1_000;
const BATCH_ITERATIONS = Number(process.env.BENCH_BATCH_ITERATIONS ?? 20);

interface Row {
  case: string;
  baseline: string;
  baselineMs: number;
  subjectMs: number;
  /** The ratio the issue asks for; `undefined` for rows that only explain the others. */
  target?: number;
}

/** The rows of one table, in the order they were measured. */
class Rows {
  readonly all: Row[] = [];

  /** Adds the case `name` against `baseline`, from `compare`'s medians. */
  add(name: string, baseline: string, [baselineMs, subjectMs]: [number, number], target?: number): void {
    this.all.push({ case: name, baseline, baselineMs, subjectMs, target });
  }
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
 * The batch table of every database: getOrCreateMany of `BATCH` new and existing rows against `floor` (named
 * `floorName`), of new rows against `em.create` + `flush` of the same rows, against `em.upsertMany` and against
 * `BATCH` getOrCreate calls (unless `loop` is false). Rows named `stored-*` are inserted first.
 */
async function batchRows<D extends AbstractSqlDriver>(
  em: CoasterEntityManager<D>,
  floorName: string,
  floor: (names: string[]) => Promise<unknown>,
  loop = true,
): Promise<Row[]> {
  const rows = new Rows();
  const many = (names: string[]) => em.getOrCreateMany(Tag, names.map(name => ({ name })));
  await many(batchNames('stored'));
  em.clear();
  const compared = (baseline: (i: number) => Promise<unknown>, subject: (i: number) => Promise<unknown>, iterations = BATCH_ITERATIONS, warmUp = iterations / 4) =>
    compare(baseline, subject, () => em.clear(), iterations, warmUp);
  rows.add(`getOrCreateMany, ${BATCH} new rows`, floorName, await compared(i => floor(batchNames(`batch-floor-${i}`)), i => many(batchNames(`new-${i}`))), 2);
  rows.add(`getOrCreateMany, ${BATCH} existing rows`, floorName, await compared(() => floor(batchNames('stored')), () => many(batchNames('stored'))), 2);
  const flush = (i: number) => {
    batchNames(`flush-${i}`).forEach(name => em.create(Tag, { name }));
    return em.flush();
  };
  rows.add(`getOrCreateMany, ${BATCH} new rows`, 'em.create + flush', await compared(flush, i => many(batchNames(`new2-${i}`))), 0.9);
  rows.add(
    `em.upsertMany (onConflictAction: 'ignore'), ${BATCH} new rows`,
    floorName,
    await compared(
      i => floor(batchNames(`batch-floor2-${i}`)),
      i => em.upsertMany(Tag, batchNames(`upsert-${i}`).map(name => ({ name })), { onConflictAction: 'ignore' }),
    ),
  );
  if (loop) {
    const calls = async (i: number) => {
      for (const name of batchNames(`loop-${i}`)) {
        await em.getOrCreate(Tag, { name });
      }
    };
    rows.add(`getOrCreateMany, ${BATCH} new rows`, `${BATCH} getOrCreate calls`, await compared(calls, i => many(batchNames(`new3-${i}`)), Math.ceil(BATCH_ITERATIONS / 4), 1), 0.1);
  }
  return rows.all;
}

/**
 * WORKERS callers racing getOrCreateMany on overlapping, shuffled `BATCH`-key batches, outside transactions:
 * rows stored, created flags counted, errors escaped (deadlocks among them), in a table titled after `title`, the database.
 */
async function racingBatches<D extends AbstractSqlDriver>(orm: MikroORM<D, CoasterEntityManager<D>>, title: string): Promise<void> {
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
  console.log(`\n${title} racing batches: ${WORKERS} callers, overlapping ${BATCH}-key batches, outside transactions\n`);
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

/** A contention worker running `insert` for every key in one MikroORM transaction (at the database's default isolation level unless `isolationLevel` is given). */
function ormWorker<D extends AbstractSqlDriver>(
  orm: MikroORM<D, CoasterEntityManager<D>>,
  insert: (em: CoasterEntityManager<D>, name: string) => Promise<unknown>,
  isolationLevel?: IsolationLevel,
): Worker {
  return keys =>
    orm.em.fork().transactional(
      async em => {
        for (const name of keys) {
          await insert(em, name);
        }
      },
      { isolationLevel },
    );
}

/**
 * What the tables of a database server measure with: the library's ORMs, and the raw driver alone as the floor.
 * PostgreSQL and MariaDB run the same tables ({@link serverTables}) against their own floor.
 */
interface ServerBench<D extends AbstractSqlDriver> {
  /** The title of its tables, e.g. `PostgreSQL`. */
  title: string;
  /** The floor's row label, e.g. `floor (node-postgres)`. */
  floorName: string;
  /** The ORM whose failsafeAdd takes the fast path. */
  orm: MikroORM<D, CoasterEntityManager<D>>;
  /** An ORM with a flush subscriber, so its failsafeAdd takes the savepoint path, as before the fast path. */
  savepointOrm: MikroORM<D, CoasterEntityManager<D>>;
  /** The floor, on the connection the tables hold: inserts `name`, or finds it when it exists. */
  floorInsert(name: string): Promise<unknown>;
  /** The batch floor, on that connection: gets or creates `names`. */
  floorBatch(names: string[]): Promise<unknown>;
  /** Sends `begin` or `rollback` on that connection. */
  floorQuery(sql: 'begin' | 'rollback'): Promise<unknown>;
  /** The floor's contention worker, on connections of its own. */
  floorWorker: Worker;
  /**
   * Whether a select and an insert can go as one statement or string, as on PostgreSQL (a CTE, or two statements
   * in one string): the targets of a duplicate in a transaction, of getOrCreate's miss and of updateOrCreate need it.
   * Without it (MariaDB) those cases say how many round trips they take, and have no target.
   */
  oneRoundTrip: boolean;
}

/**
 * The tables of a database server: single rows in and outside a transaction, batches, racing batches, and
 * contention, each case beside a baseline of the same run.
 */
async function serverTables<D extends AbstractSqlDriver>(bench: ServerBench<D>): Promise<void> {
  const { title, floorName, orm, savepointOrm, floorInsert, oneRoundTrip } = bench;
  /** What a case that needs {@link ServerBench.oneRoundTrip} says where it takes `count` round trips instead. */
  const roundTrips = (count: number) => (oneRoundTrip ? '' : ` (${count} round trips)`);
  await orm.schema.createSchema();
  const rows = new Rows();
  const newTag = (em: CoasterEntityManager<D>, name: string) => em.create(Tag, { name }, { persist: false });
  const add = (em: CoasterEntityManager<D>, name: string, options?: { savepoint: false }) => em.failsafeAdd(newTag(em, name), { name }, options);
  const persist = (em: CoasterEntityManager<D>, prefix: string) => (i: number) => em.persist(em.create(Tag, { name: `${prefix}-${i}` })).flush();

  // inside a transaction (rolled back, so every case starts from the same table)
  await inRolledBackTransaction(orm, async em => {
    await add(em, 'existing');
    em.clear();
    const reset = () => em.clear();
    rows.add('in a transaction: failsafeAdd, new row', 'persist + flush', await compare(persist(em, 'persist'), i => add(em, `fast-${i}`), reset), 1.3);
    rows.add(
      `in a transaction: failsafeAdd, existing row${roundTrips(2)}`,
      'failsafeAdd, new row',
      await compare(i => add(em, `fast2-${i}`), () => add(em, 'existing'), reset),
      oneRoundTrip ? 1.15 : undefined,
    );
    rows.add(
      'in a transaction: failsafeAdd, new row, { savepoint: false }',
      'persist + flush',
      await compare(persist(em, 'persist2'), i => add(em, `nosp-${i}`, { savepoint: false }), reset),
    );
    // the floor in a transaction of its own, rolled back too
    await bench.floorQuery('begin');
    try {
      rows.add('in a transaction: getOrCreate, new row', floorName, await compare(i => floorInsert(`tx-raw-${i}`), i => em.getOrCreate(Tag, { name: `tx-get-${i}` }), reset));
    } finally {
      await bench.floorQuery('rollback');
    }
  });
  await inRolledBackTransaction(savepointOrm, async em => {
    await add(em, 'existing');
    em.clear();
    const reset = () => em.clear();
    rows.add('in a transaction: savepoint path, new row (before)', 'persist + flush', await compare(persist(em, 'persist'), i => add(em, `slow-${i}`), reset));
    rows.add('in a transaction: savepoint path, existing row (before)', 'persist + flush', await compare(persist(em, 'persist2'), () => add(em, 'existing'), reset));
  });

  // outside a transaction (rows stay; every name is new)
  const em = orm.em.fork();
  await add(em, 'existing');
  em.clear();
  const reset = () => em.clear();
  const existing = () => add(em, 'existing');
  rows.add('outside: failsafeAdd, new row', 'persist + flush', await compare(persist(em, 'op'), i => add(em, `on-${i}`), reset), 0.75);
  rows.add('outside: failsafeAdd, existing row', 'persist + flush', await compare(persist(em, 'op2'), existing, reset), 0.75);
  rows.add('outside: failsafeAdd, new row', floorName, await compare(i => floorInsert(`raw-${i}`), i => add(em, `on2-${i}`), reset), 1.7);
  rows.add('outside: failsafeAdd, existing row', floorName, await compare(() => floorInsert('existing'), existing, reset), 1.7);
  rows.add(
    "outside: em.upsert (onConflictAction: 'ignore'), new row",
    floorName,
    await compare(i => floorInsert(`raw2-${i}`), i => em.upsert(Tag, { name: `upsert-${i}` }, { onConflictAction: 'ignore' }), reset),
  );
  const slowEm = savepointOrm.em.fork();
  rows.add('outside: savepoint path, existing row (before)', floorName, await compare(() => floorInsert('existing'), () => add(slowEm, 'existing'), () => slowEm.clear()));
  rows.add(
    `outside: getOrCreate, new row${roundTrips(2)}`,
    floorName,
    await compare(i => floorInsert(`raw3-${i}`), i => em.getOrCreate(Tag, { name: `get-${i}` }), reset),
    oneRoundTrip ? 1.6 : undefined,
  );
  rows.add('getOrCreate, existing row', 'findOne', await compare(() => em.findOne(Tag, { name: 'existing' }), () => em.getOrCreate(Tag, { name: 'existing' }), reset), 1.1);
  rows.add(
    `outside: updateOrCreate, existing row${roundTrips(5)}`,
    'em.upsert, existing row',
    await compare(
      i => em.upsert(Tag, { name: 'existing', note: `upsert-${i}` }),
      i => em.updateOrCreate(Tag, { name: 'existing' }, { note: `update-${i}` }),
      reset,
    ),
    oneRoundTrip ? 1.3 : undefined,
  );
  rows.add(
    `outside: updateOrCreate, new row${roundTrips(5)}`,
    'em.upsert, new row',
    await compare(
      i => em.upsert(Tag, { name: `upsert-new-${i}`, note: 'new' }),
      i => em.updateOrCreate(Tag, { name: `update-new-${i}` }, { note: 'new' }),
      reset,
    ),
    oneRoundTrip ? 1.3 : undefined,
  );
  printRows(title, rows.all);
  printRows(`${title}, batches of ${BATCH} rows, outside a transaction`, await batchRows(orm.em.fork(), floorName, bench.floorBatch), BATCH_ITERATIONS);
  await racingBatches(orm, title);

  const results = await contention(
    [
      ['floor', bench.floorWorker],
      ['failsafeAdd', ormWorker(orm, (em, name) => add(em, name))],
      // under REPEATABLE READ (MariaDB's default), findOrCreate throws TransactionRetryError for a row committed after
      // its select took the snapshot; READ COMMITTED is the documented way to get the row instead
      ['findOrCreate', ormWorker(orm, (em, name) => em.findOrCreate(Tag, { name }), IsolationLevel.READ_COMMITTED)],
      ['upsert-ignore', ormWorker(orm, (em, name) => em.upsert(Tag, { name }, { onConflictAction: 'ignore' }))],
      ['savepoint-path', ormWorker(savepointOrm, (em, name) => add(em, name))],
    ],
    prefix => orm.em.fork().count(Tag, { name: { $like: `${prefix}%` } }),
  );
  const floor = results[0];
  const labels: Record<string, string> = {
    floor: floorName,
    findOrCreate: 'findOrCreate (READ COMMITTED)',
    'upsert-ignore': "em.upsert (onConflictAction: 'ignore')",
    'savepoint-path': 'failsafeAdd, savepoint path (before)',
  };
  console.log(`\n${title} contention: ${WORKERS} workers x ${KEYS} keys x ${CONTENTION_ROUNDS} rounds, each worker one transaction per round, operations taking turns by round\n`);
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
}

type PostgresEm = CoasterEntityManager<PostgreSqlDriver>;

/** PostgreSQL's tables, in a scratch database of the server at $COASTER_TEST_POSTGRES_URL (a throwaway one when nothing answers). */
async function postgresTables(): Promise<void> {
  const adminUrl = process.env[POSTGRES_URL_VARIABLE] || DEFAULT_POSTGRES_URL;
  const server = (await postgresAnswers(adminUrl)) ? undefined : await startThrowawayPostgres();
  const admin = new pg.Client({ connectionString: server?.url ?? adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${BENCH_DATABASE} with (force)`);
  await admin.query(`create database ${BENCH_DATABASE}`);
  const url = new URL(server?.url ?? adminUrl);
  url.pathname = `/${BENCH_DATABASE}`;
  const options = { driver: PostgreSqlDriver, clientUrl: url.toString(), entities: [Tag], pool: { max: WORKERS + 2 } };
  const orm = await MikroORM.init<PostgreSqlDriver, PostgresEm>(defineCoasterConfig(options));
  const savepointOrm = await MikroORM.init<PostgreSqlDriver, PostgresEm>(defineCoasterConfig({ ...options, subscribers: [new FlushListener()] }));
  // a connection for each contention worker, and one more for `raw`, which the other tables hold throughout
  const pool = new pg.Pool({ connectionString: url.toString(), max: WORKERS + 1 });
  const raw = await pool.connect();
  try {
    await serverTables({
      title: 'PostgreSQL',
      floorName: 'floor (node-postgres)',
      orm,
      savepointOrm,
      floorInsert: name => floorInsert(raw, name),
      floorBatch: names => floorBatch(raw, names),
      floorQuery: sql => raw.query(sql),
      floorWorker: rawWorker(() => pool.connect(), floorInsert),
      oneRoundTrip: true,
    });
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
    const rows = new Rows();
    const add = (em: SqliteEm, name: string) => em.failsafeAdd(em.create(Tag, { name }, { persist: false }), { name });
    /** The four cases, `fast` and `slow` being EntityManagers of the two ORMs, in or outside a transaction. */
    const cases = async (where: string, fast: SqliteEm, slow: SqliteEm) => {
      await add(fast, 'existing');
      await add(slow, 'existing');
      const reset = () => {
        fast.clear();
        slow.clear();
      };
      rows.add(`${where}: failsafeAdd, new row`, 'savepoint path', await compare(i => add(slow, `${where}-${i}`), i => add(fast, `${where}-${i}`), reset), 1);
      rows.add(`${where}: failsafeAdd, existing row`, 'savepoint path', await compare(() => add(slow, 'existing'), () => add(fast, 'existing'), reset), 1);
    };
    await inRolledBackTransaction(orm, fast => inRolledBackTransaction(savepointOrm, slow => cases('in a transaction', fast, slow)));
    await cases('outside', orm.em.fork(), savepointOrm.em.fork());
    return rows.all;
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
    // without the loop of getOrCreate calls: each of them commits to the file, 1,000 file syncs a batch
    return await batchRows(em, 'floor (same driver)', names => sqliteFloorBatch(em, names), false);
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
 * The batch floor on MariaDB: what mysql2 alone needs to get or create `names`: one multi-row `insert ignore ...
 * returning *`, then one select of the names it did not return. `INSERT IGNORE` is what a hand-written batch
 * would send; the library never does, since it turns truncation, NULL and foreign key errors into warnings too.
 */
async function mariadbFloorBatch(connection: mysql.Connection, names: string[]): Promise<unknown[]> {
  const [inserted] = await connection.query(`insert ignore into bench_tag (name) values ${names.map(() => '(?)').join(', ')} returning *`, names);
  const returned = new Set((inserted as { name: string }[]).map(row => row.name));
  const missing = names.filter(name => !returned.has(name));
  const [found] = missing.length === 0 ? [[]] : await connection.query(`select * from bench_tag where name in (${missing.map(() => '?').join(', ')})`, missing);
  return [...(inserted as unknown[]), ...(found as unknown[])];
}

/**
 * MariaDB's tables through `@mikro-orm/mariadb`, in a scratch database of the server at $COASTER_TEST_MARIADB_URL,
 * against the raw mysql2 floor; left out, saying so, when no server answers there. The fast path sends `insert
 * ... returning *` alone and the select only after a 1062: a new row is one round trip, a duplicate two
 * (PostgreSQL sends both statements as one string; MariaDB's connectors run several statements in one round
 * trip only with the connection-wide `multipleStatements` option, which the library cannot turn on), so the
 * "existing row vs new row" target has no MariaDB counterpart.
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
    await serverTables({
      title: 'MariaDB (@mikro-orm/mariadb)',
      floorName: 'floor (mysql2)',
      orm,
      savepointOrm,
      floorInsert: name => mariadbFloorInsert(raw, name),
      floorBatch: names => mariadbFloorBatch(raw, names),
      floorQuery: sql => raw.query(sql),
      floorWorker: rawWorker(() => pool.getConnection(), mariadbFloorInsert),
      oneRoundTrip: false,
    });
  } finally {
    await raw.end();
    await pool.end();
    await orm.close();
    await savepointOrm.close();
    await mariadbAdmin(serverUrl, `drop database if exists ${BENCH_DATABASE}`);
  }
}

if (chosen.includes('postgresql')) {
  await postgresTables();
}
if (chosen.includes('sqlite')) {
  printRows('SQLite (files)', await sqliteRows());
  printRows(`SQLite (a file), batches of ${BATCH} rows, outside a transaction`, await sqliteBatchRows(), BATCH_ITERATIONS);
}
if (chosen.includes('mariadb')) {
  await mariadbTables();
}
