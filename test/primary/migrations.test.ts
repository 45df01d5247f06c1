import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import {
  Collection,
  type Constructor,
  Entity,
  EntitySchema,
  type EntitySchemaMetadata,
  ForeignKeyConstraintViolationException,
  ManyToOne,
  type MigrationDiff,
  MikroORM,
  OneToMany,
  type Options,
  PrimaryKey,
} from '@mikro-orm/core';
import { type AbstractSqlDriver, DatabaseSchema } from '@mikro-orm/knex';
import { type Migration, Migrator, TSMigrationGenerator } from '@mikro-orm/migrations';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { emailEntities, UserEmail } from '../../example/emails.js';
import { entities, Follow, Tag, User } from '../../example/entities.js';
import type { CoasterOptions } from '../../src/index.js';
import { addPrimaryRelationship, CoasterMigrator } from '../../src/primary/index.js';
import { closeOrm, mariadbUrlFor, postgresAdmin, postgresUrlFor, sqlite, databases, type TestOrm, withPrimary } from '../support/databases.js';
import { mariadbAdmin } from '../support/mariadbServer.js';
import { quotedFor } from './sql.js';

const run = promisify(execFile);

/**
 * The time a test of several CLI runs may take. Each run is a process of its own (npm, tsx, MikroORM's
 * discovery) that needs about 3 s of CPU; CI runs the suite beside `npm run compat` on 2 cores, where four
 * such runs took over 30 s (the default test timeout) and failed a run whose every assertion held.
 */
const cliTestTimeout = 180_000;

/** A scratch database and migrations folder for the example app's configuration, and the CLI on them. */
interface Scratch {
  env: Record<string, string>;
  options: Partial<CoasterOptions>;
  migrations: string;
  drop(): Promise<void>;
}

/** The `migrations.emit` the example app's configuration reads from `MIGRATIONS_EMIT`. */
type Emit = 'ts' | 'js' | 'cjs';

/** The databases of the migration suites (MariaDB through `@mikro-orm/mariadb`). */
type Name = 'sqlite' | 'postgresql' | 'mariadb';

/** {@link Name}s of this run: MariaDB's only when its server answers (see the global setup). */
const names = databases.map(db => db.name).filter((name): name is Name => name !== 'mysql');

/** Raw SQL written with double-quoted identifiers, for the database `name`. */
const quoted = (name: Name, sql: string) => quotedFor({ name }, sql);

async function scratchFor(name: Name, emit: Emit = 'ts'): Promise<Scratch> {
  const dir = join('.tmp', `cli-${randomBytes(6).toString('hex')}`);
  const migrations = join(dir, 'migrations');
  await mkdir(dir, { recursive: true });
  const common = { MIGRATIONS_PATH: migrations, MIGRATIONS_EMIT: emit };
  if (name === 'sqlite') {
    const dbName = join(dir, 'example.sqlite');
    return {
      env: { SQLITE_PATH: dbName, ...common },
      options: { driver: SqliteDriver, dbName },
      migrations,
      drop: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const dbName = `coaster_cli_${randomBytes(6).toString('hex')}`;
  if (name === 'mariadb') {
    const admin = inject('mariadbUrl')!;
    await mariadbAdmin(admin, `create database \`${dbName}\``);
    const clientUrl = mariadbUrlFor(dbName);
    // the example app's configuration takes `mariadb://` for MikroORM's MariaDB driver
    const url = new URL(clientUrl);
    url.protocol = 'mariadb:';
    return {
      env: { DATABASE_URL: url.toString(), ...common },
      options: { driver: MariaDbDriver, clientUrl },
      migrations,
      drop: async () => {
        await rm(dir, { recursive: true, force: true });
        await mariadbAdmin(admin, `drop database if exists \`${dbName}\``);
      },
    };
  }
  await postgresAdmin(`create database "${dbName}"`);
  return {
    env: { DATABASE_URL: postgresUrlFor(dbName), ...common },
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

async function migrationFiles(scratch: Scratch, emit: Emit = 'ts'): Promise<string[]> {
  return (await readdir(scratch.migrations)).filter(file => file.endsWith(`.${emit}`)).sort();
}

/** Counts a primary table, its trigger(s) and (on PostgreSQL) its function: 3 of them on every database. */
const primaryObjects = (table: string): Record<Name, string> => ({
  sqlite: `select count(*) as count from sqlite_master where name in ('${table}', '${table}_trigger_insert', '${table}_trigger_update')`,
  postgresql:
    `select (select count(*) from pg_class where relname = '${table}') + ` +
    `(select count(*) from pg_trigger where tgname = '${table}_trigger') + ` +
    `(select count(*) from pg_proc where proname = '${table}_validate') as count`,
  mariadb:
    `select (select count(*) from information_schema.tables where table_schema = database() and table_name = '${table}') + ` +
    `(select count(*) from information_schema.triggers where trigger_schema = database() and trigger_name in ('${table}_insert', '${table}_update')) as count`,
});

/** The first trigger a migration of the example app creates, as the migration file spells it. */
const createTrigger = {
  sqlite: 'create trigger "user_user_email_primary_trigger_insert"',
  postgresql: 'create trigger "user_user_email_primary_trigger"',
  mariadb: 'create trigger \\`user_user_email_primary_insert\\` before insert on \\`user_user_email_primary\\`',
};

/** How many of {@link primaryObjects} the ORM's database has. */
async function countPrimaryObjects(orm: MikroORM<AbstractSqlDriver>, name: Name, table = 'user_user_email_primary'): Promise<number> {
  return Number((await orm.em.fork().execute<{ count: number | string }[]>(primaryObjects(table)[name]))[0].count);
}

describe.each(names)('migrations through the MikroORM CLI on %s', { timeout: cliTestTimeout }, name => {
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
    expect(code).toContain(createTrigger[name]);
    const down = code.slice(code.indexOf('override async down()'));
    if (name === 'postgresql') {
      expect(code).toContain('create or replace function "user_user_email_primary_validate"()');
      expect(down).toContain('drop function if exists "user_user_email_primary_validate"();');
    } else if (name === 'mariadb') {
      expect(code).toContain('create trigger \\`user_user_email_primary_update\\` before update on \\`user_user_email_primary\\`');
      // the triggers go with their table
      expect(down).toContain('drop table if exists \\`user_user_email_primary\\`;');
      expect(down).not.toContain('trigger');
    } else {
      // MikroORM writes no down migrations for SQLite; CoasterSchemaGenerator's drops what up created, children first
      expect(down.match(/drop table if exists \\`\w+\\`/g)).toEqual(
        ['follow', 'user_user_email_primary', 'user_email', 'user', 'tag'].map(table => `drop table if exists \\\`${table}\\\``),
      );
    }

    await cli(scratch, 'migration:up');
    expect(await cli(scratch, 'migration:create')).toContain('No changes required');
    expect(await migrationFiles(scratch)).toEqual([file]);

    orm = await MikroORM.init<AbstractSqlDriver>(withPrimary({ ...scratch.options, entities: [...entities, ...emailEntities] }));
    const em = orm.em.fork();
    const [ada, grace] = ['ada', 'grace'].map(n => em.create(User, { email: `${n}@example.com`, name: n }));
    const [adaEmail, graceEmail] = [ada, grace].map(user => em.create(UserEmail, { address: user.email, user }));
    ada.primaryEmail = adaEmail;
    await em.flush();
    const insert = em.execute(quoted(name, `insert into "user_user_email_primary" ("user_id", "user_email_id") values (${grace.id}, ${adaEmail.id})`));
    await expect(insert).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(insert).rejects.toThrow('The target is not affiliated with this parent');
    grace.primaryEmail = graceEmail;
    await em.flush();
    const rows = await em.execute<{ user_id: number; user_email_id: number }[]>(quoted(name, 'select "user_id", "user_email_id" from "user_user_email_primary" order by 1'));
    expect(rows.map(row => [row.user_id, row.user_email_id].map(Number))).toEqual([
      [ada.id, adaEmail.id],
      [grace.id, graceEmail.id],
    ]);
  });

  it('migration:down drops the primary table and its triggers (and PostgreSQL\'s function), rows and all', async () => {
    scratch = await scratchFor(name);
    await cli(scratch, 'migration:create');
    await cli(scratch, 'migration:up');
    orm = await MikroORM.init<AbstractSqlDriver>(withPrimary({ ...scratch.options, entities: [...entities, ...emailEntities] }));
    const em = orm.em.fork();
    const ada = em.create(User, { email: 'ada@example.com', name: 'ada' });
    ada.primaryEmail = em.create(UserEmail, { address: ada.email, user: ada });
    em.create(Follow, { user: ada, tag: em.create(Tag, { name: 'orm' }) }); // its foreign keys do not cascade
    await em.flush();
    expect(await countPrimaryObjects(orm, name)).toBe(3);
    await cli(scratch, 'migration:down');
    expect(await countPrimaryObjects(orm, name)).toBe(0);
  });
});

describe.each(names)('JavaScript migrations through the MikroORM CLI on %s', { timeout: cliTestTimeout }, name => {
  let scratch: Scratch | undefined;
  let orm: MikroORM<AbstractSqlDriver> | undefined;

  afterEach(async () => {
    await orm?.close(true);
    await scratch?.drop();
  });

  // MikroORM's JSMigrationGenerator writes CommonJS: a `.cjs` file loads anywhere, a `.js` file only where
  // Node takes `.js` for CommonJS, which this package ("type": "module") has to say in the folder
  it.each(['cjs', 'js'] as const)('emit %s: create writes JavaScript with the trigger, up applies it, down removes it', async emit => {
    scratch = await scratchFor(name, emit);
    if (emit === 'js') {
      await mkdir(scratch.migrations, { recursive: true });
      await writeFile(join(scratch.migrations, 'package.json'), '{ "type": "commonjs" }\n');
    }
    expect(await cli(scratch, 'migration:create')).toContain('successfully created');
    const [file] = await migrationFiles(scratch, emit);
    const code = await readFile(join(scratch.migrations, file), 'utf8');
    expect(code).toContain("const { Migration } = require('@mikro-orm/migrations');");
    expect(code).not.toContain(': Promise<void>');
    expect(code).toContain(createTrigger[name]);
    const down = code.slice(code.indexOf('async down()'));
    expect(down).toContain(name === 'postgresql' ? 'drop function if exists "user_user_email_primary_validate"();' : 'drop table if exists \\`user_user_email_primary\\`');

    expect(await cli(scratch, 'migration:up')).toContain('Successfully migrated up');
    orm = await MikroORM.init<AbstractSqlDriver>(withPrimary({ ...scratch.options, entities: [...entities, ...emailEntities] }));
    const em = orm.em.fork();
    const [ada, grace] = ['ada', 'grace'].map(n => em.create(User, { email: `${n}@example.com`, name: n }));
    const adaEmail = em.create(UserEmail, { address: ada.email, user: ada });
    ada.primaryEmail = adaEmail;
    await em.flush();
    const rows = await em.execute<{ user_id: number; user_email_id: number }[]>(quoted(name, 'select "user_id", "user_email_id" from "user_user_email_primary"'));
    expect(rows.map(row => [row.user_id, row.user_email_id].map(Number))).toEqual([[ada.id, adaEmail.id]]);
    await expect(
      em.execute(quoted(name, `insert into "user_user_email_primary" ("user_id", "user_email_id") values (${grace.id}, ${adaEmail.id})`)),
    ).rejects.toThrow(ForeignKeyConstraintViolationException);
    expect(await countPrimaryObjects(orm, name)).toBe(3);

    expect(await cli(scratch, 'migration:down')).toContain('Successfully migrated down');
    expect(await countPrimaryObjects(orm, name)).toBe(0);
  });
});

describe('a migrations.generator of your own', () => {
  it('writes the file, and the triggers are in it', async () => {
    class HeaderGenerator extends TSMigrationGenerator {
      override generateMigrationFile(className: string, diff: MigrationDiff) {
        return `// written by HeaderGenerator\n${super.generateMigrationFile(className, diff)}`;
      }
    }
    const options = withPrimary({ driver: SqliteDriver, dbName: ':memory:', entities: [...entities, ...emailEntities], extensions: [Migrator], migrations: { generator: HeaderGenerator, snapshot: false } });
    expect(options.migrations?.generator).toBe(HeaderGenerator);
    const orm = await MikroORM.init(options);
    try {
      expect(orm.migrator).toBeInstanceOf(CoasterMigrator);
      const path = join('.tmp', `generator-${randomBytes(6).toString('hex')}`);
      const { code } = await orm.migrator.createMigration(path);
      await rm(path, { recursive: true, force: true });
      expect(code.startsWith('// written by HeaderGenerator\n')).toBe(true);
      expect(code).toContain('create trigger "user_user_email_primary_trigger_insert"');
    } finally {
      await orm.close(true);
    }
  });
});

/** An owner's favourite pet, a primary relationship, and the same tables without it. */
@Entity({ tableName: 'owner' })
class Owner {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @OneToMany(() => Pet, pet => pet.owner)
  pets = new Collection<Pet>(this);

  favourite!: Pet | null;
}

@Entity({ tableName: 'pet' })
class Pet {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @ManyToOne(() => Owner, { fieldName: 'owner_ref', deleteRule: 'cascade' })
  owner!: Owner;
}

addPrimaryRelationship(Owner, 'favourite', Pet, 'owner', 'owner_ref');

const withoutFavourite = [
  new EntitySchema({ name: 'OwnerWithoutFavourite', tableName: 'owner', properties: { id: { type: 'integer', primary: true } } }),
  new EntitySchema({
    name: 'PetWithoutFavourite',
    tableName: 'pet',
    properties: {
      id: { type: 'integer', primary: true },
      owner: { kind: 'm:1', entity: 'OwnerWithoutFavourite', fieldName: 'owner_ref', deleteRule: 'cascade' },
    },
  }),
];

describe.each(names)('a primary relationship removed from the entities, on %s', name => {
  let scratch: Scratch | undefined;
  const orms: MikroORM<AbstractSqlDriver>[] = [];

  afterEach(async () => {
    await Promise.all(orms.splice(0).map(orm => orm.close(true)));
    await scratch?.drop();
  });

  it("is dropped by the next migration, PostgreSQL's function too; on PostgreSQL and MariaDB its down recreates table and trigger(s)", async () => {
    const { options, migrations } = (scratch = await scratchFor(name, 'cjs'));
    const init = async (entityList: Options['entities']) => {
      const orm = await MikroORM.init<AbstractSqlDriver>(withPrimary({ ...options, entities: entityList, migrations: { path: migrations, emit: 'cjs' } }));
      orms.push(orm);
      return orm;
    };
    const before = await init([Owner, Pet]);
    // named, as both are created within a second, and their file names would be the same timestamp
    await before.migrator.createMigration(undefined, false, false, '1_favourite');
    await before.migrator.up();
    const em = before.em.fork();
    const owner = em.create(Owner, {});
    owner.favourite = em.create(Pet, { owner });
    await em.flush();
    expect(await countPrimaryObjects(before, name, 'owner_pet_primary')).toBe(3);

    // the entities no longer declare it: only the table's comment, in the snapshot, says what it was
    const after = await init(withoutFavourite);
    const { code } = await after.migrator.createMigration(undefined, false, false, '2_no_favourite');
    const [up, down = ''] = code.split('async down()');
    expect(up).toMatch(/drop table if exists \\?[`"]owner_pet_primary\\?[`"]/);
    if (name === 'postgresql') {
      expect(up).toContain('drop function if exists "owner_pet_primary_validate"();');
      expect(down).toContain('create table "owner_pet_primary"');
      expect(down).toContain('create or replace function "owner_pet_primary_validate"()');
      expect(down).toContain('create trigger "owner_pet_primary_trigger" before insert or update on "owner_pet_primary"');
    } else if (name === 'mariadb') {
      // MariaDB keeps the table's comment, from which the snapshot knows what the table was
      expect(up).not.toContain('trigger');
      expect(down).toContain('create table \\`owner_pet_primary\\`');
      for (const event of ['insert', 'update']) {
        expect(down).toContain(`create trigger \\\`owner_pet_primary_${event}\\\` before ${event} on \\\`owner_pet_primary\\\``);
      }
    } else {
      expect(down).toBe(''); // SQLite keeps no table comments: a dropped table is not recreated (see CoasterSchemaGenerator)
    }
    await after.migrator.up();
    expect(await countPrimaryObjects(after, name, 'owner_pet_primary')).toBe(0);

    if (name === 'sqlite') {
      await expect(after.migrator.down()).rejects.toThrow('This migration cannot be reverted');
      return;
    }
    await after.migrator.down();
    expect(await countPrimaryObjects(after, name, 'owner_pet_primary')).toBe(3);
    const [mine, other] = await after.em.fork().execute<{ id: number }[]>(quoted(name, 'insert into "owner" ("id") values (default), (default) returning "id"'));
    const [otherPet] = await after.em.fork().execute<{ id: number }[]>(quoted(name, `insert into "pet" ("owner_ref") values (${other.id}) returning "id"`));
    await expect(
      after.em.fork().execute(quoted(name, `insert into "owner_pet_primary" ("owner_id", "pet_id") values (${mine.id}, ${otherPet.id})`)),
    ).rejects.toThrow(ForeignKeyConstraintViolationException);
  });
});

describe('down migrations on sqlite (SQLite-only: MikroORM writes none there)', () => {
  const orms: TestOrm[] = [];

  afterEach(async () => {
    await Promise.all(orms.splice(0).map(orm => closeOrm(orm)));
  });

  /** An author table; `changes` adds or replaces columns. */
  const authors = (changes: EntitySchemaMetadata<object>['properties'] = {}, extra: EntitySchema[] = []) => [
    new EntitySchema({
      name: 'Author',
      tableName: 'author',
      properties: { id: { type: 'integer', primary: true }, name: { type: 'string' }, age: { type: 'integer' }, ...changes },
    }),
    ...extra,
  ];
  const publisher = new EntitySchema({
    name: 'Publisher',
    tableName: 'publisher',
    properties: { id: { type: 'integer', primary: true }, author: { kind: 'm:1', entity: 'Author' } },
  });

  /** The SQL of the migration from the `before` entities to the `after` ones, and its database after up and down. */
  async function migrate(before: EntitySchema[], after: EntitySchema[]) {
    const [old, current] = (await Promise.all([sqlite.init({ entities: before }, withPrimary), sqlite.init({ entities: after }, withPrimary)])).map(({ orm }) => orm);
    orms.push(old, current);
    const { up, down } = await current.schema.getUpdateSchemaMigrationSQL({ wrap: false, fromSchema: old.schema.getTargetSchema() });
    return { up, down, old, current };
  }

  it('drops the tables, columns and indexes the up added, restoring the schema before it', async () => {
    const { up, down, old, current } = await migrate(authors(), authors({ bio: { type: 'string', nullable: true } }, [publisher]));
    expect(down.split('\n').filter(Boolean)).toEqual(['drop table if exists `publisher`;', 'alter table `author` drop column `bio`;']);
    await current.schema.dropSchema();
    await current.schema.execute(await old.schema.getCreateSchemaSQL({ wrap: false }));
    await current.em.execute("insert into `author` (`id`, `name`, `age`) values (1, 'ada', 36)");
    await current.schema.execute(up);
    await current.em.execute('insert into `publisher` (`id`, `author_id`) values (1, 1)');
    await current.schema.execute(down);
    const fromSchema = await DatabaseSchema.create(current.em.getConnection(), current.em.getPlatform(), current.config);
    expect(await old.schema.getUpdateSchemaSQL({ fromSchema })).toBe('');
    expect(await current.em.execute('select * from `author`')).toEqual([{ id: 1, name: 'ada', age: 36 }]);
  });

  const withoutAge = new EntitySchema({ name: 'Author', tableName: 'author', properties: { id: { type: 'integer', primary: true }, name: { type: 'string' } } });
  it.each([
    ['changes a column', authors({ age: { type: 'integer', nullable: true } })],
    ['drops a not null column without a default', [withoutAge]],
  ])('has none when the up %s (SQLite would have to rebuild the table or refuses the column)', async (_, after) => {
    const { up, down } = await migrate(authors(), after);
    expect(up).not.toBe('');
    expect(down).toBe('');
  });

  it('has none when the up drops a table (SQLite keeps no table comments to tell whether it was a primary table)', async () => {
    const { up, down } = await migrate(authors({}, [publisher]), authors());
    expect(up).toContain('drop table if exists `publisher`;');
    expect(down).toBe('');
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
    ({ orm } = await db.init({ entities: [...entities, ...emailEntities], extensions: [Migrator], migrations: { migrationsList, snapshot: false } }, withPrimary));
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
