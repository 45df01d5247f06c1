import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { EntitySchema, MikroORM, type Options } from '@mikro-orm/core';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mariadbUrlFor, postgresAdmin, postgresUrlFor, databases } from '../support/databases.js';
import { mariadbAdmin } from '../support/mariadbServer.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');

/** The `tag` table of the app, read back outside it. */
const TagRow = new EntitySchema<{ id: number; name: string }>({
  name: 'Tag',
  properties: { id: { type: 'integer', primary: true }, name: { type: 'string' } },
});

/** What the app's routes answer (see app/main.ts). */
interface TagReply {
  id: number;
  name: string;
  created: boolean;
  inSession: boolean;
  inRequestContext: boolean;
  inRequestIdentityMap?: boolean;
}

/** A line the app printed on stdout, as JSON. */
type Line = Record<string, unknown>;

/**
 * test/nestjs/app/main.ts as a NestJS user runs it: compiled by tsc with `module: commonjs` (and decorator
 * metadata, which Nest's constructor injection needs), requiring the package from a node_modules of its own
 * that holds the package.json and a build made by scripts/build.mjs, as `npm pack` ships them. The directory
 * sits under .tmp/ in the repository, so Nest, MikroORM and the drivers resolve to the repository's copies.
 */
describe('a NestJS app compiled as CommonJS', () => {
  let consumer: string;

  beforeAll(async () => {
    await mkdir(join(root, '.tmp'), { recursive: true });
    consumer = await mkdtemp(join(root, '.tmp', 'nest-'));
    const installed = join(consumer, 'node_modules', 'mikro-orm-coaster');
    await mkdir(installed, { recursive: true });
    await copyFile(join(root, 'package.json'), join(installed, 'package.json'));
    // dist/ of its own: package.test.ts may be rebuilding the repository's at the same time
    await run(process.execPath, [join(root, 'scripts/build.mjs'), join(installed, 'dist')], { cwd: root });
    await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'nest-consumer', private: true, type: 'commonjs' }));
    await copyFile(join(import.meta.dirname, 'app', 'main.ts'), join(consumer, 'main.ts'));
    await writeFile(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'commonjs',
          moduleResolution: 'node10',
          target: 'ES2022',
          strict: true,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
          esModuleInterop: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(root, 'node_modules/@types')],
          outDir: 'out',
        },
        files: ['main.ts'],
      }),
    );
    const compiled = await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', consumer]).catch(
      (error: { stdout: string }) => error,
    );
    expect(compiled.stdout).toBe('');
  }, 120_000);
  afterAll(() => rm(consumer, { recursive: true, force: true }));

  /** A database of its own for the app: its environment, the options to read it back, and its removal. */
  async function database(
    name: 'sqlite' | 'postgresql' | 'mariadb',
  ): Promise<{ env: Record<string, string>; options: Options; drop: () => Promise<void> }> {
    if (name === 'sqlite') {
      const path = join(consumer, `app-${randomBytes(4).toString('hex')}.sqlite`);
      return {
        env: { SQLITE_PATH: path },
        options: { driver: SqliteDriver, dbName: path },
        drop: () => rm(path, { force: true }),
      };
    }
    const dbName = `coaster_nest_${randomBytes(6).toString('hex')}`;
    if (name === 'mariadb') {
      const admin = (sql: string) => mariadbAdmin(mariadbUrlFor('mysql'), sql);
      await admin(`create database \`${dbName}\``);
      return {
        env: { MARIADB_URL: mariadbUrlFor(dbName) },
        options: { driver: MariaDbDriver, clientUrl: mariadbUrlFor(dbName) },
        drop: () => admin(`drop database if exists \`${dbName}\``),
      };
    }
    await postgresAdmin(`create database "${dbName}"`);
    return {
      env: { DATABASE_URL: postgresUrlFor(dbName) },
      options: { driver: PostgreSqlDriver, clientUrl: postgresUrlFor(dbName) },
      drop: () => postgresAdmin(`drop database if exists "${dbName}" with (force)`),
    };
  }

  /** Starts the compiled app; resolves to it, its lines on stdout (each once printed), and its first line. */
  async function start(env: Record<string, string>) {
    const app: ChildProcessWithoutNullStreams = spawn(process.execPath, [join(consumer, 'out', 'main.js')], {
      cwd: consumer,
      env: { ...process.env, ...env },
    });
    let stderr = '';
    app.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: app.stdout })[Symbol.asyncIterator]();
    const next = async (): Promise<Line> => {
      const { value, done } = await lines.next();
      if (done) {
        throw new Error(`the app exited without printing; stderr:\n${stderr}`);
      }
      return JSON.parse(String(value)) as Line;
    };
    const exited = once(app, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    return { app, next, exited, started: await next(), stderr: () => stderr };
  }

  it.each(databases.map(db => db.name as 'sqlite' | 'postgresql' | 'mariadb'))(
    'on %s: injects CoasterEntityManager, runs @ManagedSession routes in either decorator order, and 50 racing requests on 5 keys leave one row each',
    { timeout: 60_000 },
    async name => {
      const db = await database(name);
      const { app, next, exited, started, stderr } = await start(db.env);
      try {
        expect(started).toEqual({ port: expect.any(Number), adopted: true });
        const base = `http://127.0.0.1:${String(started.port)}`;
        const methods = ['POST', 'PUT', 'GET'];
        const responses = await Promise.all(
          Array.from({ length: 50 }, (_, i) => fetch(`${base}/tags/tag-${i % 5}`, { method: methods[i % 3] })),
        );
        expect(responses.map(response => response.status)).toEqual(Array(50).fill(200));
        const replies = (await Promise.all(responses.map(response => response.json()))) as TagReply[];

        for (let key = 0; key < 5; key++) {
          const forKey = replies.filter(reply => reply.name === `tag-${key}`);
          expect(forKey).toHaveLength(10);
          expect(new Set(forKey.map(reply => reply.id)).size).toBe(1); // every request got the one row
          expect(forKey.filter(reply => reply.created)).toHaveLength(1); // which exactly one of them created
        }
        expect(replies.every(reply => reply.inSession && reply.inRequestContext)).toBe(true);
        const gets = replies.filter((_, i) => methods[i % 3] === 'GET');
        expect(gets.map(reply => reply.inRequestIdentityMap)).toEqual(Array(gets.length).fill(true));
        // one onCommit callback per created tag, each run after its COMMIT
        expect(await (await fetch(`${base}/commits`)).json()).toEqual({ committedCreations: 5 });

        const reader = await MikroORM.init({ ...db.options, entities: [TagRow] });
        try {
          const rows = await reader.em.fork().find(TagRow, {}, { orderBy: { name: 'asc' } });
          expect(rows.map(row => row.name)).toEqual(['tag-0', 'tag-1', 'tag-2', 'tag-3', 'tag-4']);
          expect(rows.map(row => row.id).sort()).toEqual([...new Set(replies.map(reply => reply.id))].sort());
        } finally {
          await reader.close(true);
        }
      } finally {
        app.kill('SIGTERM');
      }
      // app.close() closed the ORM and initOrm forgot it; nothing keeps the process alive
      expect(await next()).toEqual({ closed: true, forgotten: true });
      expect(await exited).toEqual([0, null]);
      expect(stderr()).toBe('');
      await db.drop();
    },
  );
});
