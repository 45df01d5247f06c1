import type { SqlEntityManager } from '@mikro-orm/knex';
import pg from 'pg';
import { inject } from 'vitest';

/**
 * PostgreSQL backends terminated on purpose, as a server restart or an administrator would: the connection of
 * a session dies mid-transaction. node-postgres then emits 'error' on the client; knex listens for it and drops
 * the connection from its pool, so the test process goes on and the pool opens a new connection for the next
 * session. Every wait here polls `pg_stat_activity` with a bound, so a test never races a sleep.
 */

/** How many times {@link until} polls, 10 ms apart, before it gives up: 10 seconds. */
const POLLS = 1_000;

/** Runs `sql` on a connection of its own to the server's admin database; resolves to the rows. */
async function adminQuery<Row extends object>(sql: string, params: unknown[] = []): Promise<Row[]> {
  const client = new pg.Client({ connectionString: inject('postgresUrl') });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Row[];
  } finally {
    await client.end();
  }
}

/** Polls `condition` until it holds. @throws when it still does not after {@link POLLS} polls. */
async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let poll = 0; poll < POLLS; poll++) {
    if (await condition()) {
      return;
    }
    await new Promise(resolve => setTimeout(resolve, 10));
  }
  throw new Error(`gave up waiting until ${what}`);
}

/** The pid of the backend serving `em`, on its transaction's connection inside a transaction. */
export async function backendPid(em: SqlEntityManager): Promise<number> {
  const [{ pid }] = await em.execute<{ pid: number }[]>('select pg_backend_pid() as pid');
  return pid;
}

/** Terminates the backend `pid` (`pg_terminate_backend`) and waits until the server no longer lists it. */
export async function terminateBackend(pid: number): Promise<void> {
  await adminQuery('select pg_terminate_backend($1)', [pid]);
  await until(async () => (await adminQuery('select 1 from pg_stat_activity where pid = $1', [pid])).length === 0, `backend ${pid} is gone`);
}

/** Waits until the backend `pid` waits for a lock (another transaction's row), then terminates it. */
export async function terminateOnceBlocked(pid: number): Promise<void> {
  await until(
    async () => (await adminQuery(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid])).length > 0,
    `backend ${pid} waits for a lock`,
  );
  await terminateBackend(pid);
}

/**
 * Opens a connection of its own to the database at `url` and starts a transaction there that inserts `sql`'s
 * rows and keeps them uncommitted, so that another transaction writing the same unique key waits for it.
 * Resolves to the function that rolls it back and closes the connection.
 */
export async function holdUncommitted(url: string, sql: string): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('begin');
  await client.query(sql);
  return async () => {
    await client.query('rollback');
    await client.end();
  };
}
