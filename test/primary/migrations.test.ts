import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { type Constructor, ForeignKeyConstraintViolationException, MikroORM } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { type Migration, Migrator } from '@mikro-orm/migrations';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { emailEntities, UserEmail } from '../../example/emails.js';
import { entities, User } from '../../example/entities.js';
import { type CoasterOptions, defineCoasterConfig } from '../../src/index.js';
import { closeOrm, databases, postgresAdmin, postgresUrlFor, type TestOrm } from '../support/databases.js';

const run = promisify(execFile);

/** A scratch database and migrations folder for the example app's configuration, and the CLI on them. */
interface Scratch {
  env: Record<string, string>;
  options: Partial<CoasterOptions>;
  migrations: string;
  drop(): Promise<void>;
}

async function scratchFor(name: 'sqlite' | 'postgresql'): Promise<Scratch> {
  const dir = join('.tmp', `cli-${randomBytes(6).toString('hex')}`);
  const migrations = join(dir, 'migrations');
  await mkdir(dir, { recursive: true });
  if (name === 'sqlite') {
    const dbName = join(dir, 'example.sqlite');
    return {
      env: { SQLITE_PATH: dbName, MIGRATIONS_PATH: migrations },
      options: { driver: SqliteDriver, dbName },
      migrations,
      drop: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const dbName = `coaster_cli_${randomBytes(6).toString('hex')}`;
  await postgresAdmin(`create database "${dbName}"`);
  return {
    env: { DATABASE_URL: postgresUrlFor(dbName), MIGRATIONS_PATH: migrations },
    options: { driver: PostgreSqlDriver, clientUrl: postgresUrlFor(dbName) },
    migrations,
    drop: async () => {
      await rm(dir, { recursive: true, force: true });
      await postgresAdmin(`drop database if exists "${dbName}" with (force)`);
    },
  };
}

/** `npm run mikro-orm -- <args>`, the command README documents, on the scratch database. */
async function cli(scratch: Scratch, ...args: string[]): Promise<string> {
  const { stdout, stderr } = await run('npm', ['run', '--silent', 'mikro-orm', '--', ...args], {
    env: { ...process.env, ...scratch.env },
  });
  return stdout + stderr;
}

async function migrationFiles(scratch: Scratch): Promise<string[]> {
  return (await readdir(scratch.migrations)).filter(file => file.endsWith('.ts')).sort();
}

describe.each(['sqlite', 'postgresql'] as const)('migrations through the MikroORM CLI on %s', name => {
  let scratch: Scratch | undefined;
  let orm: MikroORM<AbstractSqlDriver> | undefined;

  afterEach(async () => {
    await orm?.close(true);
    await scratch?.drop();
  });

  it('creates the table and trigger, applies them, then finds nothing left to migrate', async () => {
    scratch = await scratchFor(name);
    expect(await cli(scratch, 'migration:create')).toContain('successfully created');
    const [file] = await migrationFiles(scratch);
    const code = await readFile(join(scratch.migrations, file), 'utf8');
    expect(code).toContain('user_user_email_primary');
    expect(code).toContain(name === 'sqlite' ? 'create trigger "user_user_email_primary_trigger_insert"' : 'create trigger "user_user_email_primary_trigger"');
    if (name === 'postgresql') {
      expect(code).toContain('create or replace function "user_user_email_primary_validate"()');
      expect(code.slice(code.indexOf('down()'))).toContain('drop function if exists "user_user_email_primary_validate"();');
    } else {
      expect(code).not.toContain('down()'); // MikroORM writes no down migrations for SQLite
    }

    await cli(scratch, 'migration:up');
    expect(await cli(scratch, 'migration:create')).toContain('No changes required');
    expect(await migrationFiles(scratch)).toEqual([file]);

    orm = await MikroORM.init<AbstractSqlDriver>(defineCoasterConfig({ ...scratch.options, entities: [...entities, ...emailEntities] }));
    const em = orm.em.fork();
    const [ada, grace] = ['ada', 'grace'].map(n => em.create(User, { email: `${n}@example.com`, name: n }));
    const [adaEmail, graceEmail] = [ada, grace].map(user => em.create(UserEmail, { address: user.email, user }));
    ada.primaryEmail = adaEmail;
    await em.flush();
    const insert = em.execute(`insert into "user_user_email_primary" ("user_id", "user_email_id") values (${grace.id}, ${adaEmail.id})`);
    await expect(insert).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(insert).rejects.toThrow('The target is not affiliated with this parent');
    grace.primaryEmail = graceEmail;
    await em.flush();
    const rows = await em.execute<{ user_id: number; user_email_id: number }[]>('select "user_id", "user_email_id" from "user_user_email_primary" order by 1');
    expect(rows.map(row => [row.user_id, row.user_email_id].map(Number))).toEqual([
      [ada.id, adaEmail.id],
      [grace.id, graceEmail.id],
    ]);
  });
});

describe('migration:down through the MikroORM CLI on postgresql', () => {
  let scratch: Scratch | undefined;

  afterEach(() => scratch?.drop());

  it('drops the table, its trigger and its function', async () => {
    scratch = await scratchFor('postgresql');
    await cli(scratch, 'migration:create');
    await cli(scratch, 'migration:up');
    const count = async (sql: string) => {
      const orm = await MikroORM.init<AbstractSqlDriver>(defineCoasterConfig({ ...scratch!.options, entities: [...entities, ...emailEntities] }));
      try {
        const [row] = await orm.em.fork().execute<{ count: string }[]>(sql);
        return Number(row.count);
      } finally {
        await orm.close(true);
      }
    };
    const objects =
      `select (select count(*) from pg_class where relname = 'user_user_email_primary') + ` +
      `(select count(*) from pg_trigger where tgname = 'user_user_email_primary_trigger') + ` +
      `(select count(*) from pg_proc where proname = 'user_user_email_primary_validate') as count`;
    expect(await count(objects)).toBe(3);
    await cli(scratch, 'migration:down');
    expect(await count(objects)).toBe(0);
  });
});

describe.each(databases)("the example app's committed migrations on $name", db => {
  let orm: TestOrm | undefined;

  afterEach(() => closeOrm(orm));

  it('build the schema its entities describe, trigger included', async () => {
    const folder = join('migrations', db.name);
    const migrationsList = await Promise.all(
      (await readdir(folder))
        .filter(file => file.endsWith('.ts'))
        .sort()
        .map(async file => {
          const module: Record<string, Constructor<Migration>> = await import(`../../${folder}/${file}`);
          return { name: basename(file, '.ts'), class: Object.values(module)[0] };
        }),
    );
    expect(migrationsList.length).toBeGreaterThan(0);
    ({ orm } = await db.init({ entities: [...entities, ...emailEntities], extensions: [Migrator], migrations: { migrationsList, snapshot: false } }));
    await orm.schema.dropSchema();
    await orm.migrator.up();
    expect(await orm.schema.getUpdateSchemaSQL()).toBe('');

    const em = orm.em.fork();
    const [ada, grace] = ['ada', 'grace'].map(n => em.create(User, { email: `${n}@example.com`, name: n }));
    const graceEmail = em.create(UserEmail, { address: grace.email, user: grace });
    await em.flush();
    ada.primaryEmail = orm.em.fork().getReference(UserEmail, graceEmail.id);
    await expect(em.flush()).rejects.toThrow(ForeignKeyConstraintViolationException);
  });
});
