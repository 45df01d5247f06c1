import { randomBytes } from 'node:crypto';
import { DefaultLogger, MikroORM, type LogContext, type LoggerOptions } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { MySqlDriver } from '@mikro-orm/mysql';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import pg from 'pg';
import { inject } from 'vitest';
import { type CoasterEntityManager, type CoasterOptions, defineCoasterConfig } from '../../src/index.js';
import { withPrimaryRelationships } from '../../src/primary/index.js';
import { mariadbAdmin } from './mariadbServer.js';

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
  /** `mysql` is MikroORM's MySQL driver (`@mikro-orm/mysql`, mysql2) against the MariaDB server. */
  name: 'sqlite' | 'postgresql' | 'mariadb' | 'mysql';
  /**
   * Initialises an ORM on a new, empty database of its own (an in-memory SQLite database, or a
   * PostgreSQL or MariaDB database created for it) with the schema created. {@link closeOrm} drops it.
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

export const sqlite: TestDatabase & { name: 'sqlite' } = {
  name: 'sqlite',
  init: (options, configure) =>
    initOrm({ ...options, driver: SqliteDriver, dbName: ':memory:' }, async () => undefined, configure),
};

export const postgresql: TestDatabase & { name: 'postgresql' } = {
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

/** The MariaDB URL with its database name replaced. */
export function mariadbUrlFor(dbName: string): string {
  const url = new URL(mariadbServerUrl());
  url.pathname = `/${dbName}`;
  return url.toString();
}

/** The MariaDB server's URL, as the global setup found it. */
function mariadbServerUrl(): string {
  const url = inject('mariadbUrl');
  if (!url) {
    throw new Error('No MariaDB server in this run (COASTER_TEST_SKIP_MARIADB=1): its suites are left out.');
  }
  return url;
}

/** A TestDatabase on the MariaDB server through `driver`, on a database created for each ORM. */
function onMariadb(name: 'mariadb' | 'mysql', driver: typeof MariaDbDriver | typeof MySqlDriver): TestDatabase {
  return {
    name,
    async init(options, configure) {
      const dbName = `coaster_test_${randomBytes(6).toString('hex')}`;
      await mariadbAdmin(mariadbServerUrl(), `create database \`${dbName}\``);
      return initOrm(
        { ...options, driver, clientUrl: mariadbUrlFor(dbName) },
        () => mariadbAdmin(mariadbServerUrl(), `drop database if exists \`${dbName}\``),
        configure,
      );
    },
  };
}

/** MariaDB through MikroORM's MariaDB driver (`@mikro-orm/mariadb`, the `mariadb` connector). */
export const mariadb: TestDatabase = onMariadb('mariadb', MariaDbDriver);

/**
 * The same MariaDB server through MikroORM's MySQL driver (`@mikro-orm/mysql`, mysql2), for the suites
 * where the two drivers differ.
 */
export const mysql: TestDatabase = onMariadb('mysql', MySqlDriver);

/** Whether this run has a MariaDB server (see the global setup); without one, its suites are left out. */
const withMariadb = (tables: TestDatabase[]): TestDatabase[] =>
  inject('mariadbUrl') ? tables : tables.filter(db => db.name !== 'mariadb' && db.name !== 'mysql');

/**
 * Every database the suites run on: `describe.each(databases)('... on $name', db => ...)`: SQLite, PostgreSQL
 * and MariaDB (through MikroORM's MariaDB driver).
 */
export const databases: TestDatabase[] = withMariadb([sqlite, postgresql, mariadb]);

/** {@link databases} and MariaDB through the MySQL driver too, for suites where the drivers differ. */
export const allDrivers: TestDatabase[] = withMariadb([sqlite, postgresql, mariadb, mysql]);

/** Closes an ORM made by {@link TestDatabase.init} and drops its database. */
export async function closeOrm(orm: TestOrm | undefined): Promise<void> {
  if (!orm) {
    return;
  }
  await orm.close(true);
  await dropAfterClose.get(orm)?.();
}
