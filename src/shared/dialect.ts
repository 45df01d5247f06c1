import type { Platform } from '@mikro-orm/core';
import { BaseSqlitePlatform, MySqlPlatform } from '@mikro-orm/knex';

/** The databases this library writes SQL of its own for; every other SQL database is `'other'`. */
export type Dialect = 'postgresql' | 'sqlite' | 'mysql' | 'other';

/**
 * Which database `platform` speaks, the one way every feature asks: SQLite for MikroORM's SQLite
 * platforms (`@mikro-orm/sqlite`, `@mikro-orm/better-sqlite`, `@mikro-orm/libsql`), `'mysql'` for the
 * MySQL family (`@mikro-orm/mariadb` and `@mikro-orm/mysql`, whose platforms extend the knex package's
 * `MySqlPlatform`, against MariaDB or MySQL servers alike), PostgreSQL for the one SQL platform of
 * MikroORM 6 with native enums (`@mikro-orm/postgresql`, which this library does not depend on, so its
 * class cannot be imported here), and `'other'` for the rest (MSSQL). Known from the platform alone, so
 * it answers during discovery, before MikroORM connects.
 *
 * @example
 * ```ts
 * if (dialectOf(em.getPlatform()) === 'postgresql') await em.execute(`select current_setting('transaction_isolation')`);
 * ```
 */
export function dialectOf(platform: Platform): Dialect {
  if (platform instanceof BaseSqlitePlatform) {
    return 'sqlite';
  }
  if (platform instanceof MySqlPlatform) {
    return 'mysql';
  }
  return platform.supportsNativeEnums() ? 'postgresql' : 'other';
}
