import { randomBytes } from 'node:crypto';
import { DefaultLogger, MikroORM, type LogContext, type LoggerOptions } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import pg from 'pg';
import { inject } from 'vitest';
import { type CoasterEntityManager, type CoasterOptions, defineCoasterConfig } from '../../src/index.js';
import { withPrimaryRelationships } from '../../src/primary/index.js';

export type TestOrm = MikroORM<AbstractSqlDriver, CoasterEntityManager>;

/** The SQL statements MikroORM ran, in order, as its logger saw them. */
export class QueryLog {
  readonly queries: string[] = [];
  /** The statements the database answered with an error (MikroORM logs them at level `error`). */
  readonly errors: string[] = [];

  /** Forgets what was logged so far. */
  clear(): void {
    this.queries.length = 0;
    this.errors.length = 0;
  }

  /** The logged statements, lower-cased, with transaction control statements kept. */
  get statements(): string[] {
    return this.queries.map(q => q.toLowerCase());
  }
}

class RecordingLogger extends DefaultLogger {
  constructor(
    options: LoggerOptions,
    private readonly queryLog: QueryLog,
  ) {
    super(options);
  }

  override logQuery(context: { query: string } & LogContext): void {
    this.queryLog.queries.push(context.query);
    if (context.level === 'error') {
      this.queryLog.errors.push(context.query);
    }
  }
}

/** How a suite turns options into the ORM's: `defineCoasterConfig`, or {@link withPrimary} for primary relationships. */
export type Configure = (options: CoasterOptions) => CoasterOptions;

/** `defineCoasterConfig` with primary relationships too, for the suites of entities that declare one. */
export const withPrimary: Configure = options => withPrimaryRelationships(defineCoasterConfig(options));

/** One database the suites run against; every suite is parameterised over {@link databases}. */
export interface TestDatabase {
  name: 'sqlite' | 'postgresql';
  /**
   * Initialises an ORM on a new, empty database of its own (an in-memory SQLite database, or a
   * PostgreSQL database created for it) with the schema created. {@link closeOrm} drops it.
   */
  init(options: Partial<CoasterOptions>, configure?: Configure): Promise<{ orm: TestOrm; log: QueryLog }>;
}

const dropAfterClose = new WeakMap<TestOrm, () => Promise<void>>();

async function initOrm(options: CoasterOptions, drop: () => Promise<void>, configure: Configure = defineCoasterConfig) {
  const log = new QueryLog();
  const orm = await MikroORM.init<AbstractSqlDriver, CoasterEntityManager>(
    configure({
      ...options,
      loggerFactory: loggerOptions => new RecordingLogger(loggerOptions, log),
    }),
  );
  dropAfterClose.set(orm, drop);
  await orm.schema.createSchema();
  log.clear();
  return { orm, log };
}

/** The admin URL with its database name replaced. */
export function postgresUrlFor(dbName: string): string {
  const url = new URL(inject('postgresUrl'));
  url.pathname = `/${dbName}`;
  return url.toString();
}

/** Runs one statement on the PostgreSQL server's admin database. */
export async function postgresAdmin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject('postgresUrl') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export const sqlite: TestDatabase = {
  name: 'sqlite',
  init: (options, configure) =>
    initOrm({ ...options, driver: SqliteDriver, dbName: ':memory:' }, async () => undefined, configure),
};

export const postgresql: TestDatabase = {
  name: 'postgresql',
  async init(options, configure) {
    const dbName = `coaster_test_${randomBytes(6).toString('hex')}`;
    await postgresAdmin(`create database "${dbName}"`);
    return initOrm(
      { ...options, driver: PostgreSqlDriver, clientUrl: postgresUrlFor(dbName) },
      () => postgresAdmin(`drop database if exists "${dbName}" with (force)`),
      configure,
    );
  },
};

/** Every database the suites run on: `describe.each(databases)('... on $name', db => ...)`. */
export const databases: TestDatabase[] = [sqlite, postgresql];

/** Closes an ORM made by {@link TestDatabase.init} and drops its database. */
export async function closeOrm(orm: TestOrm | undefined): Promise<void> {
  if (!orm) {
    return;
  }
  await orm.close(true);
  await dropAfterClose.get(orm)?.();
}
