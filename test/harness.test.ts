import { MikroORM } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { describe, expect, it } from 'vitest';
import { postgresAnswers, startThrowawayPostgres } from './support/postgresServer.js';

describe('test harness', () => {
  it('tells when nothing answers at a PostgreSQL URL', async () => {
    expect(await postgresAnswers('postgresql://postgres@127.0.0.1:1/test')).toBe(false);
  });

  it('starts a throwaway PostgreSQL server that MikroORM can use, and stops it', async () => {
    const server = await startThrowawayPostgres();
    try {
      const orm = await MikroORM.init({ driver: PostgreSqlDriver, clientUrl: server.url, entities: [], discovery: { warnWhenNoEntities: false } });
      try {
        const [row] = await orm.em.getConnection().execute<{ answer: number }[]>('select 6 * 7 as answer');
        expect(row.answer).toBe(42);
      } finally {
        await orm.close();
      }
    } finally {
      await server.stop();
    }
    expect(await postgresAnswers(server.url)).toBe(false);
  }, 120_000);
});
