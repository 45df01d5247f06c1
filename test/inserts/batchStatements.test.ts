/**
 * The batches' statement templates (src/inserts/batches/batchStatements.ts): a select of keys or a multi-row
 * insert of a shape the query builder rendered once is written from its template, as the same SQL, for any
 * number of rows; values of custom types, enabled filters, single rows and templates that differ from the query
 * builder's SQL keep going through the query builder. On PostgreSQL and SQLite, keys and rows whose values all
 * have an exact JSON form go as one JSON document instead, rendered by nobody.
 */
import { Entity, type Opt, PrimaryKey, Property, Unique, wrap } from '@mikro-orm/core';
import { QueryBuilder } from '@mikro-orm/knex';
import { beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { closeOrm, databases, postgresql, type QueryLog, type TestOrm } from '../support/databases.js';
import { Account, Tag, raceEntities } from '../support/entities.js';
import { countingRenders, renderDifferently } from '../support/queryBuilderRenders.js';

/** A string key, columns of other kinds (a fractional `score` has no exact JSON form), and a JSON column, which no template takes. */
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

  // a number without a custom type: `type: 'double'` (or `columnType: 'double precision'`) would give it DoubleType
  @Property({ type: 'number', columnType: 'real', default: 0 })
  score: Opt<number> = 0;

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

  /** Whether keys and rows of JSON values go as one JSON document. */
  const json = db.name === 'postgresql' || db.name === 'sqlite';

  const talks = (prefix: string, count: number) =>
    Array.from({ length: count }, (_, i) => ({ slug: `${prefix}${i}`, minutes: i, startsAt, score: i + 0.5 }));

  it('a repeated shape is written from its template, for any number of rows: the same SQL, the same rows and identity map', async () => {
    const em = orm.em.fork();
    const [first, firstRenders] = await counted(() => em.getOrCreateMany(Talk, talks('a', 3)));
    // the select and the insert; on PostgreSQL and SQLite the select's string keys go as JSON, the insert's fractional scores do not
    expect(firstRenders).toBe(json ? 1 : 2);
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
    const select = json ? 0 : 1; // a select of string keys: JSON on PostgreSQL and SQLite, else its template
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
    if (json) {
      // string keys go as JSON there, rendered by nobody: fractional scores keep the insert on the template path
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

  if (json) it('keys and rows of strings, integers, booleans and nulls go as one JSON document; other values one by one', async () => {
    const em = orm.em.fork();
    await em.getOrCreateMany(Tag, [{ name: 'old', color: 'grey' }]);
    log.clear();
    const [results, rendered] = await counted(() =>
      em.getOrCreateMany(Tag, [
        { name: 'c', color: 'it\'s "red"' },
        { name: 'old', color: 'ignored' },
        { name: 'a', color: null as never },
        // a placeholder-like `?` and a backslash in the document (PostgreSQL's literal is then an E'' string)
        { name: 'b?', color: 'C:\\dir' },
      ]),
    );
    expect(rendered).toBe(0);
    expect(log.queries).toEqual(
      db.name === 'postgresql'
        ? [
            'select "t0".* from json_populate_recordset(null::"tag", ?) as "keys" cross join lateral (select * from "tag" as "t0" where "t0"."name" = "keys"."name" offset 0) as "t0"',
            'begin',
            'insert into "tag" ("color", "name") select "color", "name" from json_populate_recordset(null::"tag", ?) on conflict ("name") do nothing returning *',
            'commit',
          ]
        : [
            "select `t0`.* from json_each(?) as `keys` cross join `tag` as `t0` where `t0`.`name` = json_extract(`keys`.`value`, '$[0]')",
            'begin',
            "insert into `tag` (`color`, `name`) select json_extract(`value`, '$[0]'), json_extract(`value`, '$[1]') from json_each(?) where true on conflict (`name`) do nothing returning *",
            'commit',
          ],
    );
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
    // a fractional number has no exact JSON form: the insert writes its values one by one, from its template
    log.clear();
    await em.getOrCreateMany(Talk, talks('d', 2));
    expect(log.queries.filter(q => q.startsWith('insert'))).toEqual([
      db.name === 'postgresql'
        ? 'insert into "talk" ("minutes", "score", "slug", "starts_at") values (?, ?, ?, ?), (?, ?, ?, ?) on conflict ("slug") do nothing returning *'
        : 'insert into `talk` (`minutes`, `score`, `slug`, `starts_at`) select ? as `minutes`, ? as `score`, ? as `slug`, ? as `starts_at` union all select ? as `minutes`, ? as `score`, ? as `slug`, ? as `starts_at` where true on conflict (`slug`) do nothing returning *',
    ]);
    const talksStored = await orm.em.fork().find(Talk, {}, { orderBy: { slug: 'asc' } });
    expect(talksStored.map(talk => [talk.slug, talk.minutes, talk.score, talk.startsAt.toISOString()])).toEqual([
      ['d0', 0, 0.5, startsAt.toISOString()],
      ['d1', 1, 1.5, startsAt.toISOString()],
    ]);
  });

  if (json) it('a string that JSON would not carry exactly goes value by value: a lone surrogate is stored as a plain insert stores it', async () => {
    // a lone surrogate becomes U+FFFD in a bound or inlined string, but is refused by PostgreSQL's JSON and stored
    // as invalid UTF-8 by SQLite's
    for (const [i, color] of ['lone \ud800 high', 'lone \udc00 low'].entries()) {
      log.clear();
      await orm.em.fork().getOrCreateMany(Tag, [{ name: `batch ${i}`, color }, { name: `batch ${i} plain`, color: 'plain' }]);
      expect(log.queries.filter(q => q.includes('json'))).toEqual([expect.stringMatching(/^select/)]); // the keys' select only
      await orm.em.fork().insert(Tag, { name: `plain ${i}`, color });
      const stored = await orm.em.fork().find(Tag, { name: [`batch ${i}`, `plain ${i}`] }, { orderBy: { name: 'asc' } });
      expect(stored.map(tag => tag.color)).toEqual([color.replace(/[\ud800-\udfff]/, '\ufffd'), color.replace(/[\ud800-\udfff]/, '\ufffd')]);
    }
  });

  if (db.name === 'sqlite') it('a string with NUL is refused as a plain insert refuses it, not cut short by json_extract', async () => {
    const color = 'nul \0 inside';
    await expect(orm.em.fork().getOrCreateMany(Tag, [{ name: 'a', color }, { name: 'b', color }])).rejects.toThrow(/unrecognized token/);
    await expect(orm.em.fork().insert(Tag, { name: 'c', color })).rejects.toThrow(/unrecognized token/);
    expect(await orm.em.fork().count(Tag)).toBe(0);
  });

  if (db.name === 'sqlite') it('a chunk written value by value goes as statements of 500 rows, keys and rows alike', async () => {
    const em = orm.em.fork();
    const rows = talks('e', 1_100);
    // chunks of 1,000 rows and 100; the keys of each go as JSON, its rows (fractional scores) one by one
    await em.getOrCreateMany(Talk, rows);
    const rowsOf = (q: string) => (q.match(/\?/g)?.length ?? 0) / (q.startsWith('insert') ? 4 : 1);
    expect(log.queries.filter(q => /^(select|insert)/.test(q)).map(q => [q.slice(0, 6), rowsOf(q)])).toEqual([
      ['select', 1],
      ['select', 1],
      ['insert', 500],
      ['insert', 500],
      ['insert', 100],
    ]);
    log.clear();
    em.addFilter('short', { minutes: { $lt: 100_000 } }, Talk); // a filter's select is rendered value by value
    const again = await em.getOrCreateMany(Talk, rows);
    expect(again.every(result => !result.created)).toBe(true);
    expect(log.queries.map(q => q.match(/\?/g)?.length)).toEqual([501, 501, 101]); // 500 keys and the filter's bound
    expect(await orm.em.fork().count(Talk)).toBe(1_100);
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
