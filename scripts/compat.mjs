#!/usr/bin/env node
/**
 * Proves the lower bound of the MikroORM peer range: runs the type check and the whole test suite
 * against the oldest MikroORM the `@mikro-orm/*` peerDependencies admit (`npm test` already runs
 * them against the devDependency version, the newest one).
 *
 *   npm run compat                                  # the lower bound of the peer range
 *   npm run compat -- 6.6.13 6.6.15                 # other versions, e.g. before widening the range
 *   npm run compat -- 6.6.6 -- test/primary/schema.test.ts   # only some test files
 *
 * For each version it installs every `@mikro-orm/*` package of devDependencies at that version into a
 * temporary directory, copies the project beside it with a node_modules of symlinks (to the project's
 * packages, except `@mikro-orm/*`, which point to the temporary install), and runs `tsc --noEmit` and
 * `vitest run` in the copy. The project's node_modules and package-lock.json are never touched; the
 * temporary directory is removed afterwards.
 *
 * Install scripts are not run (only the npm registry is reachable, and sqlite3's would download or
 * compile its binary): the temporary install's sqlite3 is replaced by a link to the project's, which
 * `npm ci` built.
 *
 * Prints one `compat: MikroORM <version>: passed|FAILED (...)` line per version, closes with
 * `compat: N of M MikroORM versions passed in S s`, and exits non-zero unless all passed.
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const rootModules = join(root, 'node_modules');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));

/**
 * Every `@mikro-orm/*` package the project uses, all installed at the version under test. (MikroORM
 * skips a package in releases that did not change it, so not every version exists for all of them.)
 */
const ormPackages = Object.keys(pkg.devDependencies).filter(
  // MikroORM's own packages, released together with core; @mikro-orm/nestjs has versions of its own
  name => name.startsWith('@mikro-orm/') && pkg.devDependencies[name] === pkg.devDependencies['@mikro-orm/core'],
);

/**
 * The lower bound of the `>=6.x.y <7` range that every `@mikro-orm/*` peer dependency shares: the
 * version CI must prove.
 */
function oldestSupported() {
  const ranges = new Set(
    Object.entries(pkg.peerDependencies)
      .filter(([name]) => ormPackages.includes(name))
      .map(([, range]) => range),
  );
  const match = ranges.size === 1 ? /^>=(\d+\.\d+\.\d+) <(\d+)$/.exec([...ranges][0]) : null;
  if (!match) {
    throw new Error(
      `compat: the @mikro-orm/* peerDependencies are ${[...ranges].map(range => `"${range}"`).join(', ')}; ` +
        'give them all one range of the form ">=6.x.y <7", whose lower bound is the version this script tests.',
    );
  }
  return match[1];
}

/** Runs a command, its output going to ours; resolves with its exit code and (when `capture`) its stdout. */
function run(command, args, cwd, capture = false) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'] });
    let stdout = '';
    child.stdout?.on('data', chunk => {
      stdout += chunk;
      process.stdout.write(chunk);
    });
    child.on('error', reject);
    child.on('close', code => resolvePromise({ code, stdout }));
  });
}

/** Installs the `@mikro-orm/*` packages at `version` into `dir`, with sqlite3 linked to the project's. */
async function installOrm(dir, version) {
  await mkdir(dir);
  const dependencies = Object.fromEntries(ormPackages.map(name => [name, version]));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ private: true, dependencies }, null, 2));
  const { code } = await run(
    'npm',
    ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'],
    dir,
  );
  if (code !== 0) {
    throw new Error(
      `compat: npm install of MikroORM ${version} failed (exit ${code}); see npm's output above. ` +
        `An ETARGET error means a package was not released at ${version}: pick a version all of ${ormPackages.join(', ')} have.`,
    );
  }
  const installed = JSON.parse(await readFile(join(dir, 'node_modules/@mikro-orm/core/package.json'), 'utf8'));
  if (installed.version !== version) {
    throw new Error(`compat: asked npm for @mikro-orm/core ${version} and got ${installed.version}; give exact versions.`);
  }
  await rm(join(dir, 'node_modules/sqlite3'), { recursive: true, force: true });
  await symlink(join(rootModules, 'sqlite3'), join(dir, 'node_modules/sqlite3'), 'dir');
}

/** Copies the project (without node_modules, .git and build output) to `dir`, its packages linked. */
async function copyProject(dir, ormModules) {
  const skip = new Set(['node_modules', '.git', 'dist', '.tmp', 'coverage']);
  for (const entry of await readdir(root)) {
    if (!skip.has(entry)) {
      // docs/api is TypeDoc's output, which `npm run docs:check` may be rewriting beside this run (.ci/run)
      await cp(join(root, entry), join(dir, entry), { recursive: true, filter: source => source !== join(root, 'docs/api') });
    }
  }
  const modules = join(dir, 'node_modules');
  await mkdir(join(modules, '@mikro-orm'), { recursive: true });
  for (const entry of await readdir(rootModules)) {
    if (entry === '@mikro-orm' || entry === '.package-lock.json') {
      continue;
    }
    if (entry === '.bin') {
      // Same relative targets, so `mikro-orm` runs the CLI at the version under test.
      await mkdir(join(modules, '.bin'));
      for (const bin of await readdir(join(rootModules, '.bin'))) {
        await symlink(await readlink(join(rootModules, '.bin', bin)), join(modules, '.bin', bin));
      }
      continue;
    }
    await symlink(join(rootModules, entry), join(modules, entry), 'dir');
  }
  for (const name of ormPackages) {
    await symlink(join(ormModules, name), join(modules, name), 'dir');
  }
  // Other @mikro-orm/* packages (@mikro-orm/nestjs) keep their own version, but are copied rather than
  // linked: a link would resolve their `@mikro-orm/core` from the project's node_modules, not the one under test.
  for (const entry of await readdir(join(rootModules, '@mikro-orm'))) {
    if (!ormPackages.includes(`@mikro-orm/${entry}`)) {
      await cp(join(rootModules, '@mikro-orm', entry), join(modules, '@mikro-orm', entry), { recursive: true });
    }
  }
}

/** Type-checks and tests the project against MikroORM `version`; resolves with the suite's summary. */
async function check(version, testFiles) {
  const scratch = await mkdtemp(join(tmpdir(), `coaster-compat-${version}-`));
  try {
    console.log(`compat: installing ${ormPackages.join(', ')} at ${version} into ${scratch}`);
    await installOrm(join(scratch, 'orm'), version);
    const project = join(scratch, basename(root));
    await mkdir(project);
    await copyProject(project, join(scratch, 'orm/node_modules'));
    console.log(`compat: MikroORM ${version}: tsc --noEmit`);
    const tsc = await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--noEmit'], project);
    if (tsc.code !== 0) {
      return { version, ok: false, summary: 'tsc --noEmit failed, tests not run' };
    }
    console.log(`compat: MikroORM ${version}: vitest run`);
    const vitest = await run(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...testFiles], project, true);
    // The exit code alone is not enough: the summary line also tells a run that skipped tests, or ended
    // before its summary, from one that passed.
    const summary = /^tests: (\d+) passed, (\d+) failed, (\d+) skipped$/m.exec(vitest.stdout);
    if (!summary) {
      return { version, ok: false, summary: `vitest exited with ${vitest.code} before its summary line` };
    }
    const [line, passed, failed, skipped] = summary;
    return { version, ok: vitest.code === 0 && Number(passed) > 0 && failed === '0' && skipped === '0', summary: line };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
const separator = args.includes('--') ? args.indexOf('--') : args.length;
const versions = separator > 0 ? args.slice(0, separator) : [oldestSupported()];
const testFiles = args.slice(separator + 1);
const started = Date.now();
const results = [];
for (const version of versions) {
  try {
    results.push(await check(version, testFiles));
  } catch (error) {
    results.push({ version, ok: false, summary: error instanceof Error ? error.message : String(error) });
  }
}
for (const { version, ok, summary } of results) {
  console.log(`compat: MikroORM ${version}: ${ok ? 'passed' : 'FAILED'} (${summary})`);
}
const passed = results.filter(result => result.ok).length;
const seconds = Math.round((Date.now() - started) / 1000);
console.log(`compat: ${passed} of ${results.length} MikroORM versions passed in ${seconds} s`);
process.exitCode = passed === results.length ? 0 : 1;
