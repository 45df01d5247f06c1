import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresAdmin, postgresUrlFor } from './support/databases.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

/** The line that marks the ```ts block right after it as a fragment, which this test does not compile. */
const FRAGMENT = '<!-- fragment -->';

/** README.md and the guides of docs/, whose code this test compiles. */
const files = ['README.md', ...(await readdir(join(root, 'docs'))).filter(name => name.endsWith('.md')).map(name => `docs/${name}`)];

/** A ```ts block of a Markdown file: where it starts, what it holds, whether it is marked a fragment. */
interface Block {
  file: string;
  line: number;
  code: string;
  fragment: boolean;
  heading: string;
}

function tsBlocks(file: string, text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    if (/^#{1,6} /.test(lines[i])) {
      heading = lines[i];
    }
    if (lines[i] === '```ts') {
      const end = lines.indexOf('```', i + 1);
      blocks.push({ file, line: i + 2, code: lines.slice(i + 1, end).join('\n'), fragment: lines[i - 1] === FRAGMENT, heading });
      i = end;
    }
  }
  return blocks;
}

/**
 * The TypeScript of README and docs/: every ```ts block not marked `<!-- fragment -->` is a complete module that
 * must compile against the library's sources as they are, and the Quick start must run as written. See
 * docs/contributing.md.
 */
describe('README.md and docs/', () => {
  let dir: string;
  let texts: Map<string, string>;
  let blocks: Block[];

  beforeAll(async () => {
    texts = new Map(await Promise.all(files.map(async file => [file, await readFile(join(root, file), 'utf8')] as const)));
    blocks = [...texts].flatMap(([file, text]) => tsBlocks(file, text));
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
    const stray = [...texts].flatMap(([file, text]) => {
      const lines = text.split('\n');
      return lines.flatMap((line, i) => (line === FRAGMENT && lines[i + 1] !== '```ts' ? [`${file}:${i + 1}`] : []));
    });
    expect(stray).toEqual([]);
  });


  it('has ```ts blocks that type-check as modules of their own', { timeout: 120_000 }, async () => {
    const complete = blocks.filter(block => !block.fragment);
    expect(complete.map(block => block.heading)).toEqual(
      expect.arrayContaining(['## Quick start', '### Express 5: `managedSessionMiddleware(options?)`', '### Fastify 5: `managedSessionPlugin`']),
    );
    const names = new Map<string, string>(); // the module's name -> the file it comes from
    for (const block of complete) {
      const name = `${block.file.replace(/\W/g, '_')}-line-${block.line}`;
      names.set(name, block.file);
      await writeFile(join(dir, `${name}.ts`), `${block.code}\nexport {};\n`);
    }
    const result = await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', dir]).catch(
      (error: { stdout: string }) => error,
    );
    // README_md-line-32.ts(3,5): error ... is README.md line 34
    const errors = result.stdout.replace(/(\w+)-line-(\d+)\.ts\((\d+),(\d+)\)/g, (whole, name: string, start: string, line: string, column: string) =>
      names.has(`${name}-line-${start}`) ? `${names.get(`${name}-line-${start}`)}:${Number(start) + Number(line) - 1}:${column}` : whole,
    );
    expect(errors).toBe('');
  });

  it('has a Quick start that runs as written: it creates its table, prints, and exits', { timeout: 120_000 }, async () => {
    const [quickStart] = blocks.filter(block => block.file === 'README.md' && block.heading === '## Quick start');
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
