import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ForeignKeyConstraintViolationException, MikroORM } from '@mikro-orm/core';
import { DatabaseSchema, DatabaseTable, type Knex } from '@mikro-orm/knex';
import { SqliteDriver } from '@mikro-orm/sqlite';
import type sqlite3 from 'sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { allDrivers, closeOrm, databases, postgresql, type TestOrm, withPrimary } from '../support/databases.js';
import { PrimaryRelationshipError } from '../../src/primary/index.js';
import { primaryTableNamesOf, primaryTablesOf } from '../../src/primary/primaryTables.js';
import { childParentColumnOf, primaryTableComment } from '../../src/primary/primaryTriggers.js';
import { ChildForPrimary, ParentForPrimary, primaryEntities } from './entities.js';
import { onMariadb } from './sql.js';
import { OddChild, OddParent, oddEntities } from './weirdEntities.js';

const table = 'parent_for_primary_child_for_primary_primary';

describe.each(allDrivers)('primary tables in the schema on $name', db => {
  let orm: TestOrm | undefined;

  afterEach(() => closeOrm(orm));

  /** Names of the triggers and trigger functions the database holds. */
  async function triggerObjects(): Promise<string[]> {
    const sql =
      db.name === 'sqlite'
        ? `select name from sqlite_master where type = 'trigger'`
        : onMariadb(db)
          ? `select trigger_name as name from information_schema.triggers where trigger_schema = database()`
          : `select tgname as name from pg_trigger where not tgisinternal union all ` +
            `select proname from pg_proc where prorettype = 'trigger'::regtype and pronamespace = 'public'::regnamespace`;
    const rows = await orm!.em.fork().execute<{ name: string }[]>(sql);
    return rows.map(row => row.name).sort();
  }

  const expected = {
    sqlite: [`${table}_trigger_insert`, `${table}_trigger_update`],
    postgresql: [`${table}_trigger`, `${table}_validate`],
    mariadb: [`${table}_insert`, `${table}_update`],
    mysql: [`${table}_insert`, `${table}_update`],
  }[db.name];

  it('createSchema() creates the trigger, dropSchema() removes it, refreshDatabase() and updateSchema() recreate it', async () => {
    ({ orm } = await db.init({ entities: primaryEntities }, withPrimary));
    expect(await triggerObjects()).toEqual(expected);

    await orm.schema.dropSchema();
    expect(await triggerObjects()).toEqual([]);

    await orm.schema.updateSchema();
    expect(await triggerObjects()).toEqual(expected);

    await orm.schema.refreshDatabase();
    expect(await triggerObjects()).toEqual(expected);
    expect(await orm.schema.getUpdateSchemaSQL()).toBe('');
  });

  it('quotes table and column names that need it', async () => {
    ({ orm } = await db.init({ entities: oddEntities }, withPrimary));
    const em = orm.em.fork();
    const [first, second] = ['first', 'second'].map(() => em.create(OddParent, {}));
    const mine = em.create(OddChild, { name: 'mine', parent: first });
    const theirs = em.create(OddChild, { name: 'theirs', parent: second });
    await em.flush();

    first.favourite = mine;
    await em.flush();
    const again = await orm.em.fork().findOneOrFail(OddParent, first.id, { populate: ['favourite'] });
    expect(again.favourite?.name).toBe('mine');

    // an unloaded reference's parent is unknown to the ORM, so only the trigger can refuse it
    const other = orm.em.fork();
    other.getReference(OddParent, first.id).favourite = other.getReference(OddChild, theirs.id);
    const flush = other.flush();
    await expect(flush).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(flush).rejects.toThrow('The target is not affiliated with this parent');
  });

  it("records its trigger's names in its comment and keys, which the schema snapshot keeps, odd names included", async () => {
    ({ orm } = await db.init({ entities: oddEntities }, withPrimary));
    const platform = orm.em.getPlatform();
    const [names] = primaryTablesOf(orm.getMetadata());
    expect(names.childParentColumn).toBe('the "parent" id');
    // what the Migrator's snapshot holds (MikroORM cannot read tables whose names hold double quotes back from
    // PostgreSQL; the migration test reads the comment back from the database)
    const schema = orm.schema.getTargetSchema();
    const primaryTable = schema.getTable(names.table)!;
    expect(primaryTable.comment).toBe(primaryTableComment('the "parent" id'));
    expect(primaryTableNamesOf(platform, [], primaryTable)).toEqual({ ...names, parentPrimaryKey: undefined });
    // other tables are not primary ones, a table whose comment says it is but lacks its keys is refused
    expect(primaryTableNamesOf(platform, [], schema.getTable('odd `child`')!)).toBeUndefined();
    if (onMariadb(db)) {
      // MariaDB keeps the comment, and MikroORM reads it back with the keys, odd names and all
      const fromDatabase = (await DatabaseSchema.create(orm.em.getConnection(), platform, orm.config)).getTable(names.table)!;
      expect(fromDatabase.comment).toBe(primaryTable.comment);
      expect(primaryTableNamesOf(platform, [], fromDatabase)).toEqual({ ...names, parentPrimaryKey: undefined });
    }
    const keyless = new DatabaseTable(platform, 'keyless');
    keyless.comment = primaryTable.comment;
    expect(() => primaryTableNamesOf(platform, [], keyless)).toThrow(PrimaryRelationshipError.unrecognisedPrimaryTable('keyless').message);
    expect(childParentColumnOf(primaryTableComment('a\\b%c'))).toBe('a\\b%c');
  });
});

describe('SQLite connections', () => {
  it('enforce foreign keys', async () => {
    const { orm } = await databases[0].init({ entities: primaryEntities }, withPrimary);
    try {
      expect(await orm.em.fork().execute('pragma foreign_keys')).toEqual([{ foreign_keys: 1 }]);
    } finally {
      await closeOrm(orm);
    }
  });

  it("enforce foreign keys on every connection the pool opens, before the application's own afterCreate", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coaster-pool-'));
    /** `pragma foreign_keys` as the application's afterCreate saw it on each new connection. */
    const created: number[] = [];
    const orm = await MikroORM.init(
      withPrimary({
        driver: SqliteDriver,
        dbName: join(dir, 'pool.sqlite'),
        entities: primaryEntities,
        pool: {
          min: 0,
          idleTimeoutMillis: 50,
          reapIntervalMillis: 10,
          afterCreate: (connection: sqlite3.Database, done: (error: Error | null, connection: sqlite3.Database) => void) => {
            connection.get<{ foreign_keys: number }>('pragma foreign_keys', (error, row) => {
              created.push(row.foreign_keys);
              done(error, connection);
            });
          },
        },
      }),
    );
    try {
      await orm.schema.createSchema();
      const em = orm.em.fork();
      expect(await em.execute('pragma foreign_keys')).toEqual([{ foreign_keys: 1 }]);
      // wait until the pool has closed its idle connection, so the next query opens another one
      const pool = (orm.em.getConnection().getKnex().client as Knex.Client).pool!;
      const opened = created.length;
      while (pool.numFree() + pool.numUsed() > 0) {
        await new Promise(resolve => setTimeout(resolve, 10));
      }

      expect(await em.execute('pragma foreign_keys')).toEqual([{ foreign_keys: 1 }]);
      expect(created.length).toBe(opened + 1);
      expect(created.every(foreignKeys => foreignKeys === 1)).toBe(true);
      const orphan = em.execute(`insert into "child_for_primary" ("name", "parent_ref") values ('orphan', 999)`);
      await expect(orphan).rejects.toThrow(ForeignKeyConstraintViolationException);
    } finally {
      await orm.close(true);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('primary tables in a configured schema on postgresql', () => {
  it("qualifies the table, trigger and function with the ORM's `schema` option", async () => {
    const { orm } = await postgresql.init({ entities: primaryEntities, schema: 'app' }, withPrimary);
    try {
      const em = orm.em.fork();
      const [mine, theirs] = ['mine', 'theirs'].map(name => em.create(ParentForPrimary, { name }));
      const child = em.create(ChildForPrimary, { name: 'child', parent: mine });
      const stranger = em.create(ChildForPrimary, { name: 'stranger', parent: theirs });
      await em.flush();
      mine.primaryChild = child;
      await em.flush();
      const [row] = await em.execute<{ n: number }[]>(`select count(*)::int as n from "app"."${table}"`);
      expect(row.n).toBe(1);
      await expect(
        em.execute(`update "app"."${table}" set "child_for_primary_id" = ${stranger.id}`),
      ).rejects.toBeInstanceOf(ForeignKeyConstraintViolationException);
    } finally {
      await closeOrm(orm);
    }
  });
});

describe.each(allDrivers.filter(onMariadb))('primary tables with multipleStatements on $name', db => {
  it('are created by refreshDatabase(), which then sends each group of statements as one query', async () => {
    const { orm } = await db.init({ entities: primaryEntities, multipleStatements: true }, withPrimary);
    try {
      await orm.schema.refreshDatabase();
      const triggers = await orm.em.fork().execute<{ name: string }[]>(
        `select trigger_name as name from information_schema.triggers where trigger_schema = database() order by 1`,
      );
      expect(triggers.map(row => row.name)).toEqual([`${table}_insert`, `${table}_update`]);
      const em = orm.em.fork();
      const [mine, theirs] = ['mine', 'theirs'].map(name => em.create(ParentForPrimary, { name }));
      const stranger = em.create(ChildForPrimary, { name: 'stranger', parent: theirs });
      await em.flush();
      await expect(
        em.execute(`insert into \`${table}\` (\`parent_for_primary_id\`, \`child_for_primary_id\`) values (${mine.id}, ${stranger.id})`),
      ).rejects.toThrow(ForeignKeyConstraintViolationException);
    } finally {
      await closeOrm(orm);
    }
  });
});
