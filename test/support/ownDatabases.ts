import { randomBytes } from 'node:crypto';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import type { CoasterOptions } from '../../src/index.js';
import { mariadbUrlFor, postgresAdmin, postgresUrlFor, type TestDatabase } from './databases.js';
import { mariadbAdmin } from './mariadbServer.js';

/** A new, empty database of its own for an app that makes its ORM itself (NestJS's module): its options and its removal. */
export interface OwnDatabase {
  /** The driver and where to connect (an in-memory SQLite database, or a PostgreSQL or MariaDB database created for it). */
  options: CoasterOptions;
  /** Drops the database; call it after the app closed its ORM. */
  drop: () => Promise<void>;
}

/** Creates {@link OwnDatabase} on the server of `name` (`sqlite`, `postgresql` or `mariadb`), named `<prefix>_<random>`. */
export async function ownDatabase(name: TestDatabase['name'], prefix: string): Promise<OwnDatabase> {
  const dbName = `${prefix}_${randomBytes(6).toString('hex')}`;
  switch (name) {
    case 'sqlite':
      return { options: { driver: SqliteDriver, dbName: ':memory:' }, drop: async () => undefined };
    case 'postgresql':
      await postgresAdmin(`create database "${dbName}"`);
      return {
        options: { driver: PostgreSqlDriver, clientUrl: postgresUrlFor(dbName) },
        drop: () => postgresAdmin(`drop database if exists "${dbName}" with (force)`),
      };
    default: {
      const admin = (sql: string) => mariadbAdmin(mariadbUrlFor('mysql'), sql);
      await admin(`create database \`${dbName}\``);
      return { options: { driver: MariaDbDriver, clientUrl: mariadbUrlFor(dbName) }, drop: () => admin(`drop database if exists \`${dbName}\``) };
    }
  }
}
