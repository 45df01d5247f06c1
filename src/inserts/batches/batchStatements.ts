import { LockMode, raw, Utils, type Dictionary, type EntityMetadata, type FilterQuery, type RawQueryFragment } from '@mikro-orm/core';
import type { SqlEntityManager } from '@mikro-orm/knex';
import { enabledFilterCondition } from '../../shared/internals.js';
import { dialectOf, type Dialect } from '../../shared/dialect.js';
import { columnOf, plainColumn, rendered, tableOf, valueKind, type Statement } from '../statements.js';
import type { BatchKey } from './batchKey.js';
import { SQLITE_MAX_ROWS } from './manyOptions.js';

/*
 * A batch's select and multi-row insert, rendered by MikroORM's query builder, with the common ones kept as
 * templates, as the fast path keeps its single-row statements (see statements.ts).
 *
 * The query builder processes every value of a 1,000-key `$in` or a 1,000-row insert one by one (a criteria
 * node, a knex binding), which costs more Node CPU than the database spends on the statement. A statement of
 * two or more rows whose values are all of plain columns (see `plainColumn`) has a shape: the statement, the
 * schemas its table may come from, the columns and the kinds of their values. The first time a shape comes, the
 * query builder renders it, and this library's template for the same rows is kept only if it is the query
 * builder's SQL, placeholders included, and formats with those values to exactly what the query builder's does;
 * the template writes the statement for any number of rows (two or more) from then on. Otherwise the shape is
 * remembered as one the query builder renders every time.
 *
 * On PostgreSQL and SQLite, two or more rows whose values all have an exact JSON form go as one JSON document
 * instead (see `jsonRows`), which neither the query builder nor a template writes out value by value. On SQLite a
 * statement written value by value holds at most {@link SQLITE_MAX_ROWS} rows (or keys), so a chunk may take several.
 */

/** Templates per entity, by shape: the SQL for a number of rows; `null` for a shape whose template did not match. */
const templates = new WeakMap<EntityMetadata, Map<string, ((rows: number) => string) | null>>();

/** The shapes kept per entity; later ones are rendered by the query builder every time. */
const MAX_SHAPES = 64;

/**
 * The selects of the rows whose `key` values are `wheres` (in entity form, as the caller gave them), on the
 * primary, the entity's enabled filters applied; with `lock`, the locking read (`lock in share mode`,
 * `LockMode.PESSIMISTIC_READ`). A single-column key is `in (...)`, a composite one an `or` of `and`s: one
 * statement, or on SQLite one per {@link SQLITE_MAX_ROWS} keys (an `or` of more nests deeper than SQLite's
 * expression depth limit allows). On PostgreSQL and SQLite, keys of JSON values (see `jsonRows`) are one JSON
 * document instead, each key looked up by its unique index: on PostgreSQL in a lateral subquery that `offset 0`
 * keeps a nested loop over the index, whatever the table's statistics (an `in` list of 1,000 keys was planned as
 * a sequential scan of a table never analyzed); on SQLite in a `cross join`, which SQLite always runs with its
 * left table, the keys, as the outer loop.
 *
 * @example
 * ```ts
 * await selectByKeys(em, meta, key, [{ name: 'a' }, { name: 'b' }], false);
 * // MariaDB: [{ sql: 'select `t0`.* from `tag` as `t0` where `t0`.`name` in (?, ?)', params: ['a', 'b'] }]
 * // PostgreSQL: [{ sql: 'select "t0".* from json_populate_recordset(null::"tag", ?) as "keys" cross join lateral
 * //   (select * from "tag" as "t0" where "t0"."name" = "keys"."name" offset 0) as "t0"', params: [raw(`'[{"name":"a"},{"name":"b"}]'`)] }]
 * // SQLite: [{ sql: "select `t0`.* from json_each(?) as `keys` cross join `tag` as `t0` where `t0`.`name` = json_extract(`keys`.`value`, '$[0]')",
 * //   params: ['[["a"],["b"]]'] }]
 * ```
 */
export async function selectByKeys<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  key: BatchKey<T>,
  wheres: readonly Dictionary[],
  lock: boolean,
): Promise<Statement[]> {
  const { names } = key;
  const dialect = dialectOf(em.getPlatform());
  const enabled = await enabledFilterCondition(em, meta.className);
  const render = (wheres: readonly Dictionary[]) => {
    const where = names.length === 1 ? { [names[0]]: { $in: wheres.map(where => where[names[0]]) } } : { $or: wheres };
    const qb = em.createQueryBuilder<T, 't0'>(meta.className, 't0', 'write').withSchema(em.schema).select('*').where(where as FilterQuery<T>);
    if (!Utils.isEmpty(enabled)) {
      qb.andWhere(enabled as FilterQuery<T>);
    }
    if (lock) {
      qb.setLockMode(LockMode.PESSIMISTIC_READ);
    }
    return rendered(qb);
  };
  if (lock || !Utils.isEmpty(enabled)) {
    return inPieces(dialect, wheres, render); // locking, or an entity's filter: rendered every time
  }
  const json = jsonRows(meta, names, wheres, dialect);
  if (json !== undefined) {
    const platform = em.getPlatform();
    const table = tableOf(em, meta, em.schema);
    const [alias, keys] = ['t0', 'keys'].map(name => platform.quoteIdentifier(name));
    const column = (name: string) => `${alias}.${platform.quoteIdentifier(columnOf(meta, name))}`;
    if (dialect === 'sqlite') {
      const matches = names.map((name, i) => `${column(name)} = json_extract(${keys}.${platform.quoteIdentifier('value')}, '$[${i}]')`);
      return [{ sql: `select ${alias}.* from json_each(?) as ${keys} cross join ${table} as ${alias} where ${matches.join(' and ')}`, params: [json] }];
    }
    const matches = names.map(name => platform.quoteIdentifier(columnOf(meta, name))).map(quoted => `${alias}.${quoted} = ${keys}.${quoted}`);
    return [
      {
        // `offset 0` keeps the lateral subquery a nested loop over the key's unique index, whatever the table's statistics
        sql: `select ${alias}.* from json_populate_recordset(null::${table}, ?) as ${keys} cross join lateral (select * from ${table} as ${alias} where ${matches.join(' and ')} offset 0) as ${alias}`,
        params: [json],
      },
    ];
  }
  return inPieces(dialect, wheres, wheres =>
    fromTemplate(em, meta, 'select', names, wheres, () => render(wheres), table => {
      const platform = em.getPlatform();
      const alias = platform.quoteIdentifier('t0');
      const columns = names.map(name => `${alias}.${platform.quoteIdentifier(columnOf(meta, name))}`);
      const head = `select ${alias}.* from ${table} as ${alias} where `;
      if (columns.length === 1) {
        return rows => `${head}${columns[0]} in (${placeholders(rows)})`;
      }
      const row = `(${columns.map(column => `${column} = ?`).join(' and ')})`;
      return rows => `${head}(${Array.from({ length: rows }, () => row).join(' or ')})`;
    }),
  );
}

/**
 * The multi-row inserts of `payloads` (in database form, as change sets hold them), returning every column, with
 * `on conflict (key) do nothing` if `ignoreConflicts`, as MikroORM's query builder renders them: one statement, or
 * on SQLite one per {@link SQLITE_MAX_ROWS} rows (knex writes SQLite's multi-row insert as a compound select,
 * which SQLite caps at 500 terms). On the MySQL family, whose platforms drop the query builder's `returning`,
 * ` returning *` is appended (MariaDB 10.5+ runs it); `ignoreConflicts` is never asked for there (the query
 * builder renders it as `insert ignore`). On PostgreSQL and SQLite, rows of JSON values (see `jsonRows`) are
 * selected from one JSON document, in the order given.
 *
 * @example
 * ```ts
 * insertRowsStatements(em, meta, key, [{ name: 'a' }, { name: 'b' }], true, 'postgresql');
 * // [{ sql: 'insert into "tag" ("name") select "name" from json_populate_recordset(null::"tag", ?) on conflict ("name") do nothing returning *',
 * //    params: [raw(`'[{"name":"a"},{"name":"b"}]'`)] }]
 * insertRowsStatements(em, meta, key, [{ name: 'a' }, { name: 'b' }], true, 'sqlite');
 * // [{ sql: "insert into `tag` (`name`) select json_extract(`value`, '$[0]') from json_each(?) where true on conflict (`name`) do nothing returning *",
 * //    params: ['[["a"],["b"]]'] }]
 * insertRowsStatements(em, meta, key, [{ name: 'a', at }, { name: 'b', at }], true, 'sqlite'); // `at` a Date: no exact JSON form
 * // [{ sql: 'insert into `tag` (`at`, `name`) select ? as `at`, ? as `name` union all select ? as `at`, ? as `name` where true on conflict (`name`) do nothing returning *',
 * //    params: [at, 'a', at, 'b'] }]
 * ```
 */
export function insertRowsStatements<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  key: BatchKey<T>,
  payloads: readonly Dictionary[],
  ignoreConflicts: boolean,
  dialect: Dialect,
): Statement[] {
  const returning = dialect === 'mysql' ? ' returning *' : '';
  const render = (payloads: readonly Dictionary[]) => {
    const qb = em.getDriver().createQueryBuilder<T>(meta.className, em.getTransactionContext(), 'write', false, undefined, undefined, em);
    qb.withSchema(em.schema).insert(payloads as T[]);
    if (ignoreConflicts) {
      qb.onConflict(key.names as never).ignore();
    }
    qb.returning('*' as never);
    const statement = rendered(qb);
    return { ...statement, sql: `${statement.sql}${returning}` };
  };
  // knex lists an insert's columns sorted by name, and writes DEFAULT (SQLite: NULL) for a row without one of them
  const names = Object.keys(payloads[0]).sort((a, b) => (columnOf(meta, a) < columnOf(meta, b) ? -1 : 1));
  const count = names.length;
  if (count === 0 || payloads.some(payload => Object.keys(payload).length !== count || names.some(name => !(name in payload)))) {
    return inPieces(dialect, payloads, render);
  }
  const platform = em.getPlatform();
  const quoted = (names: readonly string[]) => names.map(name => platform.quoteIdentifier(columnOf(meta, name)));
  const conflict = ignoreConflicts ? ` on conflict (${quoted(key.names).join(', ')}) do nothing` : '';
  const json = jsonRows(meta, names, payloads, dialect);
  if (json !== undefined) {
    const table = tableOf(em, meta, em.schema);
    const columns = quoted(names).join(', ');
    // `where true`: SQLite would read an `on conflict` after a select without a where clause as the join's `on`
    const [values, source] =
      dialect === 'sqlite'
        ? [names.map((_, i) => `json_extract(${platform.quoteIdentifier('value')}, '$[${i}]')`).join(', '), 'json_each(?) where true']
        : [columns, `json_populate_recordset(null::${table}, ?)`];
    return [{ sql: `insert into ${table} (${columns}) select ${values} from ${source}${conflict} returning *`, params: [json] }];
  }
  const statement = ignoreConflicts ? `insert ${key.names.join()}` : 'insert';
  return inPieces(dialect, payloads, payloads =>
    fromTemplate(em, meta, statement, names, payloads, () => render(payloads), table => {
      const columns = quoted(names);
      const head = `insert into ${table} (${columns.join(', ')}) `;
      const tail = `${conflict} returning *`; // on the MySQL family, the one appended to the query builder's SQL
      if (dialect === 'sqlite') {
        // knex's multi-row insert on SQLite: a compound select
        const row = `select ${columns.map(column => `? as ${column}`).join(', ')}`;
        return rows => `${head}${Array.from({ length: rows }, () => row).join(' union all ')} where true${tail}`;
      }
      const row = `(${placeholders(count)})`;
      return rows => `${head}values ${Array.from({ length: rows }, () => row).join(', ')}${tail}`;
    }),
  );
}

/**
 * `rows`' values of `names` as one JSON document, the one value of a statement that reads each value as its
 * column's type reads a literal or a bound value: on PostgreSQL an array of objects by column name, for
 * `json_populate_recordset(null::table, ?)`, as a literal (see `jsonLiteral`); on SQLite an array of arrays of
 * the values in the order of `names`, for `json_extract(value, '$[i]')` over `json_each(?)`, as a string to bind.
 * `undefined` on other databases, for fewer than two rows, or when a property is no plain column (see
 * `plainColumn`) or a value has no exact JSON form (see `exactInJson`), for the caller to write the values one by
 * one. One value where a 1,000-row statement had 1,000 literals or placeholders (or more): the database parses
 * it faster, MikroORM inlines (PostgreSQL) or binds (SQLite) one value instead of each, and SQLite's statement
 * needs no compound select.
 */
function jsonRows(meta: EntityMetadata, names: readonly string[], rows: readonly Dictionary[], dialect: Dialect): RawQueryFragment | string | undefined {
  if ((dialect !== 'postgresql' && dialect !== 'sqlite') || rows.length < 2 || !names.every(name => meta.properties[name] && plainColumn(meta.properties[name]))) {
    return undefined;
  }
  const sqlite = dialect === 'sqlite';
  const columns = names.map(name => columnOf(meta, name));
  const document: Dictionary[] = [];
  for (const row of rows) {
    const entry: Dictionary = sqlite ? new Array(names.length) : {};
    for (let i = 0; i < names.length; i++) {
      const value: unknown = row[names[i]];
      if (!exactInJson(value)) {
        return undefined;
      }
      entry[sqlite ? i : columns[i]] = value;
    }
    document.push(entry);
  }
  const json = JSON.stringify(document);
  return sqlite ? json : jsonLiteral(json);
}

/**
 * Whether `value` reads back from a JSON document as itself: null, a boolean, a safe integer, or a string that is
 * well-formed UTF-16 without NUL. A lone surrogate, which a bound or inlined string turns into U+FFFD, is refused
 * by PostgreSQL's JSON and stored as invalid UTF-8 by SQLite's; SQLite's `json_extract` cuts a string at NUL.
 */
function exactInJson(value: unknown): boolean {
  return value === null || typeof value === 'boolean' || Number.isSafeInteger(value) || (typeof value === 'string' && value.isWellFormed() && !value.includes('\0'));
}

/**
 * PostgreSQL: a JSON document (see `jsonRows`) as the string literal MikroORM would make of it (node-postgres's
 * `escapeLiteral`: quotes doubled, and backslashes too in an `E''` literal when there are any), handed over as a
 * raw fragment, which MikroORM inlines as it is. `escapeLiteral` copies a string character by character: for the
 * JSON of a 1,000-row chunk that was a seventh of all the memory a batch call allocates.
 */
function jsonLiteral(json: string): RawQueryFragment {
  const quoted = json.replaceAll("'", "''");
  return raw(json.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`);
}

/**
 * `statement` of `rows`: one, or on SQLite one per {@link SQLITE_MAX_ROWS} rows, the most a statement written
 * value by value holds there (a compound select of more terms, an `or` nested deeper, is refused).
 */
function inPieces<R>(dialect: Dialect, rows: readonly R[], statement: (rows: readonly R[]) => Statement): Statement[] {
  if (dialect !== 'sqlite' || rows.length <= SQLITE_MAX_ROWS) {
    return [statement(rows)];
  }
  const pieces: Statement[] = [];
  for (let start = 0; start < rows.length; start += SQLITE_MAX_ROWS) {
    pieces.push(statement(rows.slice(start, start + SQLITE_MAX_ROWS)));
  }
  return pieces;
}

/** `?, ?, ...`: `count` placeholders. */
function placeholders(count: number): string {
  return Array.from({ length: count }, () => '?').join(', ');
}

/**
 * The statement for `rows` (two or more, their values in the order of `names`): from its shape's template when
 * there is one, else rendered by the query builder (`render`), in which case `template` is tried as the shape's
 * template (see the comment at the top).
 */
function fromTemplate(
  em: SqlEntityManager,
  meta: EntityMetadata,
  statement: string,
  names: readonly string[],
  rows: readonly Dictionary[],
  render: () => Statement,
  template: (table: string) => (rows: number) => string,
): Statement {
  const shape = rows.length < 2 ? undefined : shapeOf(meta, names, rows);
  if (shape === undefined) {
    return render();
  }
  const shapes = templates.get(meta) ?? templates.set(meta, new Map()).get(meta)!;
  // the query builder qualifies the table with the EntityManager's schema (given to it), else the entity's or the ORM's
  const id = `${statement}\0${em.schema ?? ''}\0${shape}`;
  const known = shapes.get(id);
  const params: unknown[] = [];
  for (const row of rows) {
    for (const name of names) {
      params.push(row[name]);
    }
  }
  if (known) {
    return { sql: known(rows.length), params };
  }
  const rendered = render();
  if (known === undefined && shapes.size < MAX_SHAPES) {
    const sqlFor = template(tableOf(em, meta, em.schema));
    const sql = sqlFor(rows.length);
    const platform = em.getPlatform();
    const same = sql === rendered.sql && platform.formatQuery(sql, params) === platform.formatQuery(rendered.sql, [...rendered.params]);
    shapes.set(id, same ? sqlFor : null);
  }
  return rendered;
}

/** The shape of `rows` (the columns and the kinds their values take) if every value is a plain column's; else `undefined`. */
function shapeOf(meta: EntityMetadata, names: readonly string[], rows: readonly Dictionary[]): string | undefined {
  const parts: string[] = [];
  for (const name of names) {
    const prop = meta.properties[name];
    if (!prop || !plainColumn(prop)) {
      return undefined;
    }
    const kinds = new Set<string>();
    for (const row of rows) {
      const kind = valueKind(row[name]);
      if (kind === undefined) {
        return undefined;
      }
      kinds.add(kind);
    }
    parts.push(`${name}:${[...kinds].sort().join('|')}`);
  }
  return parts.join('\0');
}
