import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { MySqlDriver } from '@mikro-orm/mysql';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { emailEntities } from './example/emails.js';
import { entities } from './example/entities.js';
import { defineCoasterConfig } from './src/index.js';
import { withPrimaryRelationships } from './src/primary/index.js';

/**
 * The example app's configuration, read by `npm start` and by the MikroORM CLI (`npm run mikro-orm -- ...`).
 * SQLite (the file $SQLITE_PATH, default `example.sqlite`) unless $DATABASE_URL names a database: PostgreSQL
 * (`postgresql://...`), MariaDB through `@mikro-orm/mariadb` (`mariadb://...`) or through `@mikro-orm/mysql`
 * (`mysql://...`). Migrations live in `migrations/sqlite`, `migrations/postgresql` or `migrations/mariadb`
 * ($MIGRATIONS_PATH overrides), written as TypeScript ($MIGRATIONS_EMIT=cjs or js writes JavaScript, see README).
 */
const databaseUrl = process.env.DATABASE_URL;
const protocol = databaseUrl ? new URL(databaseUrl).protocol : undefined;
const database =
  protocol === 'mariadb:' || protocol === 'mysql:'
    ? { driver: protocol === 'mariadb:' ? MariaDbDriver : MySqlDriver, clientUrl: databaseUrl, folder: 'mariadb' }
    : databaseUrl
      ? { driver: PostgreSqlDriver, clientUrl: databaseUrl, folder: 'postgresql' }
      : { driver: SqliteDriver, dbName: process.env.SQLITE_PATH ?? 'example.sqlite', folder: 'sqlite' };
const { folder, ...connection } = database;

export default withPrimaryRelationships(
  defineCoasterConfig<AbstractSqlDriver>({
    entities: [...entities, ...emailEntities],
    ...connection,
    migrations: {
      path: process.env.MIGRATIONS_PATH ?? `migrations/${folder}`,
      emit: (process.env.MIGRATIONS_EMIT ?? 'ts') as 'ts' | 'js' | 'cjs',
      snapshotName: '.snapshot',
    },
  }),
);
