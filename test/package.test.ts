import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

/** The package as another project sees it: built, then imported by name from outside the repo. */
describe('the built package', () => {
  let consumer: string;

  beforeAll(async () => {
    await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root });
    consumer = await mkdtemp(join(tmpdir(), 'coaster-consumer-'));
    await mkdir(join(consumer, 'node_modules'));
    await symlink(root, join(consumer, 'node_modules/mikro-orm-coaster'), 'dir');
  }, 120_000);
  afterAll(() => rm(consumer, { recursive: true, force: true }));

  it('is imported by name through its exports map', async () => {
    const script = `
      import { CoasterEntityManager, defineCoasterConfig, MultipleResultsError } from 'mikro-orm-coaster';
      const options = defineCoasterConfig({ entities: [] });
      console.log(JSON.stringify([typeof CoasterEntityManager, options.entityManager === CoasterEntityManager, typeof MultipleResultsError]));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: consumer });
    expect(JSON.parse(stdout)).toEqual(['function', true, 'function']);
  });

  it('ships type declarations for the public API', async () => {
    const declarations = await readFile(join(root, 'dist/index.d.ts'), 'utf8');
    expect(declarations).toContain('CoasterEntityManager');
    expect(declarations).toContain('defineCoasterConfig');
  });
});
