import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresAdmin, postgresUrlFor } from './support/databases.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

/** The line that marks the ```ts block right after it as a fragment, which this test does not compile. */
const FRAGMENT = '<!-- fragment -->';

/** A ```ts block of README.md: where it starts, what it holds, whether it is marked a fragment. */
interface Block {
  line: number;
  code: string;
  fragment: boolean;
  heading: string;
}

function tsBlocks(readme: string): Block[] {
  const lines = readme.split('\n');
  const blocks: Block[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    if (/^#{1,6} /.test(lines[i])) {
      heading = lines[i];
    }
    if (lines[i] === '```ts') {
      const end = lines.indexOf('```', i + 1);
      blocks.push({ line: i + 2, code: lines.slice(i + 1, end).join('\n'), fragment: lines[i - 1] === FRAGMENT, heading });
      i = end;
    }
  }
  return blocks;
}

/**
 * README's TypeScript: every ```ts block not marked `<!-- fragment -->` is a complete module that must compile
 * against the library's sources as they are, and the Quick start must run as written. See "Contributing" in README.
 */
describe('README.md', () => {
  let dir: string;
  let readme: string;

  beforeAll(async () => {
    readme = await readFile(join(root, 'README.md'), 'utf8');
    await mkdir(join(root, '.tmp'), { recursive: true });
    dir = await mkdtemp(join(root, '.tmp', 'readme-'));
    // The blocks import the package by name, as users do; `paths` points the name at the sources (tsx honours it too).
    const sources = (file: string) => [join(root, 'src', file)];
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: join(root, 'tsconfig.json'),
        compilerOptions: {
          noEmit: true,
          noUnusedLocals: false,
          noUnusedParameters: false,
          paths: {
            'mikro-orm-coaster': sources('index.ts'),
            'mikro-orm-coaster/primary': sources('primary/index.ts'),
            'mikro-orm-coaster/express': sources('sessions/express.ts'),
            'mikro-orm-coaster/fastify': sources('sessions/fastify.ts'),
            'mikro-orm-coaster/nestjs': sources('nestjs/index.ts'),
          },
        },
        include: ['*.ts'],
      }),
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('marks only ```ts blocks as fragments', () => {
    const lines = readme.split('\n');
    const stray = lines.flatMap((line, i) => (line === FRAGMENT && lines[i + 1] !== '```ts' ? [i + 1] : []));
    expect(stray).toEqual([]);
  });

  it('has ```ts blocks that type-check as modules of their own', { timeout: 120_000 }, async () => {
    const complete = tsBlocks(readme).filter(block => !block.fragment);
    expect(complete.map(block => block.heading)).toEqual(
      expect.arrayContaining(['## Quick start', '### Express 5: `managedSessionMiddleware(options?)`', '### Fastify 5: `managedSessionPlugin`']),
    );
    for (const block of complete) {
      await writeFile(join(dir, `readme-line-${block.line}.ts`), `${block.code}\nexport {};\n`);
    }
    const result = await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', dir]).catch(
      (error: { stdout: string }) => error,
    );
    // readme-line-32.ts(3,5): error ... is README.md line 34
    const errors = result.stdout.replace(/readme-line-(\d+)\.ts\((\d+),(\d+)\)/g, (_, start: string, line: string, column: string) =>
      `README.md:${Number(start) + Number(line) - 1}:${column}`,
    );
    expect(errors).toBe('');
  });

  it('has a Quick start that runs as written: it creates its table, prints, and exits', { timeout: 120_000 }, async () => {
    const [quickStart] = tsBlocks(readme).filter(block => block.heading === '## Quick start');
    // out of the type-check's include; tsx applies a tsconfig only to the files it includes
    await mkdir(join(dir, 'run'));
    const tsconfig = join(dir, 'run', 'tsconfig.json');
    await writeFile(tsconfig, JSON.stringify({ extends: '../tsconfig.json', include: ['*.ts', join(root, 'src')] }));
    const file = join(dir, 'run', 'quickstart.ts');
    await writeFile(file, quickStart.code);
    const dbName = `coaster_quickstart_${process.pid}_${Date.now()}`;
    await postgresAdmin(`create database "${dbName}"`);
    try {
      const { stdout } = await run(join(root, 'node_modules/.bin/tsx'), ['--tsconfig', tsconfig, file], {
        cwd: dir,
        env: { ...process.env, DATABASE_URL: postgresUrlFor(dbName) },
        timeout: 60_000, // the process must exit on its own
      });
      expect(stdout).toMatch(/^tag news has id 1$/m);
      const client = new pg.Client({ connectionString: postgresUrlFor(dbName) });
      await client.connect();
      try {
        expect((await client.query('select id, name from tag')).rows).toEqual([{ id: 1, name: 'news' }]);
      } finally {
        await client.end();
      }
    } finally {
      await postgresAdmin(`drop database if exists "${dbName}" with (force)`);
    }
  });
});
