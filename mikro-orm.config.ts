import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { entities } from './example/entities.js';
import { defineCoasterConfig } from './src/index.js';

/**
 * The example app's configuration, read by `npm start` and by the MikroORM CLI.
 * SQLite (the file $SQLITE_PATH, default `example.sqlite`) unless $DATABASE_URL names a PostgreSQL database.
 */
const databaseUrl = process.env.DATABASE_URL;

export default defineCoasterConfig<AbstractSqlDriver>({
  entities,
  ...(databaseUrl
    ? { driver: PostgreSqlDriver, clientUrl: databaseUrl }
    : { driver: SqliteDriver, dbName: process.env.SQLITE_PATH ?? 'example.sqlite' }),
});
