import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { emailEntities } from './example/emails.js';
import { entities } from './example/entities.js';
import { defineCoasterConfig } from './src/index.js';
import { withPrimaryRelationships } from './src/primary/index.js';

/**
 * The example app's configuration, read by `npm start` and by the MikroORM CLI (`npm run mikro-orm -- ...`).
 * SQLite (the file $SQLITE_PATH, default `example.sqlite`) unless $DATABASE_URL names a PostgreSQL database.
 * Migrations live in `migrations/sqlite` or `migrations/postgresql` ($MIGRATIONS_PATH overrides), written as
 * TypeScript ($MIGRATIONS_EMIT=cjs or js writes JavaScript, see README).
 */
const databaseUrl = process.env.DATABASE_URL;

export default withPrimaryRelationships(
  defineCoasterConfig<AbstractSqlDriver>({
    entities: [...entities, ...emailEntities],
    ...(databaseUrl
      ? { driver: PostgreSqlDriver, clientUrl: databaseUrl }
      : { driver: SqliteDriver, dbName: process.env.SQLITE_PATH ?? 'example.sqlite' }),
    migrations: {
      path: process.env.MIGRATIONS_PATH ?? `migrations/${databaseUrl ? 'postgresql' : 'sqlite'}`,
      emit: (process.env.MIGRATIONS_EMIT ?? 'ts') as 'ts' | 'js' | 'cjs',
      snapshotName: '.snapshot',
    },
  }),
);
