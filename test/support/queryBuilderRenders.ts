import { QueryBuilder, QueryType } from '@mikro-orm/knex';
import type { MockInstance } from 'vitest';

/*
 * The statement-template suites spy on `QueryBuilder.prototype.getKnexQuery`, which renders every statement the
 * query builder builds, to tell a statement written from a template (no render) from one rendered.
 */

/** The query builder's own rendering, before a test spies on it. */
const render = QueryBuilder.prototype.getKnexQuery;

/**
 * Makes the spied `QueryBuilder.prototype.getKnexQuery` render every statement with a trailing
 * `/* rendered differently *\/` comment, so that no statement template of this library matches it: the templates
 * suites check that such a template is never kept.
 */
export function renderDifferently(renders: MockInstance): void {
  renders.mockImplementation(function (this: QueryBuilder<object>) {
    const query = render.call(this);
    const toSQL = query.toSQL.bind(query);
    const differently = () => Object.assign(toSQL(), { sql: `${toSQL().sql} /* rendered differently */` });
    return Object.assign(query, { toSQL: differently });
  });
}

/**
 * `counted(fn)`: what `fn` resolves to, and how many inserts and selects the query builder rendered meanwhile
 * (`renders` spying on `getKnexQuery`).
 */
export function countingRenders(renders: MockInstance): <T>(fn: () => Promise<T>) => Promise<[T, number]> {
  return async fn => {
    renders.mockClear();
    const result = await fn();
    const rendered = renders.mock.contexts as QueryBuilder<object>[];
    return [result, rendered.filter(qb => qb.type === QueryType.INSERT || qb.type === QueryType.SELECT).length];
  };
}
