import { Entity, type EntityClass, ManyToOne, MikroORM, PrimaryKey, Property } from '@mikro-orm/core';
import { AbstractSqlPlatform } from '@mikro-orm/knex';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { describe, expect, it } from 'vitest';
import { addPrimaryRelationship, defineCoasterConfig, PrimaryRelationshipError } from '../../src/index.js';
import { triggerDialect } from '../../src/primaryTriggers.js';
import { closeOrm, sqlite } from '../support/databases.js';
import { ChildForPrimary, ParentForPrimary } from './entities.js';

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
function family(prefix: string, options: { compositeParent?: boolean } = {}) {
  const Parent = { [`${prefix}Parent`]: class {} }[`${prefix}Parent`] as unknown as EntityClass<FamilyParent>;
  const Child = { [`${prefix}Child`]: class {} }[`${prefix}Child`] as unknown as EntityClass<FamilyChild>;
  PrimaryKey({ type: 'integer' })(Parent.prototype, 'id');
  if (options.compositeParent) {
    PrimaryKey({ type: 'integer' })(Parent.prototype, 'version');
  }
  Entity()(Parent);
  PrimaryKey({ type: 'integer' })(Child.prototype, 'id');
  ManyToOne(() => Parent, { fieldName: 'owner_id' })(Child.prototype, 'owner');
  Property({ type: 'string' })(Child.prototype, 'name');
  Entity()(Child);
  return { Parent, Child, entities: [Parent, Child] };
}

describe('primary relationship declarations', () => {
  it('refuse a second declaration of the same property', () => {
    expect(() => addPrimaryRelationship(ParentForPrimary, 'primaryChild', ChildForPrimary, 'parent', 'parent_ref')).toThrow(
      PrimaryRelationshipError.alreadyRegistered('ParentForPrimary', 'primaryChild').message,
    );
  });

  it('may come after defineCoasterConfig(), as long as they come before MikroORM.init()', async () => {
    const { Parent, Child, entities } = family('Late');
    const options = defineCoasterConfig({ driver: SqliteDriver, dbName: ':memory:', entities });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    const orm = await MikroORM.init(options);
    try {
      expect(orm.getMetadata().find('LateParent_primary')?.tableName).toBe('late_parent_late_child_primary');
    } finally {
      await orm.close();
    }
  });

  it('are reported when the ORM was not configured by defineCoasterConfig()', async () => {
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
    const { orm } = await sqlite.init({ entities });
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
    await expect(sqlite.init({ entities: [Child] })).rejects.toThrow(PrimaryRelationshipError.notConfigured(Parent.name, 'primary').message);
  });

  it("are checked against the child's many-to-one and its column", async () => {
    const wrongColumn = family('WrongColumn');
    addPrimaryRelationship(wrongColumn.Parent, 'primary', wrongColumn.Child, 'owner', 'parent_id');
    await expect(sqlite.init({ entities: wrongColumn.entities })).rejects.toThrow(
      "needs WrongColumnChild.owner to be a many-to-one to WrongColumnParent stored in the column 'parent_id', but its column is 'owner_id'",
    );

    const notARelation = family('NotARelation');
    addPrimaryRelationship(notARelation.Parent, 'primary', notARelation.Child, 'name', 'owner_id');
    await expect(sqlite.init({ entities: notARelation.entities })).rejects.toThrow(
      "needs NotARelationChild.name to be a many-to-one to NotARelationParent stored in the column 'owner_id', but it is a scalar property of type string",
    );
  });

  it('need single-column primary keys', async () => {
    const { Parent, Child, entities } = family('Composite', { compositeParent: true });
    addPrimaryRelationship(Parent, 'primary', Child, 'owner', 'owner_id');
    await expect(sqlite.init({ entities })).rejects.toThrow(PrimaryRelationshipError.compositePrimaryKey('CompositeParent').message);
  });

  it('need PostgreSQL or SQLite', () => {
    class OtherSqlPlatform extends AbstractSqlPlatform {}
    expect(() => triggerDialect(new OtherSqlPlatform())).toThrow(PrimaryRelationshipError.unsupportedPlatform('OtherSqlPlatform').message);
  });
});
