import { ForeignKeyConstraintViolationException, wrap } from '@mikro-orm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type PrimaryLink, PrimaryRelationshipError } from '../../src/primary/index.js';
import { allDrivers, closeOrm, type QueryLog, type TestOrm, withPrimary } from '../support/databases.js';
import { ChildForPrimary, LooseChild, LooseParent, looseEntities, ParentForPrimary, primaryEntities } from './entities.js';
import { onMariadb, quotedFor } from './sql.js';

const table = 'parent_for_primary_child_for_primary_primary';
const linkName = 'ParentForPrimary_primaryChild';

describe.each(allDrivers)('primary relationships on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;

  beforeEach(async () => {
    ({ orm, log } = await db.init({ entities: primaryEntities }, withPrimary));
  });

  afterEach(() => closeOrm(orm));

  /** An identifier quoted as MikroORM's queries on this database quote it. */
  const quote = (name: string) => (db.name === 'postgresql' ? `"${name}"` : `\`${name}\``);
  /** Raw SQL of this test, quoted for this database. */
  const sql = (text: string) => quotedFor(db, text);
  /** What an insert of MikroORM's ends with to learn the generated key (MariaDB has no `returning` for it). */
  const returningId = onMariadb(db) ? '' : ` returning ${quote('id')}`;

  /**
   * The statement a flush writes `count` primary children with: one upsert, so it neither depends on
   * what the process last saw of the table nor silently does nothing. (SQLite's multi-row form is knex's.)
   */
  function upsert(count: number): string {
    const columns = ['child_for_primary_id', 'created_at', 'parent_for_primary_id', 'updated_at'].map(quote);
    const [child, , parent, updated] = columns;
    if (onMariadb(db)) {
      return (
        `insert into ${quote(table)} (${columns.join(', ')}) values ${Array<string>(count).fill('(?, ?, ?, ?)').join(', ')} ` +
        `on duplicate key update ${child} = values(${child}), ${updated} = values(${updated})`
      );
    }
    const select = `select ${columns.map(column => `? as ${column}`).join(', ')}`;
    const values =
      db.name === 'sqlite' && count > 1
        ? `${Array<string>(count).fill(select).join(' union all ')} where true`
        : `values ${Array<string>(count).fill('(?, ?, ?, ?)').join(', ')}`;
    return (
      `insert into ${quote(table)} (${columns.join(', ')}) ${values} on conflict (${parent}) ` +
      `do update set ${child} = excluded.${child}, ${updated} = excluded.${updated} returning ${columns[1]}, ${updated}`
    );
  }

  /** The delete that clears a parent's primary child. */
  const deleteRow = () => `delete from ${quote(table)} where ${quote('parent_for_primary_id')} in (?)`;

  /** The primary table's rows as [parent id, child id] pairs, read with raw SQL. */
  async function rows(): Promise<[number, number][]> {
    const result = await orm.em.fork().execute<{ parent: number; child: number }[]>(
      sql(`select "parent_for_primary_id" as parent, "child_for_primary_id" as child from "${table}" order by 1`),
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
      upsert(2),
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
      upsert(1),
      'commit',
    ]);
    expect(await rows()).toEqual([
      [parent1.id, child1b.id],
      [parent2.id, child2a.id],
    ]);

    parent1.primaryChild = null;
    log.clear();
    await em.flush();
    expect(log.statements).toEqual(['begin', deleteRow(), 'commit']);
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
    log.clear();
    await em.flush();
    expect(log.statements).toEqual([
      'begin',
      `insert into ${quote('parent_for_primary')} (${quote('name')}) values (?)${returningId}`,
      // MikroORM's MySQL driver asks once per ORM how far apart generated keys are
      ...(onMariadb(db) ? ["show variables like 'auto_increment_increment'"] : []),
      `insert into ${quote('child_for_primary')} (${['name', 'parent_ref'].map(quote).join(', ')}) values (?, ?)${returningId}`,
      upsert(1),
      'commit',
    ]);
    expect(await rows()).toEqual([[parent.id, child.id]]);
  });

  it('sets the primary child of a new parent and child whose nullable relation MikroORM sets by a later update', async () => {
    await closeOrm(orm);
    ({ orm, log } = await db.init({ entities: looseEntities }, withPrimary));
    const em = orm.em.fork();
    const parent = em.create(LooseParent, {});
    const child = em.create(LooseChild, { name: 'new child', parent });
    parent.primaryChild = child;
    log.clear();
    await em.flush();
    expect(log.statements.slice(-3)).toEqual([
      `update ${quote('loose_child')} set ${quote('loose_parent_id')} = ? where ${quote('id')} = ?`,
      expect.stringMatching(new RegExp(`^insert into ${quote('loose_parent_loose_child_primary')} .* on ${onMariadb(db) ? 'duplicate key' : 'conflict'}`)),
      'commit',
    ]);
    const rows = await orm.em.fork().execute<{ parent: number; child: number }[]>(
      sql('select "loose_parent_id" as parent, "loose_child_id" as child from "loose_parent_loose_child_primary"'),
    );
    expect(rows.map(row => [Number(row.parent), Number(row.child)])).toEqual([[parent.id, child.id]]);
  });

  it('leaves the row alone when flushing parents MikroORM built with their constructor (forceEntityConstructor)', async () => {
    await closeOrm(orm);
    ({ orm, log } = await db.init({ entities: primaryEntities, forceEntityConstructor: true }, withPrimary));
    const { em, parent1, child1a } = await family();
    parent1.primaryChild = child1a;
    await em.flush();

    const fork = orm.em.fork();
    const [parent] = await fork.find(ParentForPrimary, {}, { populate: ['primaryChild'], orderBy: { id: 'asc' } });
    expect(parent.primaryChild?.name).toBe('child1a');
    log.clear();
    await fork.flush(); // loading is not assigning
    expect(log.statements).toEqual([]);
  });

  it('writes the row in the transaction the application began, before the flush returns', async () => {
    const { parent1, child1a } = await family();
    const rolledBack = new Error('roll back');
    const work = orm.em.fork().transactional(async em => {
      const parent = await em.findOneOrFail(ParentForPrimary, parent1.id);
      parent.primaryChild = await em.findOneOrFail(ChildForPrimary, child1a.id);
      log.clear();
      await em.flush();
      expect(log.statements).toEqual([upsert(1)]);
      const [{ n }] = await em.execute<{ n: unknown }[]>(sql(`select count(*) as n from "${table}"`));
      expect(Number(n)).toBe(1);
      throw rolledBack;
    });
    await expect(work).rejects.toBe(rolledBack);
    expect(await rows()).toEqual([]);
  });

  it("replaces a loaded parent's primary child with one upsert, keeping the row's created_at", async () => {
    const { em, parent1, child1a, child1b } = await family();
    parent1.primaryChild = child1a;
    await em.flush();

    const fork = orm.em.fork();
    const parent = await fork.findOneOrFail(ParentForPrimary, parent1.id);
    const child = await fork.findOneOrFail(ChildForPrimary, child1b.id);
    const [before] = await orm.em.fork().find<PrimaryLink>(linkName, { parent: parent1.id });
    log.clear();
    parent.primaryChild = child;
    await fork.flush();
    expect(log.statements).toEqual([
      'begin',
      upsert(1),
      'commit',
    ]);
    const [after] = await orm.em.fork().find<PrimaryLink>(linkName, { parent: parent1.id });
    expect(after.createdAt).toEqual(before.createdAt);
    expect(after.updatedAt.getTime()).toBeGreaterThanOrEqual(before.updatedAt.getTime());
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
      'begin',
      upsert(1),
      'commit',
    ]);
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);
  });

  it('writes an assignment whose row another fork removed since this fork last saw it', async () => {
    const { em, parent1, child1a, child1b } = await family();
    parent1.primaryChild = child1a;
    await em.flush();

    const other = orm.em.fork();
    (await other.findOneOrFail(ParentForPrimary, parent1.id)).primaryChild = null;
    await other.flush();
    parent1.primaryChild = child1b;
    await em.flush();
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);

    await orm.em.fork().nativeDelete(ChildForPrimary, child1b.id); // cascades to the row
    parent1.primaryChild = child1a;
    await em.flush();
    expect(await rows()).toEqual([[parent1.id, child1a.id]]);
    expect(parent1.primaryChild).toBe(child1a);
  });

  it('writes an assignment when another fork chose a primary child since this fork saw none', async () => {
    const { em, parent1, child1a, child1b } = await family();
    expect(parent1.primaryChild).toBeNull();

    const other = orm.em.fork();
    const parent = await other.findOneOrFail(ParentForPrimary, parent1.id);
    parent.primaryChild = await other.findOneOrFail(ChildForPrimary, child1a.id);
    await other.flush();
    parent1.primaryChild = child1b;
    await em.flush();
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);
  });

  it('writes a corrected assignment after the trigger refused the first one', async () => {
    const { parent1, child1a, child2a } = await family();
    // a loaded parent (its row known to be absent), then a parent known only by reference
    for (const loaded of [true, false]) {
      const fork = orm.em.fork();
      const parent = loaded ? await fork.findOneOrFail(ParentForPrimary, parent1.id) : fork.getReference(ParentForPrimary, parent1.id);
      parent.primaryChild = fork.getReference(ChildForPrimary, child2a.id); // not loaded: only the trigger can refuse it
      await expect(fork.flush()).rejects.toThrow('The target is not affiliated with this parent');
      expect(await rows()).toEqual([]);

      parent.primaryChild = fork.getReference(ChildForPrimary, child1a.id);
      await fork.flush();
      expect(await rows()).toEqual([[parent1.id, child1a.id]]);
      await orm.em.fork().nativeDelete(table, {});
    }
  });

  it('leaves a child loaded without its parent relation to the trigger', async () => {
    const { parent1, child1a, child2a } = await family();
    const fork = orm.em.fork();
    const parent = await fork.findOneOrFail(ParentForPrimary, parent1.id);
    const [mine, theirs] = await fork.find(ChildForPrimary, { id: [child1a.id, child2a.id] }, { fields: ['name'], orderBy: { id: 'asc' } });
    parent.primaryChild = mine as ChildForPrimary; // its type says it has no parent
    await fork.flush();
    expect(await rows()).toEqual([[parent1.id, child1a.id]]);

    parent.primaryChild = theirs as ChildForPrimary;
    const flush = fork.flush();
    await expect(flush).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(flush).rejects.toThrow('The target is not affiliated with this parent');
    expect(await rows()).toEqual([[parent1.id, child1a.id]]);
  });

  it('lets the trigger refuse raw SQL that names another parent\'s child (test_parent_child_primary_sql_validator)', async () => {
    const { em, parent1, parent2, child1a, child1b, child2a } = await family();
    parent1.primaryChild = child1a;
    await em.flush();
    const raw = orm.em.fork();

    await raw.execute(sql(`update "${table}" set "child_for_primary_id" = ${child1b.id} where "parent_for_primary_id" = ${parent1.id}`));
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);

    const update = raw.execute(sql(`update "${table}" set "child_for_primary_id" = ${child2a.id} where "parent_for_primary_id" = ${parent1.id}`));
    await expect(update).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(update).rejects.toThrow('The target is not affiliated with this parent');

    const insert = raw.execute(sql(`insert into "${table}" ("parent_for_primary_id", "child_for_primary_id") values (${parent2.id}, ${child1a.id})`));
    await expect(insert).rejects.toThrow(ForeignKeyConstraintViolationException);
    await expect(insert).rejects.toThrow('The target is not affiliated with this parent');
    if (onMariadb(db)) {
      // IGNORE does not downgrade the trigger's SIGNAL to a warning, and REPLACE's insert goes through it
      for (const statement of [
        `insert ignore into "${table}" ("parent_for_primary_id", "child_for_primary_id") values (${parent2.id}, ${child1a.id})`,
        `update ignore "${table}" set "child_for_primary_id" = ${child2a.id} where "parent_for_primary_id" = ${parent1.id}`,
        `replace into "${table}" ("parent_for_primary_id", "child_for_primary_id") values (${parent1.id}, ${child2a.id})`,
      ]) {
        await expect(raw.execute(sql(statement))).rejects.toThrow(ForeignKeyConstraintViolationException);
      }
    }
    expect(await rows()).toEqual([[parent1.id, child1b.id]]);
  });
});
