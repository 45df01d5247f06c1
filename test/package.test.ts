import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

/** What `npm pack --json` reports about the tarball it made. */
interface PackResult {
  filename: string;
  files: { path: string }[];
}

/**
 * A plain-JavaScript app that loads the package through `load` (require or import), runs a managed session on
 * SQLite with it, and loads the package the other way too, to compare what the two give.
 */
function appScript(kind: 'commonjs' | 'module'): string {
  const imports =
    kind === 'commonjs'
      ? `const { EntitySchema } = require('@mikro-orm/core');
         const { SqliteDriver } = require('@mikro-orm/sqlite');
         const coaster = require('mikro-orm-coaster');
         const express = require('mikro-orm-coaster/express');
         const fastify = require('mikro-orm-coaster/fastify');
         const loadedMigrations = () => Object.keys(require.cache).some(path => path.includes('@mikro-orm/migrations'));
         const migrationsBeforePrimary = loadedMigrations();
         const primary = require('mikro-orm-coaster/primary');
         const migrationsAfterPrimary = loadedMigrations();
         const nestjs = require('mikro-orm-coaster/nestjs');`
      : `import { createRequire } from 'node:module';
         import { EntitySchema } from '@mikro-orm/core';
         import { SqliteDriver } from '@mikro-orm/sqlite';
         import * as coaster from 'mikro-orm-coaster';
         import * as express from 'mikro-orm-coaster/express';
         import * as fastify from 'mikro-orm-coaster/fastify';
         // the ES module entry points re-export the CommonJS build, so require.cache shows what they loaded
         const loadedMigrations = () => Object.keys(createRequire(import.meta.url).cache).some(path => path.includes('@mikro-orm/migrations'));
         const migrationsBeforePrimary = loadedMigrations();
         const primary = await import('mikro-orm-coaster/primary');
         const migrationsAfterPrimary = loadedMigrations();
         const nestjs = await import('mikro-orm-coaster/nestjs');`;
  const otherWay = kind === 'commonjs' ? `await import('mikro-orm-coaster')` : `createRequire(import.meta.url)('mikro-orm-coaster')`;
  const body = `
    class Tag {}
    const schema = new EntitySchema({ class: Tag, properties: { id: { type: 'integer', primary: true }, name: { type: 'string', unique: true } } });
    const orm = await coaster.initOrm({ driver: SqliteDriver, dbName: ':memory:', entities: [schema] });
    await orm.schema.createSchema();
    const other = ${otherWay};
    const events = [];
    // a session of one entry point, onCommit of the other: one AsyncLocalStorage, not two
    await coaster.managedSession(async em => {
      await em.findOrCreate(Tag, { name: 'news' });
      other.onCommit(() => events.push('committed'));
    });
    console.log(JSON.stringify({
      sameClasses: other.CoasterEntityManager === coaster.CoasterEntityManager && other.ManagedSessionError === coaster.ManagedSessionError,
      sameExports: Object.keys(other).filter(name => name !== 'default' && name !== '__esModule').sort().join() === Object.keys(coaster).filter(name => name !== 'default' && name !== '__esModule').sort().join(),
      coasterEm: orm.em instanceof coaster.CoasterEntityManager,
      tags: await orm.em.fork().count(Tag),
      events,
      integrations: [typeof express.managedSessionMiddleware, typeof fastify.managedSessionPlugin, typeof fastify.RequestSessionError, typeof nestjs.CoasterMikroOrmModule],
      primary: [typeof primary.withPrimaryRelationships, typeof primary.addPrimaryRelationship, primary.PrimaryRelationshipError.prototype instanceof coaster.CoasterError],
      // the root entry point (and the integrations) never load @mikro-orm/migrations, an optional peer needed by primary relationships only
      migrationsBeforePrimary,
      migrationsAfterPrimary,
    }));
    await coaster.closeOrm();
  `;
  return kind === 'commonjs' ? `${imports}\n(async () => {${body}})();\n` : `${imports}\n${body}\n`;
}

/** TypeScript that uses the public API of every entry point, decorators included, as an application would. */
const typedApp = `
import { Entity, ManyToOne, MikroORM, PrimaryKey, Property } from '@mikro-orm/core';
import { SqliteDriver } from '@mikro-orm/sqlite';
import type { Express } from 'express';
import type { FastifyInstance } from 'fastify';
import { CreatedAt, defineCoasterConfig, managedSession, onCommit, type CoasterEntityManager } from 'mikro-orm-coaster';
import { managedSessionMiddleware, type RequestSessionOptions } from 'mikro-orm-coaster/express';
import { managedSessionPlugin, RequestSessionError } from 'mikro-orm-coaster/fastify';
import { PrimaryRelationship, withPrimaryRelationships } from 'mikro-orm-coaster/primary';
import { CoasterMikroOrmModule, type CoasterMikroOrmModuleOptions } from 'mikro-orm-coaster/nestjs';
import type { DynamicModule } from '@nestjs/common';

@Entity()
export class Tag {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', unique: true }) name!: string;
  @CreatedAt() createdAt!: Date;
  @ManyToOne(() => Tag, { nullable: true }) parent?: Tag;
  @PrimaryRelationship(() => Tag, 'parent', 'parent_id') primaryChild!: Tag | null;
}

export const nestOptions: CoasterMikroOrmModuleOptions<SqliteDriver> = { driver: SqliteDriver, dbName: ':memory:', entities: [Tag] };
export const nestModule: DynamicModule = CoasterMikroOrmModule.forRoot(nestOptions);

export async function start(app: Express, server: FastifyInstance): Promise<number> {
  const orm = await MikroORM.init(withPrimaryRelationships(defineCoasterConfig({ driver: SqliteDriver, dbName: ':memory:', entities: [Tag] })));
  const em: CoasterEntityManager<SqliteDriver> = orm.em.fork();
  const options: RequestSessionOptions = { commitStatus: status => status < 500 };
  app.use(managedSessionMiddleware(options));
  await server.register(managedSessionPlugin, options);
  const error: RequestSessionError = RequestSessionError.responseWithoutOnSend('GET', '/');
  return managedSession(async session => {
    onCommit(() => undefined);
    const tag: Tag = await session.findOrCreate(Tag, { name: error.name });
    return tag.id + (await em.count(Tag));
  });
}
`;

/** A consumer's tsconfig: strict, library declarations checked, with `module` (and its resolution) as given. */
function tsconfig(compilerOptions: Record<string, string | boolean>): string {
  return JSON.stringify({
    compilerOptions: {
      ...compilerOptions,
      target: 'ES2022',
      strict: true,
      skipLibCheck: false,
      noEmit: true,
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
      useDefineForClassFields: false,
      types: ['node'],
    },
    files: ['app.ts'],
  });
}

/**
 * The package as a user gets it: `npm pack` (which builds it first) on this checkout, the tarball unpacked into
 * the node_modules of two consumer projects, one CommonJS and one ESM. They sit under .tmp/ in the repository,
 * so the peer dependencies resolve to the repository's own node_modules, as an install would hoist them.
 */
describe('the packed package', () => {
  let consumers: string;
  let packed: PackResult;

  beforeAll(async () => {
    await mkdir(join(root, '.tmp'), { recursive: true });
    consumers = await mkdtemp(join(root, '.tmp', 'consumers-'));
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', consumers], { cwd: root });
    [packed] = JSON.parse(stdout) as PackResult[];
    const unpacked = join(consumers, 'node_modules', 'mikro-orm-coaster');
    await mkdir(unpacked, { recursive: true });
    await run('tar', ['-xzf', join(consumers, packed.filename), '-C', unpacked, '--strip-components=1']);
    for (const kind of ['commonjs', 'module'] as const) {
      const dir = join(consumers, kind);
      await mkdir(dir);
      await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${kind}`, private: true, type: kind }));
      await writeFile(join(dir, kind === 'commonjs' ? 'app.js' : 'app.mjs'), appScript(kind));
      await writeFile(join(dir, 'app.ts'), typedApp);
    }
  }, 300_000);
  afterAll(() => rm(consumers, { recursive: true, force: true }));

  it('holds the build, the sources its maps point to, the licence and the changelog, and no tests', () => {
    const files = new Set(packed.files.map(file => file.path));
    for (const file of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/package.json']) {
      expect(files).toContain(file);
    }
    for (const entry of ['index', 'primary/index', 'sessions/express', 'sessions/fastify', 'nestjs/index']) {
      for (const extension of ['.js', '.mjs', '.d.ts', '.d.mts', '.js.map']) {
        expect(files).toContain(`dist/${entry}${extension}`);
      }
    }
    expect([...files].filter(file => /^(test|example|bench|migrations|scripts)\//.test(file))).toEqual([]);
  });

  it('ships every source file that a source map or declaration map points to', async () => {
    const unpacked = join(consumers, 'node_modules', 'mikro-orm-coaster');
    const maps = packed.files.map(file => file.path).filter(path => path.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const files = new Set(packed.files.map(file => file.path));
    const missing: string[] = [];
    for (const map of maps) {
      const { sources } = JSON.parse(await readFile(join(unpacked, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const path = posix.join(posix.dirname(map), source);
        if (!files.has(path)) {
          missing.push(`${map} -> ${path}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it.each(['commonjs', 'module'] as const)(
    'runs in a %s app, which gets the same classes and session context from require() and import',
    async kind => {
      const app = join(consumers, kind, kind === 'commonjs' ? 'app.js' : 'app.mjs');
      const { stdout } = await run(process.execPath, [app], { cwd: join(consumers, kind) });
      expect(JSON.parse(stdout)).toEqual({
        sameClasses: true,
        sameExports: true,
        coasterEm: true,
        tags: 1,
        events: ['committed'],
        integrations: ['function', 'function', 'function', 'function'],
        primary: ['function', 'function', true],
        migrationsBeforePrimary: false,
        migrationsAfterPrimary: true,
      });
    },
  );

  // Each run checks every declaration file the app reaches (MikroORM's, knex's, Node's...): about 20 s of CPU,
  // so the four run at once.
  it.concurrent.for<{ kind: string; module: Record<string, string | boolean> }>([
    // with NestJS's default interop setting, which MikroORM's own declarations need under `commonjs`
    { kind: 'commonjs', module: { module: 'commonjs', allowSyntheticDefaultImports: true } },
    { kind: 'commonjs', module: { module: 'node16' } },
    { kind: 'module', module: { module: 'nodenext' } },
    { kind: 'module', module: { module: 'esnext', moduleResolution: 'bundler' } },
  ])('type-checks in a $kind project with $module and skipLibCheck false', { timeout: 240_000 }, async ({ kind, module }, { expect }) => {
    const dir = join(consumers, kind);
    const config = `tsconfig.${module.module}.json`;
    await writeFile(join(dir, config), tsconfig(module));
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    const result = await run(process.execPath, [tsc, '-p', config], { cwd: dir }).catch((error: { stdout: string }) => error);
    expect(result.stdout).toBe('');
  });
});
