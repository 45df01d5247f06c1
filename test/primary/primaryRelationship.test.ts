import { ForeignKeyConstraintViolationException, wrap } from '@mikro-orm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PrimaryRelationshipError } from '../../src/index.js';
import { closeOrm, databases, type QueryLog, type TestOrm } from '../support/databases.js';
import { ChildForPrimary, ParentForPrimary, primaryEntities } from './entities.js';

const table = 'parent_for_primary_child_for_primary_primary';

describe.each(databases)('primary relationships on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;

  beforeEach(async () => {
    ({ orm, log } = await db.init({ entities: primaryEntities }));
  });

  afterEach(() => closeOrm(orm));

  /** An identifier quoted as MikroORM's queries on this database quote it. */
  const quote = (name: string) => (db.name === 'sqlite' ? `\`${name}\`` : `"${name}"`);

  /** The primary table's rows as [parent id, child id] pairs, read with raw SQL. */
  async function rows(): Promise<[number, number][]> {
    const result = await orm.em.fork().execute<{ parent: number; child: number }[]>(
      `select "parent_for_primary_id" as parent, "child_for_primary_id" as child from "${table}" order by 1`,
    );
    return result.map(row => [Number(row.parent), Number(row.child)]);
  }

  /** Two parents with two children each, flushed. */
  async function family() {
    const em = orm.em.fork();
    const [parent1, parent2] = ['parent1', 'parent2'].map(name => em.create(ParentForPrimary, { name }));
    const [child1a, child1b] = ['child1a', 'child1b'].map(name => em.create(ChildForPrimary, { name, parent: parent1 }));
    const [child2a, child2b] = ['child2a', 'child2b'].map(name => em.create(ChildForPrimary, { name, parent: parent2 }));
    await em.flush();
    log.clear();
    return { em, parent1, parent2, child1a, child1b, child2a, child2b };
  }

  it('sets, loads, replaces and clears a primary child, and cascades deletes (test_parent_child_primary)', async () => {
    const { em, parent1, parent2, child1a, child1b, child2a, child2b } = await family();
    expect(parent1.primaryChild).toBeNull();
    expect(parent2.primaryChild).toBeNull();
    expect(await rows()).toEqual([]);

    parent1.primaryChild = child1a;
    parent2.primaryChild = child2a;
    log.clear();
    await em.flush();
    expect(log.statements).toEqual([
      'begin',
      `insert into ${quote(table)} (${['parent_for_primary_id', 'child_for_primary_id', 'created_at', 'updated_at'].map(quote).join(', ')}) ` +
        'values (?, ?, ?, ?), (?, ?, ?, ?)',
      'commit',
    ]);
    expect(await rows()).toEqual([
      [parent1.id, child1a.id],
      [parent2.id, child2a.id],
    ]);

    const reloaded = orm.em.fork();
    const [again1, again2] = await reloaded.find(ParentForPrimary, {}, { populate: ['primaryChild'], orderBy: { id: 'asc' } });
    expect(again1.primaryChild?.name).toBe('child1a');
    expect(again2.primaryChild?.name).toBe('child2a');

    expect(() => (parent1.primaryChild = child2b)).toThrow(PrimaryRelationshipError);
    expect(() => (parent1.primaryChild = child2b)).toThrow('The target is not affiliated with this parent');
    expect(parent1.primaryChild).toBe(child1a);
    const orphan = new ChildForPrimary(); // no parent yet
    expect(() => (parent1.primaryChild = orphan)).toThrow(PrimaryRelationshipError);
    expect(() => em.assign(parent1, { primaryChild: child2b })).toThrow(PrimaryRelationshipError);
    expect(() => em.create(ParentForPrimary, { name: 'parent3', primaryChild: child2b })).toThrow(PrimaryRelationshipError);
    expect(parent1.primaryChild).toBe(child1a);

    parent1.primaryChild = child1b;
    log.clear();
    await em.flush();
    expect(log.statements).toEqual([
      'begin',
      `update ${quote(table)} set ${quote('child_for_primary_id')} = ?, ${quote('updated_at')} = ? where ${quote('parent_for_primary_id')} = ?`,
      'commit',
    ]);
    expect(await rows()).toEqual([
      [parent1.id, child1b.id],
      [parent2.id, child2a.id],
    ]);

    parent1.primaryChild = null;
    await em.flush();
    expect(await rows()).toEqual([[parent2.id, child2a.id]]);
    expect(await orm.em.fork().count(ChildForPrimary, { name: 'child1b' })).toBe(1);

    em.remove(child2a);
    await em.flush();
    expect(await rows()).toEqual([]);
    expect(parent2.primaryChild).toBeNull();
    expect(await orm.em.fork().count(ParentForPrimary)).toBe(2);
  });

  it('loads and serialises the primary child with em.populate and the select-in strategy, and removes the row with the parent', async () => {
    const { em, parent1, child1a } = await family();
    parent1.primaryChild = child1a;
    await em.flush();

    const fork = orm.em.fork();
    const parent = await fork.findOneOrFail(ParentForPrimary, parent1.id);
    parent.name = 'renamed';
    log.clear();
    await fork.flush(); // a change elsewhere leaves the row alone
    expect(log.statements).toEqual(['begin', `update ${quote('parent_for_primary')} set ${quote('name')} = ? where ${quote('id')} = ?`, 'commit']);
    expect(wrap(parent).toObject().primaryChild).toBe(child1a.id);
    await fork.populate(parent, ['primaryChild']);
    expect(parent.primaryChild?.name).toBe('child1a');
    expect(wrap(parent).toObject().primaryChild).toEqual({ id: child1a.id, name: 'child1a', parent: parent1.id });
    const selectIn = await orm.em.fork().findOneOrFail(ParentForPrimary, parent1.id, { populate: ['primaryChild'], strategy: 'select-in' });
    expect(selectIn.primaryChild?.name).toBe('child1a');

    fork.remove(parent);
    await fork.flush();
    expect(await rows()).toEqual([]);
  });

  it('sets the primary child of a parent and child inserted by the same flush', async () => {
    const em = orm.em.fork();
    const parent = em.create(ParentForPrimary, { name: 'new' });
    const child = em.create(ChildForPrimary, { name: 'new child', parent });
    parent.primaryChild = child;
    await em.flush();
    expect(await rows()).toEqual([[parent.id, child.id]]);
  });

  it("replaces a loaded parent's primary child without reading the table again", async () => {
    const { em, parent1, child1a, child1b } = await family();
    parent1.primaryChild = child1a;
    await em.flush();

    const fork = orm.em.fork();
    const parent = await fork.findOneOrFail(ParentForPrimary, parent1.id);
    const child = await fork.findOneOrFail(ChildForPrimary, child1b.id);
    log.clear();
    parent.primaryChild = child;
    await fork.flush();
    expect(log.statements).toEqual([
      'begin',
      `update ${quote(table)} set ${quote('child_for_primary_id')} = ?, ${quote('updated_at')} = ? where ${quote('parent_for_primary_id')} = ?`,
      'commit',
    ]);
  });

  it('replaces the primary child of a parent known only by reference', async () => {
    const { em, parent1, child1a, child1b } = await family();
    parent1.primaryChild = child1a;
    await em.flush();

    const fork = orm.em.fork();
    const parent = fork.getReference(ParentForPrimary, parent1.id);
    expect(parent.primaryChild).toBeUndefined(); // not loaded
    fork.persist(parent);
    log.clear();
    await fork.flush(); // an unloaded parent leaves its row alone
    expect(log.statements).toEqual([]);
    expect(await rows()).toEqual([[parent1.id, child1a.id]]);

    parent.primaryChild = fork.getReference(ChildForPrimary, child1b.id);
    log.clear();
    await fork.flush();
    expect(log.statements).toEqual([
      `select ${quote('p0')}.* from ${quote(table)} as ${quote('p0')} where ${quote('p0')}.${quote('parent_for_primary_id')} = ? limit ?`,
      'begin',
      `update ${quote(table)} set ${quote('child_for_primary_id')} = ?, ${quote('updated_at')} = ? where ${quote('parent_for_primary_id')} = ?`,
      'commit',
    ]);
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);
  });

  it('lets the trigger refuse raw SQL that names another parent\'s child (test_parent_child_primary_sql_validator)', async () => {
    const { em, parent1, parent2, child1a, child1b, child2a } = await family();
    parent1.primaryChild = child1a;
    await em.flush();
    const sql = orm.em.fork();

    await sql.execute(`update "${table}" set "child_for_primary_id" = ${child1b.id} where "parent_for_primary_id" = ${parent1.id}`);
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);

    const update = sql.execute(`update "${table}" set "child_for_primary_id" = ${child2a.id} where "parent_for_primary_id" = ${parent1.id}`);
    await expect(update).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(update).rejects.toThrow('The target is not affiliated with this parent');

    const insert = sql.execute(`insert into "${table}" ("parent_for_primary_id", "child_for_primary_id") values (${parent2.id}, ${child1a.id})`);
    await expect(insert).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(insert).rejects.toThrow('The target is not affiliated with this parent');
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);
  });
});
