/**
 * The fast path's statement templates (src/inserts/statements.ts): a shape the query builder rendered once is
 * sent from its template, as the same SQL; values of custom types, operators, enabled filters, templates that
 * differ from the query builder's SQL and shapes past the cap keep going through the query builder.
 */
import { Entity, ManyToOne, type Opt, PrimaryKey, Property, Unique, UnderscoreNamingStrategy, wrap } from '@mikro-orm/core';
import { QueryBuilder } from '@mikro-orm/knex';
import { beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { insertUnlessFoundStatement, selectStatement } from '../../src/inserts/statements.js';
import { MikroOrmInternalError } from '../../src/index.js';
import { closeOrm, postgresql, databases, type QueryLog, type TestOrm } from '../support/databases.js';
import { Account, Tag, raceEntities } from '../support/entities.js';
import { countingRenders, renderDifferently } from '../support/queryBuilderRenders.js';

/** Columns of every kind a template takes: string, boolean, date, integer, null, a foreign key; and JSON, which it does not. */
@Entity()
class Meetup {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  slug!: string;

  @Property({ type: 'boolean' })
  published!: boolean;

  @Property({ type: 'datetime' })
  startsAt!: Date;

  @Property({ type: 'integer' })
  seats!: number;

  @Property({ type: 'string', nullable: true })
  note?: string | null;

  @ManyToOne(() => Account, { nullable: true })
  host?: Account | null;

  @Property({ type: 'json', nullable: true })
  agenda?: Opt<string[]> | null;
}

/** Seven optional columns: 127 shapes of filters. */
@Entity()
class Wide {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string', nullable: true }) c1?: string;
  @Property({ type: 'string', nullable: true }) c2?: string;
  @Property({ type: 'string', nullable: true }) c3?: string;
  @Property({ type: 'string', nullable: true }) c4?: string;
  @Property({ type: 'string', nullable: true }) c5?: string;
  @Property({ type: 'string', nullable: true }) c6?: string;
  @Property({ type: 'string', nullable: true }) c7?: string;
}

const startsAt = new Date('2026-12-02T10:00:00.000Z');

describe.each(databases)('statement templates on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;
  let renders: MockInstance;

  // an ORM per test: templates are kept per entity metadata, so each test starts with none
  beforeEach(async () => {
    ({ orm, log } = await db.init({ entities: [...raceEntities, Meetup, Wide] }));
    // MariaDB's fast path asks the server's version at its first insert (once per ORM): not a statement checked here
    await orm.em.fork().failsafeAdd(Object.assign(new Account(), { name: 'server version' }));
    await orm.schema.clearDatabase();
    renders = vi.spyOn(QueryBuilder.prototype, 'getKnexQuery');
    log.clear();
    return async () => {
      renders.mockRestore();
      await closeOrm(orm);
    };
  });

  /** The rows of `meetup`, as the database holds them. */
  async function storedMeetups() {
    const rows = await orm.em.fork().find(Meetup, {}, { orderBy: { id: 'asc' } });
    return rows.map(m => ({ slug: m.slug, published: m.published, startsAt: m.startsAt.toISOString(), seats: m.seats, note: m.note, host: m.host?.id ?? null }));
  }

  /**
   * What `fn` resolves to, and how many inserts and selects the query builder rendered meanwhile. Updates are
   * left out: failsafeAdd flushes what else is pending first, and MikroORM on SQLite updates a `datetime` it
   * loaded (here, the duplicate's row) with the same value at the next flush.
   */
  const counted = <T>(fn: () => Promise<T>) => countingRenders(renders)(fn);

  it('a repeated shape is sent from its template: the same SQL, no query builder, the same rows and identity map', async () => {
    const em = orm.em.fork();
    const host = em.create(Account, { name: 'acme' });
    await em.flush();
    log.clear();
    const add = (slug: string, values: { published: boolean; seats: number; note: string | null }) =>
      counted(() => em.failsafeAdd(em.create(Meetup, { slug, startsAt, host, ...values }, { persist: false }), { slug }));

    const [first, firstRenders] = await add('first', { published: true, seats: 3, note: null });
    expect(firstRenders).toBe(2); // the insert and the select
    const firstSQL = [...log.queries];
    log.clear();

    const [second, secondRenders] = await add('second', { published: false, seats: 4, note: null });
    expect(secondRenders).toBe(0);
    expect(log.queries).toEqual(firstSQL);
    expect(await storedMeetups()).toEqual([
      { slug: 'first', published: true, startsAt: startsAt.toISOString(), seats: 3, note: null, host: host.id },
      { slug: 'second', published: false, startsAt: startsAt.toISOString(), seats: 4, note: null, host: host.id },
    ]);
    for (const meetup of [first, second]) {
      expect(em.getUnitOfWork().getById(Meetup.name, meetup.id)).toBe(meetup);
      expect(wrap(meetup, true).__originalEntityData).toMatchObject({ slug: meetup.slug, seats: meetup.seats });
    }

    // a duplicate: the managed row comes back, unchanged, and the rejected instance is not managed
    const rejected = em.create(Meetup, { slug: 'first', startsAt, published: false, seats: 9 }, { persist: false });
    const [duplicate, duplicateRenders] = await counted(() => em.failsafeAdd(rejected, { slug: 'first' }));
    expect(duplicate).toBe(first);
    expect(duplicateRenders).toBe(1); // another shape of insert (no host, no note); the same select
    expect(first.seats).toBe(3);
    expect(wrap(rejected, true).isManaged()).toBe(false);

    // a value of another kind is another shape: a string where the first calls had null
    expect((await add('third', { published: true, seats: 5, note: 'bring snacks' }))[1]).toBe(1);
    expect((await add('fourth', { published: true, seats: 6, note: 'no snacks' }))[1]).toBe(0);
    expect((await storedMeetups()).map(m => [m.slug, m.seats, m.note])).toEqual([
      ['first', 3, null],
      ['second', 4, null],
      ['third', 5, 'bring snacks'],
      ['fourth', 6, 'no snacks'],
    ]);
    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]); // every entity's snapshot is what the database holds
  });

  it('filters by a foreign key and several columns take a template too', async () => {
    const em = orm.em.fork();
    const host = em.create(Account, { name: 'acme' });
    await em.flush();
    const add = (slug: string) =>
      counted(() => em.failsafeAdd(em.create(Meetup, { slug, startsAt, host, published: true, seats: 1 }, { persist: false }), { slug, host: host.id }));
    const [first, firstRenders] = await add('a');
    expect(firstRenders).toBe(2);
    expect(await add('a')).toEqual([first, 0]);
    expect((await add('b'))[1]).toBe(0);
    expect(log.queries.join('\n')).toMatch(/where .t0.\..slug. = \? and .t0.\..host_id. = \? limit \?/);
    expect((await storedMeetups()).map(m => [m.slug, m.host])).toEqual([
      ['a', host.id],
      ['b', host.id],
    ]);
  });

  it('values of a custom type, and filters with operators, go through the query builder every time', async () => {
    const em = orm.em.fork();
    const add = (slug: string) =>
      counted(() => em.failsafeAdd(em.create(Meetup, { slug, startsAt, published: true, seats: 1, agenda: ['talks'] }, { persist: false }), { slug: { $eq: slug } }));
    expect((await add('a'))[1]).toBe(2);
    expect((await add('b'))[1]).toBe(2);
    const stored = await orm.em.fork().find(Meetup, {}, { orderBy: { id: 'asc' } });
    expect(stored.map(m => [m.slug, m.agenda])).toEqual([
      ['a', ['talks']],
      ['b', ['talks']],
    ]);
  });

  it('a filter enabled after the template was kept applies to the select', async () => {
    const em = orm.em.fork();
    const add = (color: string) => counted(() => em.failsafeAdd(em.create(Tag, { name: 'news', color }, { persist: false }), { name: 'news' }));
    const [red] = await add('red');
    em.addFilter('red', { color: 'red' }, Tag);
    log.clear();
    // the insert from its template; the select rendered, with the filter's condition
    expect(await add('blue')).toEqual([red, 1]);
    expect(log.queries.join('\n')).toMatch(/where .t0.\..name. = \? and .t0.\..color. = \? limit \?/);
  });

  it('a template that differs from what the query builder renders is never used', async () => {
    renderDifferently(renders);
    const em = orm.em.fork();
    const add = (name: string) => counted(() => em.failsafeAdd(em.create(Tag, { name }, { persist: false }), { name }));
    const [a, aRenders] = await add('a');
    const [b, bRenders] = await add('b');
    expect([aRenders, bRenders]).toEqual([2, 2]);
    expect(await add('a')).toEqual([a, 2]);
    expect(log.queries.filter(q => q.includes('insert')).every(q => q.includes('/* rendered differently */'))).toBe(true);
    expect((await orm.em.fork().find(Tag, {}, { orderBy: { id: 'asc' } })).map(t => t.name)).toEqual([a.name, b.name]);
  });

  if (db.name === 'postgresql') {
    it("getOrCreate's one statement is built from the same templates: a miss and a hit of a repeated shape render nothing", async () => {
      const em = orm.em.fork();
      const get = (slug: string) => counted(() => em.getOrCreate(Meetup, { slug }, { startsAt, published: true, seats: 1 }));
      const [first, firstRenders] = await get('first');
      expect([first.created, firstRenders]).toEqual([true, 2]); // the insert and the select
      const [second, secondRenders] = await get('second');
      expect([second.created, secondRenders]).toEqual([true, 0]);
      const [again, againRenders] = await get('first');
      expect([again, againRenders]).toEqual([{ created: false, entity: first.entity }, 0]);
      expect(new Set(log.queries).size).toBe(1);
      expect(log.queries[0]).toMatch(/^with "found" as \(select "t0"\.\* from "meetup" as "t0" where "t0"\."slug" = \? limit \?\), "inserted" as \(insert into "meetup" /);
      expect((await storedMeetups()).map(m => m.slug)).toEqual(['first', 'second']);
    });

    it("updateOrCreate's one statement takes its update from a template too: a repeated shape renders nothing", async () => {
      const em = orm.em.fork();
      const put = async (slug: string, seats: number) => {
        renders.mockClear();
        const result = await em.updateOrCreate(Meetup, { slug }, { seats }, { startsAt, published: true });
        return [result, renders.mock.calls.length] as const;
      };
      const [first, firstRenders] = await put('first', 1);
      expect([first.created, firstRenders]).toEqual([true, 2]); // the insert and the update
      const [second, secondRenders] = await put('second', 2);
      expect([second.created, secondRenders]).toEqual([true, 0]);
      const [again, againRenders] = await put('first', 3);
      expect([again, againRenders]).toEqual([{ created: false, entity: first.entity }, 0]);
      expect(first.entity.seats).toBe(3);
      expect(new Set(log.queries).size).toBe(1);
      expect(log.queries[0]).toMatch(/^with "found" as \(update "meetup" set "seats" = \? where "slug" = \? returning \*\), "inserted" as \(insert into "meetup" /);
      expect((await storedMeetups()).map(m => [m.slug, m.seats])).toEqual([
        ['first', 3],
        ['second', 2],
      ]);
    });

    it('the one statement of an empty payload inserts the default values', async () => {
      const meta = orm.getMetadata().get<Wide>(Wide.name);
      const select = await selectStatement(orm.em.fork(), meta, { c1: null }, undefined);
      const insert = { sql: 'insert into "wide" default values on conflict do nothing returning *', params: [] };
      const statement = insertUnlessFoundStatement(meta, insert, select);
      expect(statement).toEqual({
        sql:
          'with "found" as (select "t0".* from "wide" as "t0" where "t0"."c1" is null limit ?), "inserted" as (insert into "wide" select ' +
          'where not exists (select 1 from "found") on conflict do nothing returning *) select *, true as "created" from "inserted" union all select *, false from "found"',
        params: [2],
      });
      const run = () => orm.em.fork().execute(statement.sql, [...statement.params]);
      const [inserted] = await run();
      expect(inserted).toMatchObject({ c1: null, created: true });
      expect(await run()).toEqual([{ ...inserted, created: false }]);
    });

    it('an insert of another form than the query builder renders is refused', () => {
      const meta = orm.getMetadata().get<Tag>(Tag.name);
      const insert = { sql: 'insert into "tag" ("name") values (?) returning *', params: ['news'] };
      const select = { sql: 'select "t0".* from "tag" as "t0" where "t0"."name" = ? limit ?', params: ['news', 2] };
      expect(() => insertUnlessFoundStatement(meta, insert, select)).toThrow(MikroOrmInternalError);
    });
  }

  it('keeps 64 shapes per entity; others are rendered every time', async () => {
    const em = orm.em.fork();
    const meta = em.getMetadata().get<Wide>(Wide.name);
    const columns = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7'] as const;
    const shapes = Array.from({ length: 65 }, (_, i) => Object.fromEntries(columns.filter((_, bit) => ((i + 1) >> bit) & 1).map(c => [c, 'x'])));
    const select = (filters: Record<string, string>) => counted(() => selectStatement(em, meta, filters, undefined));
    for (const filters of shapes) {
      expect((await select(filters))[1]).toBe(1);
    }
    expect((await select(shapes[0]))[1]).toBe(0); // kept
    const [past, pastRenders] = await select(shapes[64]); // past the cap
    expect(pastRenders).toBe(1);
    expect(past.params).toEqual(['x', 'x', 2]); // c1 and c7
  });
});

describe("getOrCreate's one statement, kept per entity metadata, on postgresql", () => {
  /** Table names prefixed with `prefix`: another naming strategy, so that another ORM of the same classes names other tables. */
  const prefixed = (prefix: string) =>
    class extends UnderscoreNamingStrategy {
      override classToTableName(entityName: string): string {
        return `${prefix}${super.classToTableName(entityName)}`;
      }
    };

  it('each ORM builds it from its own names, and a schema change reaches it', async () => {
    const orms = [await postgresql.init({ entities: raceEntities }), await postgresql.init({ entities: raceEntities, namingStrategy: prefixed('x_') })];
    try {
      const [plain, renamed] = orms.map(({ orm }) => orm);
      await plain.em.execute('create schema tenant_a; create table tenant_a.tag (like public.tag including all)');
      // [schema, created] per call: a miss then a hit, in each schema, and the default schema again after the other
      const calls = [[undefined, true], [undefined, false], ['tenant_a', true], ['tenant_a', false], [undefined, false]] as const;
      for (const { orm, log } of orms) {
        for (const [schema, created] of calls.filter(([schema]) => !schema || orm === plain)) {
          log.clear();
          const result = await orm.em.fork({ schema }).getOrCreate(Tag, { name: 'news' });
          expect(result.created).toBe(created);
          expect(log.queries).toHaveLength(1);
          const table = `${schema ? `"${schema}".` : ''}"${orm === renamed ? 'x_tag' : 'tag'}"`;
          expect(log.queries[0]).toContain(`from ${table} as "t0"`);
          expect(log.queries[0]).toContain(`"inserted" as (insert into ${table} ("name") select ? where not exists`);
        }
      }
      // the identity map and the tables agree: each ORM, each schema, one row
      expect(await plain.em.fork().execute('select name from public.tag')).toEqual([{ name: 'news' }]);
      expect(await plain.em.fork().execute('select name from tenant_a.tag')).toEqual([{ name: 'news' }]);
      expect(await renamed.em.fork().execute('select name from public.x_tag')).toEqual([{ name: 'news' }]);
      const em = renamed.em.fork();
      const { entity } = await em.getOrCreate(Tag, { name: 'news' });
      expect(em.getUnitOfWork().getById(Tag.name, entity.id)).toBe(entity);
    } finally {
      for (const { orm } of orms) {
        await closeOrm(orm);
      }
    }
  });
});

describe('statement templates per schema on postgresql', () => {
  it('a fork with a schema of its own, or an entity with one, gets a template of its own', async () => {
    const { orm, log } = await postgresql.init({ entities: raceEntities });
    try {
      for (const schema of ['tenant_a', 'tenant_b']) {
        await orm.em.execute(`create schema ${schema}; create table ${schema}.tag (like public.tag including all)`);
      }
      // an instance made with `new` has no schema of its own: the query builder takes the fork's
      const add = (schema: string | undefined, name: string) => orm.em.fork({ schema }).failsafeAdd(Object.assign(new Tag(), { name }), { name });
      for (const schema of [undefined, 'tenant_a', 'tenant_b']) {
        for (const name of ['news', 'sports', 'news']) {
          await add(schema, name);
        }
      }
      // an entity made by a fork with another schema keeps its own: the query builder prefers it to the fork's
      const elsewhere = orm.em.fork({ schema: 'tenant_a' }).create(Tag, { name: 'weather' }, { persist: false });
      await orm.em.fork({ schema: 'tenant_b' }).failsafeAdd(elsewhere, { name: 'weather' });
      expect(log.queries.filter(q => q.startsWith('insert')).map(q => q.match(/insert into ("\w+"\.)?"tag"/)![0])).toEqual([
        ...Array(3).fill('insert into "tag"'),
        ...Array(3).fill('insert into "tenant_a"."tag"'),
        ...Array(3).fill('insert into "tenant_b"."tag"'),
        'insert into "tenant_a"."tag"',
      ]);
      // getOrCreate's one statement finds and inserts in the fork's schema
      log.clear();
      expect((await orm.em.fork({ schema: 'tenant_b' }).getOrCreate(Tag, { name: 'weather' })).created).toBe(true);
      expect((await orm.em.fork({ schema: 'tenant_b' }).getOrCreate(Tag, { name: 'news' })).created).toBe(false);
      expect(log.queries.every(q => /^with "found" as \(select "t0"\.\* from "tenant_b"\."tag" as "t0" .*"inserted" as \(insert into "tenant_b"\."tag" /.test(q))).toBe(true);
      for (const [schema, names] of [
        ['public', ['news', 'sports']],
        ['tenant_a', ['news', 'sports', 'weather']],
        ['tenant_b', ['news', 'sports', 'weather']],
      ] as const) {
        const rows = await orm.em.fork().execute(`select name from "${schema}"."tag" order by id`);
        expect(rows.map(row => row.name)).toEqual(names);
      }
    } finally {
      await closeOrm(orm);
    }
  });
});
