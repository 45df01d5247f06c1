import { chmod, cp, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MikroORM } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { afterEach, describe, expect, it } from 'vitest';
import {
  platformBinaries,
  postgresAnswers,
  startThrowawayPostgres,
  ThrowawayPostgresError,
  type ThrowawayPostgres,
} from './support/postgresServer.js';

const folders: string[] = [];

afterEach(async () => {
  for (const folder of folders.splice(0)) {
    await rm(folder, { recursive: true, force: true });
  }
});

/**
 * A new folder with `mode`: 0o700, only its owner can enter it, as `mktemp -d` makes them (root's home
 * folder is another); 0o755, every user can.
 */
async function scratchFolder(mode: 0o700 | 0o755): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'coaster-harness-'));
  folders.push(folder);
  await chmod(folder, mode);
  expect((await stat(folder)).mode & 0o777).toBe(mode);
  return folder;
}

/** Checks that MikroORM can use `server`, stops it, and checks that it is gone, its folder too. */
async function useAndStop(server: ThrowawayPostgres): Promise<void> {
  try {
    const orm = await MikroORM.init({ driver: PostgreSqlDriver, clientUrl: server.url, entities: [], discovery: { warnWhenNoEntities: false } });
    try {
      const [row] = await orm.em.getConnection().execute<{ answer: number }[]>('select 6 * 7 as answer');
      expect(row.answer).toBe(42);
    } finally {
      await orm.close();
    }
  } finally {
    await server.stop();
  }
  expect(await postgresAnswers(server.url)).toBe(false);
  await expect(stat(server.folder)).rejects.toMatchObject({ code: 'ENOENT' });
}

describe('test harness', () => {
  it('tells when nothing answers at a PostgreSQL URL', async () => {
    expect(await postgresAnswers('postgresql://postgres@127.0.0.1:1/test')).toBe(false);
  });

  it('starts a throwaway PostgreSQL server that MikroORM can use, and stops it', async () => {
    await useAndStop(await startThrowawayPostgres());
  }, 120_000);

  it('starts it from binaries inside a folder only its owner can enter (a checkout in a private folder)', async () => {
    const checkout = await scratchFolder(0o700);
    const binaries = join(checkout, 'node_modules', 'native');
    await cp((await platformBinaries()).native, binaries, { recursive: true, verbatimSymlinks: true });

    await useAndStop(await startThrowawayPostgres({ binaries }));
  }, 120_000);

  it('fails at once, saying why and what to do, when it cannot run PostgreSQL, and leaves no folder behind', async () => {
    const parent = await scratchFolder(0o755);
    const binaries = await scratchFolder(0o755); // no bin/initdb in it

    const starting = startThrowawayPostgres({ binaries, parent });

    await expect(starting).rejects.toBeInstanceOf(ThrowawayPostgresError);
    await expect(starting).rejects.toThrow(
      /^Could not start the throwaway PostgreSQL server: \S+initdb could not be run \(spawn \S+initdb ENOENT\)\..* Or set COASTER_TEST_POSTGRES_URL to a PostgreSQL server that answers\.$/,
    );
    expect(await readdir(parent)).toEqual([]);
  });

  it('with its own folder inside a private one: starts, or, as root, fails at once saying the server runs as nobody', async () => {
    const parent = await scratchFolder(0o700);

    const starting = startThrowawayPostgres({ parent });

    if (process.getuid?.() === 0) {
      // PostgreSQL refuses root, and nobody cannot enter the private folder
      await expect(starting).rejects.toThrow(
        /^Could not start the throwaway PostgreSQL server: \S+initdb could not be run \(spawn \S+ EACCES\)\. It ran as the user "nobody" \(the tests run as root, which PostgreSQL refuses\), which must be able to enter \S+ and every folder above it: set TMPDIR to a folder every user can enter\. Or set COASTER_TEST_POSTGRES_URL/,
      );
      expect(await readdir(parent)).toEqual([]);
    } else {
      await useAndStop(await starting);
    }
  }, 120_000);
});
