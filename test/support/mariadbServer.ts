import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';

/** The environment variable that points the tests at a MariaDB (or MySQL) server. */
export const MARIADB_URL_VARIABLE = 'COASTER_TEST_MARIADB_URL';

/**
 * Set to `1` to run without MariaDB where no server answers: its suites are then left out of the run,
 * and the run says so. Never set in CI, where a MariaDB that does not answer fails the run.
 */
export const SKIP_MARIADB_VARIABLE = 'COASTER_TEST_SKIP_MARIADB';

/** Where the tests look for MariaDB when the variable is not set: every development and CI machine runs one. */
export const DEFAULT_MARIADB_URL = 'mysql://root@127.0.0.1:3306/test';

/**
 * Whether a MariaDB or MySQL server accepts a connection at `url`: three tries of up to 10 s each, a
 * second apart, since a server on a loaded machine can miss one (seen on the 2-core CI machine).
 */
export async function mariadbAnswers(url: string): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      const connection = await mysql.createConnection({ uri: url, connectTimeout: 10_000 });
      try {
        await connection.query('select 1');
        return true;
      } finally {
        await connection.end();
      }
    } catch {
      if (attempt === 3) {
        return false;
      }
      await sleep(1_000);
    }
  }
}

/** Runs statements on the MariaDB server at `url`, on one connection of its own. */
export async function mariadbAdmin(url: string, ...statements: string[]): Promise<void> {
  const connection = await mysql.createConnection({ uri: url });
  try {
    for (const statement of statements) {
      await connection.query(statement);
    }
  } finally {
    await connection.end();
  }
}
