import type { TestProject } from 'vitest/node';
import { DEFAULT_POSTGRES_URL, POSTGRES_URL_VARIABLE, postgresAnswers, startThrowawayPostgres } from './postgresServer.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the PostgreSQL database every test file creates its own database from. */
    postgresUrl: string;
  }
}

/**
 * Finds PostgreSQL for the test run: the server at $COASTER_TEST_POSTGRES_URL (default
 * postgresql://postgres@127.0.0.1:5432/test), or, when nothing answers there, a throwaway server
 * started for this run and stopped after it. PostgreSQL tests never skip: if neither works, the run fails.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
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
