/**
 * One of the processes of test/sessions/sqliteFile.test.ts (run with `node --import tsx`): a "web worker"
 * sharing a SQLite file with others. Once its ORM is open it prints `ready` and waits for a line on stdin;
 * from then on, for `durationMs`, it keeps calling `getOrCreate` on the key of the current time slice, which
 * every process races for at once, alternately in a `managedSession` and in a plain `em.transactional()`.
 * At the end it prints one JSON line: how many calls succeeded, how many rows it created, and the errors it
 * met, by class and driver message.
 *
 * Usage: node --import tsx test/support/sqliteRaceWorker.ts <file> <durationMs>
 */
import { once } from 'node:events';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { closeOrm, getOrm, initOrm, managedSession } from '../../src/index.js';
import { Note, sessionEntities } from './sessionEntities.js';

/** Every this many milliseconds the processes move on to a new key, so they keep inserting the same new row. */
const SLICE_MS = 50;

const [file, durationMs] = process.argv.slice(2);

await initOrm({ driver: SqliteDriver, dbName: file, entities: sessionEntities });
console.log('ready');
await once(process.stdin, 'data');
const end = Date.now() + Number(durationMs);

const outcome = { ok: 0, created: 0, errors: {} as Record<string, number> };
for (let call = 0; Date.now() < end; call++) {
  const where = { body: `slice-${Math.floor(Date.now() / SLICE_MS)}` };
  const data = { owner: String(process.pid) };
  try {
    const { created } =
      call % 2 === 0
        ? await managedSession(em => em.getOrCreate(Note, where, data))
        : await getOrm().em.fork().transactional(em => em.getOrCreate(Note, where, data));
    outcome.ok++;
    outcome.created += created ? 1 : 0;
  } catch (error) {
    const key = error instanceof Error ? `${error.constructor.name}: ${error.message.split(' - ').at(-1)}` : String(error);
    outcome.errors[key] = (outcome.errors[key] ?? 0) + 1;
  }
}
await closeOrm();
console.log(JSON.stringify(outcome));
process.stdin.destroy();
