import { EntityCaseNamingStrategy, ForeignKeyConstraintViolationException, UnderscoreNamingStrategy } from '@mikro-orm/core';
import { afterEach, describe, expect, it } from 'vitest';
import { closeOrm, databases, type TestOrm, withPrimary } from '../support/databases.js';
import { ChildForPrimary, ParentForPrimary, primaryEntities } from './entities.js';
import { quotedFor } from './sql.js';

/**
 * Primary relationships live on each ORM's metadata, not in the process: two ORMs of the same entities whose
 * naming strategies name their tables differently each read and write their own primary table.
 */
describe.each(databases)('two ORMs in one process with different naming strategies, on $name', db => {
  const orms: TestOrm[] = [];
  afterEach(async () => {
    await Promise.all(orms.splice(0).map(orm => closeOrm(orm)));
  });

  it('each names, reads, writes and guards its own primary table', async () => {
    const { orm: underscore } = await db.init({ entities: primaryEntities, namingStrategy: UnderscoreNamingStrategy }, withPrimary);
    orms.push(underscore);
    const { orm: entityCase } = await db.init({ entities: primaryEntities, namingStrategy: EntityCaseNamingStrategy }, withPrimary);
    orms.push(entityCase);
    const tables = {
      underscore: ['parent_for_primary_child_for_primary_primary', 'parent_for_primary_id', 'child_for_primary_id'],
      entityCase: ['ParentForPrimary_ChildForPrimary_primary', 'ParentForPrimary_id', 'ChildForPrimary_id'],
    };
    expect(underscore.getMetadata().get('ParentForPrimary_primaryChild').tableName).toBe(tables.underscore[0]);
    expect(entityCase.getMetadata().get('ParentForPrimary_primaryChild').tableName).toBe(tables.entityCase[0]);

    // the ORM initialised first still writes and reads its own table after the second one's discovery
    for (const [orm, [table, parentColumn, childColumn]] of [
      [underscore, tables.underscore],
      [entityCase, tables.entityCase],
    ] as const) {
      const em = orm.em.fork();
      const parent = em.create(ParentForPrimary, { name: 'parent' });
      const child = em.create(ChildForPrimary, { name: 'child', parent });
      const other = em.create(ParentForPrimary, { name: 'other' });
      const othersChild = em.create(ChildForPrimary, { name: 'other child', parent: other });
      parent.primaryChild = child;
      await em.flush();
      const rows = await orm.em.fork().execute(quotedFor(db, `select "${parentColumn}" as parent, "${childColumn}" as child from "${table}"`));
      expect(rows).toEqual([{ parent: parent.id, child: child.id }]);
      expect(em.getUnitOfWork().getIdentityMap().values()).toHaveLength(4);

      const reloaded = await orm.em.fork().findOneOrFail(ParentForPrimary, parent.id, { populate: ['primaryChild'] });
      expect(reloaded.primaryChild?.id).toBe(child.id);

      // the database's trigger, created under this ORM's names, refuses another parent's child
      await expect(
        orm.em.fork().execute(quotedFor(db, `update "${table}" set "${childColumn}" = ${othersChild.id} where "${parentColumn}" = ${parent.id}`)),
      ).rejects.toThrow(ForeignKeyConstraintViolationException);
      expect(await orm.em.fork().execute(quotedFor(db, `select "${childColumn}" as child from "${table}"`))).toEqual([{ child: child.id }]);
    }
  });
});
