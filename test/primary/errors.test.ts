import { Entity, type EntityClass, ManyToOne, MikroORM, PrimaryKey, Property, wrap } from '@mikro-orm/core';
import { AbstractSqlPlatform } from '@mikro-orm/knex';
import { MariaDbDriver, MariaDbPlatform } from '@mikro-orm/mariadb';
import { MySqlPlatform } from '@mikro-orm/mysql';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { describe, expect, it } from 'vitest';
import { defineCoasterConfig } from '../../src/index.js';
import { addPrimaryRelationship, PrimaryRelationshipError } from '../../src/primary/index.js';
import { triggerDialect } from '../../src/primary/primaryTriggers.js';
import { closeOrm, mariadbUrlFor, postgresUrlFor, sqlite, databases, type TestDatabase, withPrimary } from '../support/databases.js';
import { ChildForPrimary, ParentForPrimary } from './entities.js';
import { quotedFor } from './sql.js';

interface FamilyParent {
  id: number;
  primary: FamilyChild | null;
}

interface FamilyChild {
  id: number;
  owner: FamilyParent;
  name: string;
}

/**
 * A parent and child entity pair of their own (`<prefix>Parent`, `<prefix>Child`), so each test
 * declares its relationship on classes no other test uses. Built with MikroORM's decorators applied
 * by hand, as decorators cannot name classes made at run time.
 */
function family(prefix: string, options: { compositeParent?: boolean; parentTable?: string; childTable?: string } = {}) {
  const Parent = { [`${prefix}Parent`]: class {} }[`${prefix}Parent`] as unknown as EntityClass<FamilyParent>;
  const Child = { [`${prefix}Child`]: class {} }[`${prefix}Child`] as unknown as EntityClass<FamilyChild>;
  PrimaryKey({ type: 'integer' })(Parent.prototype, 'id');
  if (options.compositeParent) {
    PrimaryKey({ type: 'integer' })(Parent.prototype, 'version');
  }
  Entity({ tableName: options.parentTable })(Parent);
  PrimaryKey({ type: 'integer' })(Child.prototype, 'id');
  ManyToOne(() => Parent, { fieldName: 'owner_id' })(Child.prototype, 'owner');
  Property({ type: 'string' })(Child.prototype, 'name');
  Entity({ tableName: options.childTable })(Child);
  return { Parent, Child, entities: [Parent, Child] };
}

describe('primary relationship declarations', () => {
  it('refuse a second declaration of the same property', () => {
    expect(() => addPrimaryRelationship(ParentForPrimary, 'primaryChild', ChildForPrimary, 'parent', 'parent_ref')).toThrow(
      PrimaryRelationshipError.alreadyRegistered('ParentForPrimary', 'primaryChild').message,
    );
  });

  it('may come after withPrimaryRelationships(), as long as they come before MikroORM.init()', async () => {
    const { Parent, Child, entities } = family('Late');
    const options = withPrimary({ driver: SqliteDriver, dbName: ':memory:', entities });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    const orm = await MikroORM.init(options);
    try {
      expect(orm.getMetadata().find('LateParent_primary')?.tableName).toBe('late_parent_late_child_primary');
    } finally {
      await orm.close();
    }
  });

  it('are reported at MikroORM.init when defineCoasterConfig() was not wrapped in withPrimaryRelationships()', async () => {
    const { Parent, Child, entities } = family('Unwrapped');
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    const init = MikroORM.init(defineCoasterConfig({ driver: SqliteDriver, dbName: ':memory:', entities }));
    await expect(init).rejects.toThrow(PrimaryRelationshipError);
    await expect(init).rejects.toThrow(PrimaryRelationshipError.notConfigured(Parent.name, 'primary').message);
  });

  it('are reported when the ORM was not configured by this library', async () => {
    const { Parent, Child, entities } = family('Unconfigured');
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    const orm = await MikroORM.init({ driver: SqliteDriver, dbName: ':memory:', entities });
    try {
      await orm.schema.createSchema();
      await expect(orm.em.fork().find(Parent, {})).rejects.toThrow(PrimaryRelationshipError.notConfigured(Parent.name, 'primary').message);
    } finally {
      await orm.close();
    }
  });

  it('are reported by the flush that would write one declared after MikroORM.init()', async () => {
    const { Parent, Child, entities } = family('TooLate');
    const { orm } = await sqlite.init({ entities }, withPrimary);
    try {
      addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
      const em = orm.em.fork();
      const parent = em.create(Parent, {});
      await em.flush();
      parent.primary = em.create(Child, { owner: parent, name: 'child' });
      await expect(em.flush()).rejects.toThrow(PrimaryRelationshipError.notConfigured(Parent.name, 'primary').message);
    } finally {
      await closeOrm(orm);
    }
  });

  it('are reported at discovery when the parent is not listed in entities', async () => {
    const { Parent, Child } = family('Unlisted');
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    await expect(sqlite.init({ entities: [Child] }, withPrimary)).rejects.toThrow(PrimaryRelationshipError.notConfigured(Parent.name, 'primary').message);
  });

  it("are checked against the child's many-to-one and its column", async () => {
    const wrongColumn = family('WrongColumn');
    addPrimaryRelationship(wrongColumn.Parent, 'primary', wrongColumn.Child, 'owner', 'parent_id');
    await expect(sqlite.init({ entities: wrongColumn.entities }, withPrimary)).rejects.toThrow(
      "needs WrongColumnChild.owner to be a many-to-one to WrongColumnParent stored in the column 'parent_id', but its column is 'owner_id'",
    );

    const notARelation = family('NotARelation');
    addPrimaryRelationship(notARelation.Parent, 'primary', notARelation.Child, 'name', 'owner_id');
    await expect(sqlite.init({ entities: notARelation.entities }, withPrimary)).rejects.toThrow(
      "needs NotARelationChild.name to be a many-to-one to NotARelationParent stored in the column 'owner_id', but it is a scalar property of type string",
    );
  });

  it('need single-column primary keys', async () => {
    const { Parent, Child, entities } = family('Composite', { compositeParent: true });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    await expect(sqlite.init({ entities }, withPrimary)).rejects.toThrow(PrimaryRelationshipError.compositePrimaryKey('CompositeParent').message);
  });

  it('need PostgreSQL, SQLite, MariaDB or MySQL', () => {
    expect(triggerDialect(new MariaDbPlatform())).toBe('mysql');
    expect(triggerDialect(new MySqlPlatform())).toBe('mysql');
    class OtherSqlPlatform extends AbstractSqlPlatform {}
    expect(() => triggerDialect(new OtherSqlPlatform())).toThrow(PrimaryRelationshipError.unsupportedPlatform('OtherSqlPlatform').message);
  });
});

/** MikroORM options for `db` that fail at discovery, before connecting (no database is created for them). */
function optionsFor(name: TestDatabase['name']) {
  return name === 'sqlite'
    ? { driver: SqliteDriver, dbName: ':memory:' }
    : name === 'postgresql'
      ? { driver: PostgreSqlDriver, clientUrl: postgresUrlFor('postgres') }
      : { driver: MariaDbDriver, clientUrl: mariadbUrlFor('test') };
}

describe.each(databases)("primary tables' names within PostgreSQL's 63-byte identifiers, on $name", db => {
  // `<parent table>_<child table>_primary`: 20 + 1 + table + 8 bytes
  const parentTable = 'p'.repeat(20);

  it('refuse at discovery a table name over 54 bytes, on SQLite too, and name the tableName option', async () => {
    const { Parent, Child, entities } = family(`Long${db.name}`, { parentTable, childTable: 'c'.repeat(26) });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    const table = `${parentTable}_${'c'.repeat(26)}_primary`;
    expect(Buffer.byteLength(table)).toBe(55);
    const init = MikroORM.init(withPrimary({ ...optionsFor(db.name), entities }));
    await expect(init).rejects.toThrow(PrimaryRelationshipError);
    await expect(init).rejects.toThrow(PrimaryRelationshipError.tableNameTooLong(Parent.name, 'primary', table, 54).message);
    await expect(init).rejects.toThrow('{ tableName:');
  });

  it('count bytes, not characters', async () => {
    // 13 characters of 2 bytes each: 20 + 1 + 13 + 8 = 42 characters, but 55 bytes
    const { Parent, Child, entities } = family(`Wide${db.name}`, { parentTable, childTable: 'é'.repeat(13) });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    await expect(MikroORM.init(withPrimary({ ...optionsFor(db.name), entities }))).rejects.toThrow(
      "is 55 bytes long, but PostgreSQL cuts identifiers at 63 bytes",
    );
  });

  it('refuse a column named after a table of more than 63 bytes', async () => {
    const longParent = 'q'.repeat(61); // its column: `<table>_id`, 64 bytes
    const { Parent, Child, entities } = family(`LongColumn${db.name}`, { parentTable: longParent });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id', { tableName: 'long_column_primary' });
    await expect(MikroORM.init(withPrimary({ ...optionsFor(db.name), entities }))).rejects.toThrow(
      PrimaryRelationshipError.columnNameTooLong(Parent.name, 'primary', `${longParent}_id`, 63).message,
    );
  });

  it('take a table name of 54 bytes, and its function and trigger keep their full names', async () => {
    const childTable = 'c'.repeat(25);
    const { Parent, Child, entities } = family(`Longest${db.name}`, { parentTable, childTable });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    const table = `${parentTable}_${childTable}_primary`;
    expect(Buffer.byteLength(table)).toBe(54);
    const { orm } = await db.init({ entities }, withPrimary);
    try {
      const em = orm.em.fork();
      const parent = em.create(Parent, {});
      const child = em.create(Child, { owner: parent, name: 'a' });
      parent.primary = child;
      await em.flush();
      const rows = await em.execute(quotedFor(db, `select "${parentTable}_id" as parent, "${childTable}_id" as child from "${table}"`));
      expect(rows.map(row => [Number(row.parent), Number(row.child)])).toEqual([[parent.id, child.id]]);
      const family = db.name === 'sqlite' || db.name === 'postgresql' ? db.name : 'mysql';
      const objects = {
        postgresql: `select tgname as name from pg_trigger where tgname = '${table}_trigger' union all select proname from pg_proc where proname = '${table}_validate'`,
        sqlite: `select name from sqlite_master where type = 'trigger' and tbl_name = '${table}' order by name`,
        mysql: `select trigger_name as name from information_schema.triggers where event_object_table = '${table}' and trigger_schema = database() order by 1`,
      }[family];
      expect((await em.execute<{ name: string }[]>(objects)).map(row => row.name)).toEqual(
        {
          postgresql: [`${table}_trigger`, `${table}_validate`],
          sqlite: [`${table}_trigger_insert`, `${table}_trigger_update`],
          mysql: [`${table}_insert`, `${table}_update`],
        }[family],
      );
      expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe('');
    } finally {
      await closeOrm(orm);
    }
  });

  it('take the tableName option, for the table, its trigger and its reads', async () => {
    const childTable = 'c'.repeat(40); // the default name would be 69 bytes
    const { Parent, Child, entities } = family(`Named${db.name}`, { parentTable, childTable });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id', { tableName: `named_primary_${db.name}` });
    const { orm } = await db.init({ entities }, withPrimary);
    try {
      expect(orm.getMetadata().find(`${Parent.name}_primary`)?.tableName).toBe(`named_primary_${db.name}`);
      const em = orm.em.fork();
      const [parent, other] = [em.create(Parent, {}), em.create(Parent, {})];
      const child = em.create(Child, { owner: parent, name: 'a' });
      parent.primary = child;
      await em.flush();
      const rows = await em.execute(quotedFor(db, `select "${parentTable}_id" as parent, "${childTable}_id" as child from "named_primary_${db.name}"`));
      expect(rows.map(row => [Number(row.parent), Number(row.child)])).toEqual([[parent.id, child.id]]);
      await expect(
        em.execute(quotedFor(db, `insert into "named_primary_${db.name}" ("${parentTable}_id", "${childTable}_id") values (${other.id}, ${child.id})`)),
      ).rejects.toThrow('The target is not affiliated with this parent');
      const again = await orm.em.fork().findOneOrFail(Parent, parent.id, { populate: ['primary'] });
      expect(wrap(again.primary!).toObject()).toMatchObject({ id: child.id, name: 'a' });
    } finally {
      await closeOrm(orm);
    }
  });
});
