import type { TestProject } from 'vitest/node';
import { DEFAULT_MARIADB_URL, MARIADB_URL_VARIABLE, SKIP_MARIADB_VARIABLE, mariadbAnswers } from './mariadbServer.js';
import { DEFAULT_POSTGRES_URL, POSTGRES_URL_VARIABLE, postgresAnswers, startThrowawayPostgres } from './postgresServer.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the PostgreSQL database every test file creates its own database from. */
    postgresUrl: string;
    /**
     * URL of the MariaDB server every test file creates its own database on; `''` when the run leaves
     * MariaDB out ($COASTER_TEST_SKIP_MARIADB=1 and no server answered).
     */
    mariadbUrl: string;
  }
}

/**
 * Finds the databases for the test run.
 * - PostgreSQL: the server at $COASTER_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test),
 *   or, when nothing answers there, a throwaway server started for this run and stopped after it.
 *   PostgreSQL tests never skip: if neither works, the run fails.
 * - MariaDB: the server at $COASTER_TEST_MARIADB_URL (default mysql://root@127.0.0.1:3306/test). When
 *   nothing answers, the run fails with a message saying how to start one, unless
 *   $COASTER_TEST_SKIP_MARIADB=1 leaves MariaDB's suites out (and the run says so); CI never sets it.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const mariadbUrl = process.env[MARIADB_URL_VARIABLE] || DEFAULT_MARIADB_URL;
  if (await mariadbAnswers(mariadbUrl)) {
    project.provide('mariadbUrl', mariadbUrl);
  } else if (process.env[SKIP_MARIADB_VARIABLE] === '1') {
    console.warn(`[tests] no MariaDB answered at ${mariadbUrl}: ${SKIP_MARIADB_VARIABLE}=1 leaves every MariaDB suite out of this run`);
    project.provide('mariadbUrl', '');
  } else {
    throw new Error(
      `No MariaDB answered at ${mariadbUrl}. Start one (Debian: start-stop-daemon --start --oknodo --background ` +
        `--exec /usr/sbin/mariadbd), point ${MARIADB_URL_VARIABLE} at one (user with CREATE DATABASE rights), ` +
        `or set ${SKIP_MARIADB_VARIABLE}=1 to leave MariaDB's suites out of this run.`,
    );
  }
  const url = process.env[POSTGRES_URL_VARIABLE] || DEFAULT_POSTGRES_URL;
  if (await postgresAnswers(url)) {
    project.provide('postgresUrl', url);
    return undefined;
  }
  const server = await startThrowawayPostgres();
  console.warn(`[tests] no PostgreSQL answered at ${url}; started a throwaway server at ${server.url}`);
  project.provide('postgresUrl', server.url);
  return () => server.stop();
}
