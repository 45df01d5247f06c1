/**
 * The batches' statement templates (src/inserts/batches/batchStatements.ts): a select of keys or a multi-row
 * insert of a shape the query builder rendered once is written from its template, as the same SQL, for any
 * number of rows; values of custom types, enabled filters, single rows and templates that differ from the query
 * builder's SQL keep going through the query builder. On PostgreSQL, keys and rows whose values all have an
 * exact JSON form go as one JSON document instead, rendered by nobody.
 */
import { Entity, type Opt, PrimaryKey, Property, Unique, wrap } from '@mikro-orm/core';
import { QueryBuilder } from '@mikro-orm/knex';
import { beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { closeOrm, databases, postgresql, type QueryLog, type TestOrm } from '../support/databases.js';
import { Account, Tag, raceEntities } from '../support/entities.js';
import { countingRenders, renderDifferently } from '../support/queryBuilderRenders.js';

/** A string key, columns of other kinds, and a JSON column, which no template takes. */
@Entity()
class Talk {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  slug!: string;

  @Property({ type: 'integer', default: 0 })
  minutes: Opt<number> = 0;

  @Property({ type: 'datetime' })
  startsAt!: Date;

  @Property({ type: 'json', nullable: true })
  tags?: Opt<string[]> | null;
}

const startsAt = new Date('2026-12-02T10:00:00.000Z');

describe.each(databases)('batch statement templates on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;
  let renders: MockInstance;

  // an ORM per test: templates are kept per entity metadata, so each test starts with none
  beforeEach(async () => {
    ({ orm, log } = await db.init({ entities: [...raceEntities, Talk] }));
    // MariaDB asks the server's version once per ORM: not a statement checked here
    await orm.em.fork().getOrCreateMany(Account, [{ name: 'server version' }]);
    await orm.schema.clearDatabase();
    renders = vi.spyOn(QueryBuilder.prototype, 'getKnexQuery');
    log.clear();
    return async () => {
      renders.mockRestore();
      await closeOrm(orm);
    };
  });

  const counted = <T>(fn: () => Promise<T>) => countingRenders(renders)(fn);

  const talks = (prefix: string, count: number) =>
    Array.from({ length: count }, (_, i) => ({ slug: `${prefix}${i}`, minutes: i, startsAt }));

  it('a repeated shape is written from its template, for any number of rows: the same SQL, the same rows and identity map', async () => {
    const em = orm.em.fork();
    const [first, firstRenders] = await counted(() => em.getOrCreateMany(Talk, talks('a', 3)));
    // the select and the insert; on PostgreSQL the select's string keys go as JSON, the insert's Date does not
    expect(firstRenders).toBe(db.name === 'postgresql' ? 1 : 2);
    const firstSQL = log.queries.filter(q => !/^(begin|commit|set )/.test(q));
    log.clear();
    const [again, againRenders] = await counted(() => em.getOrCreateMany(Talk, talks('b', 3)));
    expect(againRenders).toBe(0);
    expect(log.queries.filter(q => !/^(begin|commit|set )/.test(q))).toEqual(firstSQL.map(q => q.replace(/\ba(\d)\b/g, 'b$1')));
    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]); // every inserted entity's snapshot is what the database holds
    const [more, moreRenders] = await counted(() => em.getOrCreateMany(Talk, [...talks('a', 3), ...talks('c', 5)]));
    expect(moreRenders).toBe(0);
    expect(more.map(result => result.created)).toEqual([false, false, false, true, true, true, true, true]);
    more.slice(0, 3).forEach((result, i) => expect(result.entity).toBe(first[i].entity));

    const stored = await orm.em.fork().find(Talk, {}, { orderBy: { slug: 'asc' } });
    expect(stored.map(talk => [talk.slug, talk.minutes, talk.startsAt.toISOString()])).toEqual(
      ['a0', 'a1', 'a2', 'b0', 'b1', 'b2', 'c0', 'c1', 'c2', 'c3', 'c4'].map(slug => [slug, Number(slug[1]), startsAt.toISOString()]),
    );
    for (const { entity } of [...first, ...again, ...more]) {
      expect(em.getUnitOfWork().getById(Talk.name, entity.id)).toBe(entity);
      expect(wrap(entity, true).__originalEntityData).toMatchObject({ slug: entity.slug, minutes: entity.minutes });
    }
  });

  it('values of a custom type, filters and single rows go through the query builder every time', async () => {
    const em = orm.em.fork();
    const withTags = (prefix: string) => talks(prefix, 2).map(talk => ({ ...talk, tags: ['x'] }));
    const select = db.name === 'postgresql' ? 0 : 1; // a select of string keys: JSON on PostgreSQL, else its template
    expect((await counted(() => em.getOrCreateMany(Talk, withTags('a'))))[1]).toBe(1 + select);
    expect((await counted(() => em.getOrCreateMany(Talk, withTags('b'))))[1]).toBe(1); // the insert; the select's key is a string
    expect((await counted(() => em.getOrCreateMany(Talk, talks('c', 1))))[1]).toBe(2);
    expect((await counted(() => em.getOrCreateMany(Talk, talks('d', 1))))[1]).toBe(2);
    em.addFilter('short', { minutes: { $lt: 60 } }, Talk);
    expect((await counted(() => em.getOrCreateMany(Talk, talks('a', 2))))[1]).toBe(1); // the select, with the filter
    expect(log.queries.at(-1)).toMatch(/where .t0.\..slug. in \(.*\) and .t0.\..minutes. < /);
    const stored = await orm.em.fork().find(Talk, {}, { orderBy: { slug: 'asc' } });
    expect(stored.map(talk => [talk.slug, talk.tags ?? null])).toEqual([
      ['a0', ['x']],
      ['a1', ['x']],
      ['b0', ['x']],
      ['b1', ['x']],
      ['c0', null],
      ['d0', null],
    ]);
  });

  it('a template that differs from what the query builder renders is never used', async () => {
    renderDifferently(renders);
    const em = orm.em.fork();
    if (db.name === 'postgresql') {
      // string keys go as JSON there, rendered by nobody: a Date keeps the insert on the template path
      expect((await counted(() => em.getOrCreateMany(Talk, talks('a', 2))))[1]).toBe(1);
      expect((await counted(() => em.getOrCreateMany(Talk, talks('b', 2))))[1]).toBe(1);
      expect(log.queries.filter(q => q.startsWith('insert')).every(q => q.includes('/* rendered differently */'))).toBe(true);
      expect((await orm.em.fork().find(Talk, {}, { orderBy: { slug: 'asc' } })).map(talk => talk.slug)).toEqual(['a0', 'a1', 'b0', 'b1']);
      return;
    }
    const names = (prefix: string) => ['x', 'y'].map(name => ({ name: `${prefix}${name}` }));
    expect((await counted(() => em.getOrCreateMany(Tag, names('a'))))[1]).toBe(2);
    expect((await counted(() => em.getOrCreateMany(Tag, names('b'))))[1]).toBe(2);
    expect(log.queries.filter(q => /^(select|insert)/.test(q)).every(q => q.includes('/* rendered differently */'))).toBe(true);
    expect((await orm.em.fork().find(Tag, {}, { orderBy: { name: 'asc' } })).map(tag => tag.name)).toEqual(['ax', 'ay', 'bx', 'by']);
  });

  if (db.name === 'postgresql') it('keys and rows of strings, integers, booleans and nulls go as one JSON document; other values one by one', async () => {
    const em = orm.em.fork();
    await em.getOrCreateMany(Tag, [{ name: 'old', color: 'grey' }]);
    log.clear();
    const [results, rendered] = await counted(() =>
      em.getOrCreateMany(Tag, [
        { name: 'c', color: 'it\'s "red"' },
        { name: 'old', color: 'ignored' },
        { name: 'a', color: null as never },
        // a placeholder-like `?` and a backslash in the document (its literal is then an E'' string)
        { name: 'b?', color: 'C:\\dir' },
      ]),
    );
    expect(rendered).toBe(0);
    expect(log.queries).toEqual([
      'select "t0".* from json_populate_recordset(null::"tag", ?) as "keys" cross join lateral (select * from "tag" as "t0" where "t0"."name" = "keys"."name" offset 0) as "t0"',
      'begin',
      'insert into "tag" ("color", "name") select "color", "name" from json_populate_recordset(null::"tag", ?) on conflict ("name") do nothing returning *',
      'commit',
    ]);
    expect(results.map(({ entity, created }) => [entity.name, entity.color ?? null, created])).toEqual([
      ['c', 'it\'s "red"', true],
      ['old', 'grey', false],
      ['a', null, true],
      ['b?', 'C:\\dir', true],
    ]);
    for (const { entity } of results) {
      expect(em.getUnitOfWork().getById(Tag.name, entity.id)).toBe(entity);
    }
    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]); // the snapshots are what the database holds
    const stored = await orm.em.fork().find(Tag, {}, { orderBy: { id: 'asc' } });
    // inserted in key order: 'a' before 'b?' before 'c'
    expect(stored.map(tag => [tag.name, tag.color ?? null])).toEqual([
      ['old', 'grey'],
      ['a', null],
      ['b?', 'C:\\dir'],
      ['c', 'it\'s "red"'],
    ]);
    // a Date has no exact JSON form: the insert writes its values one by one, from its template
    log.clear();
    await em.getOrCreateMany(Talk, talks('d', 2));
    expect(log.queries).toEqual([
      'select "t0".* from json_populate_recordset(null::"talk", ?) as "keys" cross join lateral (select * from "talk" as "t0" where "t0"."slug" = "keys"."slug" offset 0) as "t0"',
      'begin',
      'insert into "talk" ("minutes", "slug", "starts_at") values (?, ?, ?), (?, ?, ?) on conflict ("slug") do nothing returning *',
      'commit',
    ]);
    expect(await orm.em.fork().count(Talk)).toBe(2);
  });
});

describe('batch statement templates per schema on postgresql', () => {
  it('a fork with a schema of its own gets a template of its own', async () => {
    const { orm, log } = await postgresql.init({ entities: raceEntities });
    try {
      await orm.em.execute('create schema tenant_a; create table tenant_a.tag (like public.tag including all)');
      for (const schema of [undefined, 'tenant_a', undefined, 'tenant_a']) {
        await orm.em.fork({ schema }).getOrCreateMany(Tag, [{ name: 'news' }, { name: `sports ${schema ?? 'public'}` }]);
      }
      expect(log.queries.filter(q => q.startsWith('insert')).map(q => q.match(/insert into ("\w+"\.)?"tag"/)![0])).toEqual([
        'insert into "tag"',
        'insert into "tenant_a"."tag"',
      ]);
      for (const [schema, names] of [
        ['public', ['news', 'sports public']],
        ['tenant_a', ['news', 'sports tenant_a']],
      ] as const) {
        const rows = await orm.em.fork().execute(`select name from "${schema}"."tag" order by name`);
        expect(rows.map(row => row.name)).toEqual(names);
      }
      expect(log.queries.filter(q => q.startsWith('select "t0"')).map(q => q.match(/from ("\w+"\.)?"tag"/)![0])).toEqual([
        'from "tag"',
        'from "tenant_a"."tag"',
        'from "tag"',
        'from "tenant_a"."tag"',
      ]);
    } finally {
      await closeOrm(orm);
    }
  });
});
