import { ForeignKeyConstraintViolationException } from '@mikro-orm/core';
import { afterEach, describe, expect, it } from 'vitest';
import { closeOrm, databases, type TestOrm } from '../support/databases.js';
import { primaryEntities } from './entities.js';
import { OddChild, OddParent, oddEntities } from './weirdEntities.js';

const table = 'parent_for_primary_child_for_primary_primary';

describe.each(databases)('primary tables in the schema on $name', db => {
  let orm: TestOrm | undefined;

  afterEach(() => closeOrm(orm));

  /** Names of the triggers and trigger functions the database holds. */
  async function triggerObjects(): Promise<string[]> {
    const sql =
      db.name === 'sqlite'
        ? `select name from sqlite_master where type = 'trigger'`
        : `select tgname as name from pg_trigger where not tgisinternal union all ` +
          `select proname from pg_proc where prorettype = 'trigger'::regtype and pronamespace = 'public'::regnamespace`;
    const rows = await orm!.em.fork().execute<{ name: string }[]>(sql);
    return rows.map(row => row.name).sort();
  }

  const expected =
    db.name === 'sqlite'
      ? [`${table}_trigger_insert`, `${table}_trigger_update`]
      : [`${table}_trigger`, `${table}_validate`];

  it('createSchema() creates the trigger, dropSchema() removes it, refreshDatabase() and updateSchema() recreate it', async () => {
    ({ orm } = await db.init({ entities: primaryEntities }));
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
    ({ orm } = await db.init({ entities: oddEntities }));
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
});

describe('SQLite connections', () => {
  it('enforce foreign keys', async () => {
    const { orm } = await databases[0].init({ entities: primaryEntities });
    try {
      expect(await orm.em.fork().execute('pragma foreign_keys')).toEqual([{ foreign_keys: 1 }]);
    } finally {
      await closeOrm(orm);
    }
  });
});
