import { LockMode, ReferenceKind, Utils, type Dictionary, type EntityData, type EntityMetadata, type EntityProperty, type FilterQuery } from '@mikro-orm/core';
import type { QueryBuilder, SqlEntityManager } from '@mikro-orm/knex';
import { MikroOrmInternalError } from '../shared/errors.js';
import { enabledFilterCondition } from '../shared/internals.js';

/** One SQL statement with `?` placeholders, as MikroORM's query builder renders it, and its values. */
export interface Statement {
  sql: string;
  params: readonly unknown[];
}

/** A statement whose placeholders take the values of `keys`, in that order, then `constants`. */
interface Template {
  sql: string;
  keys: readonly string[];
  constants: readonly unknown[];
}

/*
 * The fast path's statements, rendered by MikroORM's query builder, with the simple ones kept as templates.
 *
 * Building a query builder and rendering it costs more Node CPU than the round trip the fast path saves, so a
 * statement whose shape repeats is rendered once. A shape is the statement, the schemas its table may come
 * from (the one given and the EntityManager's), and the ordered keys of the values with each value's kind;
 * only values of plain columns qualify (see `plainColumn`), whose values the query builder passes to the
 * database unchanged, as bindings. For the first call of a shape this library writes the
 * template itself and keeps it only if it is the query builder's SQL, placeholders included, and formats with
 * that call's values to exactly what the query builder's does; otherwise the shape is remembered as one the
 * query builder renders every time. Either way the SQL sent is the query builder's.
 */

/** Templates per entity, by shape; `null` for a shape whose template did not match the query builder's SQL. */
const templates = new WeakMap<EntityMetadata, Map<string, Template | null>>();

/** The shapes kept per entity; later ones are rendered by the query builder every time. */
const MAX_SHAPES = 64;

/**
 * The insert MikroORM's query builder renders for `payload` (already in database form), returning every
 * column, with `on conflict do nothing` if `ignoreConflicts`. On the MySQL family, whose platforms drop the
 * query builder's `returning` (MySQL has no `INSERT ... RETURNING`; MariaDB has it from 10.5, which the fast
 * path checks first), ` returning *` is appended to the query builder's SQL; `ignoreConflicts` is never asked
 * for there: the query builder renders it as `insert ignore`, which turns other errors (truncation, NULL into
 * NOT NULL, a missing foreign key) into warnings too.
 *
 * @example
 * ```ts
 * insertStatement(em, meta, { name: 'news' }, undefined, true);
 * // { sql: 'insert into "tag" ("name") values (?) on conflict do nothing returning *', params: ['news'] }
 * insertStatement(mariadbEm, meta, { name: 'news' }, undefined, false);
 * // { sql: 'insert into `tag` (`name`) values (?) returning *', params: ['news'] }
 * ```
 */
export function insertStatement<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  payload: EntityData<T>,
  schema: string | undefined,
  ignoreConflicts: boolean,
): Statement {
  const appendReturning = !em.getPlatform().usesReturningStatement();
  const render = () => {
    const qb = em.getDriver().createQueryBuilder<T>(meta.className, em.getTransactionContext(), 'write', false, undefined, undefined, em);
    qb.withSchema(schema).insert(payload as T);
    if (ignoreConflicts) {
      qb.onConflict().ignore();
    }
    qb.returning('*' as never);
    const statement = rendered(qb);
    return appendReturning ? { ...statement, sql: `${statement.sql} returning *` } : statement;
  };
  return fromTemplate(em, meta, ignoreConflicts ? 'insert, ignoring conflicts' : 'insert', schema, payload, render, (keys, table) => {
    // knex lists an insert's columns sorted by name
    const sorted = [...keys].sort((a, b) => (columnOf(meta, a) < columnOf(meta, b) ? -1 : 1));
    const columns = sorted.map(key => em.getPlatform().quoteIdentifier(columnOf(meta, key))).join(', ');
    const conflict = ignoreConflicts ? ' on conflict do nothing' : '';
    return {
      sql: `insert into ${table} (${columns}) values (${sorted.map(() => '?').join(', ')})${conflict} returning *`,
      keys: sorted,
      constants: [],
    };
  });
}

/**
 * The select `em.find(entity, filters, { limit: 2 })` sends, with the entity's enabled filters applied; with
 * `lock`, the one `em.find(entity, filters, { limit: 2, lockMode: LockMode.PESSIMISTIC_READ })` sends (inside a
 * transaction only), rendered every time: it is sent only after a conflict.
 *
 * @example
 * ```ts
 * await selectStatement(em, meta, { name: 'news' }, undefined);
 * // { sql: 'select "t0".* from "tag" as "t0" where "t0"."name" = ? limit ?', params: ['news', 2] }
 * await selectStatement(mariadbEm, meta, { name: 'news' }, undefined, true);
 * // { sql: 'select `t0`.* from `tag` as `t0` where `t0`.`name` = ? limit ? lock in share mode', params: ['news', 2] }
 * ```
 */
export async function selectStatement<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  filters: FilterQuery<T>,
  schema: string | undefined,
  lock = false,
): Promise<Statement> {
  const enabled = await enabledFilterCondition(em, meta.className);
  const render = () => {
    const qb = em.createQueryBuilder<T, 't0'>(meta.className, 't0').withSchema(schema).select('*').where(filters).limit(2);
    if (!Utils.isEmpty(enabled)) {
      qb.andWhere(enabled as FilterQuery<T>);
    }
    if (lock) {
      qb.setLockMode(LockMode.PESSIMISTIC_READ);
    }
    return rendered(qb);
  };
  if (lock || !Utils.isPlainObject(filters) || !Utils.isEmpty(enabled) || Object.values(filters).includes(null)) {
    return render(); // locking, an operator, an entity's filter, or `is null`: not a column equal to a value
  }
  return fromTemplate(em, meta, 'select', schema, filters, render, (keys, table) => {
    const quote = (name: string) => em.getPlatform().quoteIdentifier(name);
    const where = keys.map(key => `${quote('t0')}.${quote(columnOf(meta, key))} = ?`).join(' and ');
    return { sql: `select ${quote('t0')}.* from ${table} as ${quote('t0')} where ${where} limit ?`, keys, constants: [2] };
  });
}

/**
 * The update `em.nativeUpdate(entity, where, values)` sends on PostgreSQL, with the entity's enabled filters applied
 * and `returning *`; the properties of `stamps` (`onUpdate` values) are set only when the columns of `values`
 * change, as a flush sets them only when it writes something:
 * `case when (<columns>) is distinct from (<values>) then <stamp> else <column> end` (the database's equality),
 * spliced into the query builder's SQL. `values` are in database form, of plain columns only ({@link plainColumn}).
 * From a template per shape (see the comment at the top) when `where` is columns equal to values and no filter is
 * enabled; rendered every time otherwise.
 *
 * @example
 * ```ts
 * await updateReturningStatement(em, meta, { handle: 'ada' }, { name: 'Ada' }, { updatedAt: now }, undefined);
 * // update "member" set "name" = ?, "updated_at" = case when ("name") is distinct from (?) then ? else "updated_at" end
 * //   where "handle" = ? returning *
 * ```
 */
export async function updateReturningStatement<T extends object>(
  em: SqlEntityManager,
  meta: EntityMetadata<T>,
  where: FilterQuery<T>,
  values: Dictionary,
  stamps: Dictionary,
  schema: string | undefined,
): Promise<Statement> {
  const enabled = await enabledFilterCondition(em, meta.className);
  const quote = (key: string) => em.getPlatform().quoteIdentifier(columnOf(meta, key));
  const keys = Object.keys(values);
  const compared = `(${keys.map(quote).join(', ')}) is distinct from (${keys.map(() => '?').join(', ')})`;
  const render = () => {
    const qb = em.getDriver().createQueryBuilder<T>(meta.className, em.getTransactionContext(), 'write', false, undefined, undefined, em);
    qb.withSchema(schema).update({ ...values, ...stamps } as T).where(where);
    if (!Utils.isEmpty(enabled)) {
      qb.andWhere(enabled as FilterQuery<T>);
    }
    qb.returning('*' as never);
    const { sql, params } = rendered(qb);
    // the SET clause's placeholders come first, in the order of the data; each stamp's becomes its `case`
    const parts = sql.split('?');
    Object.keys(stamps).forEach((key, i) => {
      const at = keys.length + i;
      if (parts.length !== params.length + 1 || !parts[at].endsWith(`${quote(key)} = `)) {
        throw MikroOrmInternalError.missing(`QueryBuilder's update with its SET values first (${sql})`);
      }
      parts[at] += `case when ${compared} then `;
      parts[at + 1] = ` else ${quote(key)} end${parts[at + 1]}`;
    });
    // each stamp's placeholder now takes the compared values first, then the stamp
    const bound: unknown[] = [...params];
    bound.splice(keys.length, Object.keys(stamps).length, ...Object.values(stamps).flatMap(stamp => [...Object.values(values), stamp]));
    return { sql: parts.join('?'), params: bound };
  };
  const plainWhere = Utils.isPlainObject<Dictionary>(where) && !Object.values(where).includes(null);
  const overlapping = (key: string) => key in stamps || (key in values && values[key] !== (where as Dictionary)[key]);
  if (!plainWhere || !Utils.isEmpty(enabled) || Object.keys(where).some(overlapping)) {
    return render(); // an operator, an entity's filter, `is null`, or a column both set and matched otherwise
  }
  const stampKeys = Object.keys(stamps);
  const whereKeys = Object.keys(where);
  const statement = `update\0${keys.join(',')}\0${stampKeys.join(',')}\0${whereKeys.join(',')}`;
  return fromTemplate(em, meta, statement, schema, { ...values, ...stamps, ...where }, render, (_, table) => {
    const set = [...keys.map(key => `${quote(key)} = ?`), ...stampKeys.map(key => `${quote(key)} = case when ${compared} then ? else ${quote(key)} end`)];
    return {
      sql: `update ${table} set ${set.join(', ')} where ${whereKeys.map(key => `${quote(key)} = ?`).join(' and ')} returning *`,
      keys: [...keys, ...stampKeys.flatMap(key => [...keys, key]), ...whereKeys],
      constants: [],
    };
  });
}

/** A PostgreSQL identifier as MikroORM quotes it: in double quotes, a double quote doubled. */
const IDENTIFIER = '"(?:[^"]|"")+"';

/**
 * The one-row insert {@link insertStatement} renders on PostgreSQL with `ignoreConflicts`: the table (maybe
 * schema-qualified), then its columns and values, or `default values` when the payload is empty.
 */
const ONE_ROW_INSERT = new RegExp(
  `^(insert into ${IDENTIFIER}(?:\\.${IDENTIFIER})?)(?: (\\(${IDENTIFIER}(?:, ${IDENTIFIER})*\\)) values \\((.*)\\)| default values) on conflict do nothing returning \\*$`,
  's',
);

/** The alias of the flag column of {@link insertUnlessFoundStatement}, per entity: `created`, or a name no column of the entity has. */
const createdFlags = new WeakMap<EntityMetadata, string>();

/**
 * The column {@link insertUnlessFoundStatement} adds to each row it returns: `true` for the inserted row, `false`
 * for a found one. Named `created`, with `_` appended while a property of the entity has a column of that name
 * (the flag is the rows' last column, so it would hide that column's value).
 *
 * @example
 * ```ts
 * createdFlag(em.getMetadata().get('Tag')); // 'created'
 * ```
 */
export function createdFlag(meta: EntityMetadata): string {
  let flag = createdFlags.get(meta);
  if (flag === undefined) {
    const columns = new Set(meta.props.flatMap(prop => prop.fieldNames ?? []));
    flag = 'created';
    while (columns.has(flag)) {
      flag += '_';
    }
    createdFlags.set(meta, flag);
  }
  return flag;
}

/**
 * The SQL of {@link insertUnlessFoundStatement} per entity, by its `oneFound` and the SQL of its select, then by
 * the SQL of its insert: both hold every name the statement uses (table, schema, columns) and only placeholders
 * for values, so the same key always makes the same statement. At most `MAX_SHAPES` of each are kept; others are
 * built every time.
 */
const unlessFoundSQL = new WeakMap<EntityMetadata, Map<string, Map<string, string>>>();

/**
 * One PostgreSQL statement that finds the rows `select` finds and inserts the row of `insert` only when it finds
 * none, so that a row that exists costs no sequence value (the insert's `select` yields no row, so no column
 * default is evaluated): `select` as the CTE `found`, `insert` turned from `values (...)` into a `select` of the
 * same values `where not exists (select 1 from "found")` as the CTE `inserted`, then the rows of both, each with
 * the {@link createdFlag} column last. Both CTEs read one snapshot, so when the insert's ON CONFLICT meets a row
 * committed after it (or by a transaction it waited for), the statement returns no row: the caller selects again.
 * `insert` is {@link insertStatement}'s one-row insert with `ignoreConflicts`, `select` {@link selectStatement}'s
 * (`select "t0".* ...`, the table's columns, as `returning *` gives them) or an `update ... returning *`; the values
 * of both stay bound as they were. With `oneFound`, `found` holding several rows makes the whole statement fail
 * with PostgreSQL's cardinality violation (21000, "more than one row returned by a subquery used as an
 * expression"), so that an UPDATE of several rows (a unique key the entity declares and the table lacks) is
 * undone with it rather than committed.
 *
 * @example
 * ```ts
 * insertUnlessFoundStatement(meta, insertStatement(em, meta, { name: 'news' }, undefined, true), await selectStatement(em, meta, { name: 'news' }, undefined));
 * // with "found" as (select "t0".* from "tag" as "t0" where "t0"."name" = ? limit ?),
 * //   "inserted" as (insert into "tag" ("name") select ? where not exists (select 1 from "found") on conflict do nothing returning *)
 * //   select *, true as "created" from "inserted" union all select *, false from "found"
 * ```
 * @throws {MikroOrmInternalError} when `insert` is not the one-row insert MikroORM 6.6's query builder renders.
 */
export function insertUnlessFoundStatement(meta: EntityMetadata, insert: Statement, select: Statement, oneFound = false): Statement {
  let bySelect = unlessFoundSQL.get(meta);
  if (!bySelect) {
    bySelect = new Map();
    unlessFoundSQL.set(meta, bySelect);
  }
  const selectKey = `${oneFound ? 'one' : 'any'}\0${select.sql}`;
  let byInsert = bySelect.get(selectKey);
  let sql = byInsert?.get(insert.sql);
  if (sql === undefined) {
    const match = ONE_ROW_INSERT.exec(insert.sql);
    if (!match) {
      throw MikroOrmInternalError.missing(`QueryBuilder's one-row insert (${insert.sql})`);
    }
    const [, into, columns, values] = match;
    const source = columns === undefined ? 'select' : `${columns} select ${values}`;
    const conditional = `${into} ${source} where not exists (select 1 from "found") on conflict do nothing returning *`;
    const found = `select *, false from "found"${oneFound ? ' where (select 1 from "found") = 1' : ''}`;
    sql = `with "found" as (${select.sql}), "inserted" as (${conditional}) select *, true as "${createdFlag(meta)}" from "inserted" union all ${found}`;
    if (!byInsert && bySelect.size < MAX_SHAPES) {
      byInsert = new Map();
      bySelect.set(selectKey, byInsert);
    }
    if (byInsert && byInsert.size < MAX_SHAPES) {
      byInsert.set(insert.sql, sql);
    }
  }
  return { sql, params: [...select.params, ...insert.params] };
}

/** A query builder's SQL with `?` placeholders (as MikroORM logs and formats it) and its values. */
export function rendered<T extends object>(qb: Pick<QueryBuilder<T>, 'getKnexQuery'>): Statement {
  const { sql, bindings } = qb.getKnexQuery().toSQL();
  return { sql, params: bindings };
}

/**
 * The statement for `values`: from its shape's template when there is one, else rendered by the query builder
 * (`render`), in which case `template` is tried as the shape's template (see the comment at the top).
 */
function fromTemplate(
  em: SqlEntityManager,
  meta: EntityMetadata,
  statement: string,
  schema: string | undefined,
  values: Dictionary,
  render: () => Statement,
  template: (keys: readonly string[], table: string) => Template,
): Statement {
  const keys = Object.keys(values);
  const shape = shapeOf(meta, keys, values);
  if (shape === undefined) {
    return render();
  }
  let shapes = templates.get(meta);
  if (!shapes) {
    shapes = new Map();
    templates.set(meta, shapes);
  }
  // what the query builder's choice of schema depends on besides the entity and the ORM, fixed per `meta`
  const key = `${statement}\0${schema ?? ''}\0${em.schema ?? ''}\0${shape}`;
  const known = shapes.get(key);
  if (known) {
    return { sql: known.sql, params: paramsOf(known, values) };
  }
  const statementSQL = render();
  if (known === undefined && shapes.size < MAX_SHAPES) {
    const candidate = template(keys, tableOf(em, meta, schema));
    const platform = em.getPlatform();
    const params = paramsOf(candidate, values);
    const same = candidate.sql === statementSQL.sql && platform.formatQuery(candidate.sql, params) === platform.formatQuery(statementSQL.sql, [...statementSQL.params]);
    shapes.set(key, same ? candidate : null);
  }
  return statementSQL;
}

/** The values a template's placeholders take for `values`. */
function paramsOf(template: Template, values: Dictionary): unknown[] {
  return [...template.keys.map(key => values[key]), ...template.constants];
}

/** The shape of `values` (their keys and kinds) if every one is a plain column's; else `undefined`. */
function shapeOf(meta: EntityMetadata, keys: readonly string[], values: Dictionary): string | undefined {
  if (keys.length === 0) {
    return undefined;
  }
  const parts: string[] = [];
  for (const key of keys) {
    const kind = valueKind(values[key]);
    const prop = meta.properties[key] as EntityProperty | undefined;
    if (kind === undefined || !prop || !plainColumn(prop)) {
      return undefined;
    }
    parts.push(`${key}:${kind}`);
  }
  return parts.join('\0');
}

/** The kind of a value the database gets as it is: `null`, a string, number, boolean, bigint or Date. */
export function valueKind(value: unknown): string | undefined {
  if (value === null) {
    return 'null';
  }
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
      return typeof value;
    default:
      return value instanceof Date ? 'date' : undefined;
  }
}

/**
 * Whether `prop` is one column whose values the query builder binds unchanged: a scalar, or a to-one relation
 * by a single primary key, without a custom type (which converts values, in JavaScript or in SQL) on either.
 */
export function plainColumn(prop: EntityProperty): boolean {
  if (prop.fieldNames?.length !== 1 || prop.fieldNames[0].includes('?') || prop.customType || prop.customTypes) {
    return false;
  }
  if (prop.kind === ReferenceKind.SCALAR) {
    return true;
  }
  const toOne = prop.kind === ReferenceKind.MANY_TO_ONE || (prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner);
  const primaryKeys = prop.targetMeta?.getPrimaryProps() ?? [];
  return toOne && primaryKeys.length === 1 && !primaryKeys[0].customType;
}

/** The column of the property `key` (a plain column: see {@link plainColumn}). */
export function columnOf(meta: EntityMetadata, key: string): string {
  return meta.properties[key as keyof typeof meta.properties].fieldNames[0];
}

/**
 * The entity's table, quoted and schema-qualified as MikroORM 6.6's query builder qualifies it (the schema
 * given, else the entity's, the EntityManager's or the ORM's). Should a release choose otherwise, templates
 * stop matching the query builder's SQL and are not kept: the statements are then rendered every time.
 */
export function tableOf(em: SqlEntityManager, meta: EntityMetadata, schema: string | undefined): string {
  const platform = em.getPlatform();
  const name = schema ?? (meta.schema === '*' ? undefined : meta.schema) ?? em.schema ?? em.config.getSchema(true);
  return platform.quoteIdentifier(name && name !== platform.getDefaultSchemaName() ? `${name}.${meta.tableName}` : meta.tableName);
}
