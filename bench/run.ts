/**
 * `npm run bench`: what the race-safe helpers cost on PostgreSQL, each beside a baseline measured in
 * the same run. Uses $COASTER_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) to
 * create a scratch database, or a throwaway server when nothing answers there.
 */
import { MikroORM } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import pg from 'pg';
import { BenchTag as Tag } from './entities.js';
import { type CoasterEntityManager, defineCoasterConfig } from '../src/index.js';
import {
  DEFAULT_POSTGRES_URL,
  POSTGRES_URL_VARIABLE,
  postgresAnswers,
  startThrowawayPostgres,
} from '../test/support/postgresServer.js';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 400);
const WORKERS = 8;
const KEYS = 20;
const CONTENTION_ROUNDS = 5;

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
): Promise<[number, number]> {
  const samples: [number[], number[]] = [[], []];
  for (let i = -Math.max(100, ITERATIONS / 4); i < ITERATIONS; i++) {
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
async function inRolledBackTransaction(orm: MikroORM<PostgreSqlDriver, Em>, fn: (em: Em) => Promise<void>) {
  const em = orm.em.fork();
  await em.begin();
  try {
    await fn(em);
  } finally {
    await em.rollback();
  }
}

async function contention(
  orm: MikroORM<PostgreSqlDriver, Em>,
  label: string,
  insert: (em: Em, name: string) => Promise<unknown>,
): Promise<{ label: string; opsPerSecond: number; escaped: number; rows: number }> {
  let escaped = 0;
  let ops = 0;
  let elapsed = 0;
  for (let round = 0; round < CONTENTION_ROUNDS; round++) {
    const keys = Array.from({ length: KEYS }, (_, k) => `${label}-${round}-${k}`);
    elapsed += await time(() =>
      Promise.all(
        Array.from({ length: WORKERS }, () =>
          orm.em
            .fork()
            .transactional(async em => {
              for (const name of keys) {
                await insert(em, name);
                ops++;
              }
            })
            .catch(() => escaped++),
        ),
      ),
    );
  }
  const rows = await orm.em.fork().count(Tag, { name: { $like: `${label}-%` } });
  return { label, opsPerSecond: Math.round((ops / elapsed) * 1000), escaped, rows };
}

async function main(): Promise<void> {
  const adminUrl = process.env[POSTGRES_URL_VARIABLE] || DEFAULT_POSTGRES_URL;
  const server = (await postgresAnswers(adminUrl)) ? undefined : await startThrowawayPostgres();
  const admin = new pg.Client({ connectionString: server?.url ?? adminUrl });
  await admin.connect();
  await admin.query('drop database if exists coaster_bench with (force)');
  await admin.query('create database coaster_bench');
  const url = new URL(server?.url ?? adminUrl);
  url.pathname = '/coaster_bench';

  const orm = await MikroORM.init<PostgreSqlDriver, Em>(
    defineCoasterConfig({ driver: PostgreSqlDriver, clientUrl: url.toString(), entities: [Tag], pool: { max: WORKERS + 2 } }),
  );
  try {
    await orm.schema.createSchema();
    const rows: Row[] = [];

    await inRolledBackTransaction(orm, async em => {
      const [baselineMs, subjectMs] = await compare(
        i => em.persist(em.create(Tag, { name: `persist-${i}` })).flush(),
        i => em.failsafeAdd(em.create(Tag, { name: `failsafe-${i}` })),
        () => em.clear(),
      );
      rows.push({ case: 'insert: failsafeAdd (new row)', baseline: 'persist + flush', baselineMs, subjectMs, target: 1.3 });
    });

    await inRolledBackTransaction(orm, async em => {
      const [baselineMs, subjectMs] = await compare(
        i => em.persist(em.create(Tag, { name: `persist-${i}` })).flush(),
        async () => {
          await em.execute('savepoint bench');
          await em.execute('release savepoint bench');
        },
        () => em.clear(),
      );
      rows.push({ case: '(why) savepoint + release alone', baseline: 'persist + flush', baselineMs, subjectMs });
    });

    await inRolledBackTransaction(orm, async em => {
      await em.failsafeAdd(em.create(Tag, { name: 'existing' }));
      em.clear();
      const [baselineMs, subjectMs] = await compare(
        i => em.failsafeAdd(em.create(Tag, { name: `new-${i}` }), { name: `new-${i}` }),
        () => em.failsafeAdd(em.create(Tag, { name: 'existing' }), { name: 'existing' }),
        () => em.clear(),
      );
      rows.push({ case: 'conflict: failsafeAdd (existing key)', baseline: 'failsafeAdd (new row)', baselineMs, subjectMs, target: 1.6 });
    });

    await orm.em.fork().findOrCreate(Tag, { name: 'existing' });
    const reader = orm.em.fork();
    const [findMs, findOrCreateMs] = await compare(
      () => reader.findOne(Tag, { name: 'existing' }),
      () => reader.findOrCreate(Tag, { name: 'existing' }),
      () => reader.clear(),
    );
    rows.push({ case: 'findOrCreate (existing row)', baseline: 'findOne', baselineMs: findMs, subjectMs: findOrCreateMs, target: 1.1 });

    console.log(`PostgreSQL, ${ITERATIONS} iterations per side, medians in milliseconds\n`);
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

    const results = [
      await contention(orm, 'findOrCreate', (em, name) => em.findOrCreate(Tag, { name })),
      await contention(orm, 'failsafeAdd', (em, name) => em.failsafeAdd(em.create(Tag, { name }), { name })),
      await contention(orm, 'upsert-ignore', (em, name) => em.upsert(Tag, { name }, { onConflictAction: 'ignore' })),
    ];
    const base = results.find(r => r.label === 'upsert-ignore')!;
    console.log(`\nContention: ${WORKERS} workers x ${KEYS} keys x ${CONTENTION_ROUNDS} rounds, each worker one transaction per round\n`);
    console.table(
      results.map(r => ({
        operation: r.label === 'upsert-ignore' ? "em.upsert (onConflictAction: 'ignore')" : r.label,
        'ops/s': r.opsPerSecond,
        'vs upsert': (r.opsPerSecond / base.opsPerSecond).toFixed(2),
        'errors escaped': r.escaped,
        'rows (expected)': `${r.rows} (${KEYS * CONTENTION_ROUNDS})`,
      })),
    );
  } finally {
    await orm.close();
    await admin.query('drop database if exists coaster_bench with (force)');
    await admin.end();
    await server?.stop();
  }
}

await main();
