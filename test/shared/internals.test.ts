import { type Configuration, DriverException, type EntityManager, RequestContext, wrap } from '@mikro-orm/core';
import { DatabaseSchema, SqlSchemaGenerator } from '@mikro-orm/knex';
import { Migrator } from '@mikro-orm/migrations';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MikroOrmInternalError } from '../../src/index.js';
import {
  beginWith,
  contextEntityManager,
  enabledFilterCondition,
  entityState,
  forgetCachedService,
  isBeingHydrated,
  metadataOf,
  postgresRoutine,
  registerManaged,
  schemasForComparison,
  setTouched,
  useSchemaGenerator,
  whileProcessing,
} from '../../src/shared/internals.js';
import { closeOrm, databases, type TestOrm } from '../support/databases.js';
import { Tag, raceEntities } from '../support/entities.js';

/**
 * Every MikroORM internal that src/shared/internals.ts reaches, on the installed MikroORM: each test fails with
 * MikroOrmInternalError naming the internal when a release removes or renames it.
 */
describe.each(databases)('MikroORM internals on $name', db => {
  let orm: TestOrm;

  beforeAll(async () => {
    ({ orm } = await db.init({ entities: raceEntities }));
  });
  afterAll(() => closeOrm(orm));

  it('Configuration.cache: forgetting a cached service makes MikroORM build it again', () => {
    const generator = orm.config.getExtension('@mikro-orm/schema-generator');
    expect(orm.config.getExtension('@mikro-orm/schema-generator')).toBe(generator);
    forgetCachedService(orm.config, '@mikro-orm/schema-generator');
    expect(orm.config.getExtension('@mikro-orm/schema-generator')).not.toBe(generator);
    expect(() => forgetCachedService({} as Configuration, 'x')).toThrow(MikroOrmInternalError.missing('Configuration.cache').message);
  });

  it('SqlSchemaGenerator.prepareSchemaForComparison: the database and entity schemas', async () => {
    const { fromSchema, toSchema } = await schemasForComparison(orm.schema, {});
    expect(fromSchema).toBeInstanceOf(DatabaseSchema);
    expect(fromSchema.getTables().map(table => table.name)).toContain('tag');
    expect(toSchema.getTables().map(table => table.name)).toContain('tag');
    await expect(async () => schemasForComparison({} as SqlSchemaGenerator, {})).rejects.toThrow(
      MikroOrmInternalError.missing('SqlSchemaGenerator.prepareSchemaForComparison').message,
    );
  });

  it('Migrator.schemaGenerator: the generator the Migrator computes its migrations with', async () => {
    class MarkingGenerator extends SqlSchemaGenerator {
      override async getUpdateSchemaMigrationSQL(): Promise<{ up: string; down: string }> {
        return { up: 'select 42;', down: '' };
      }
    }
    const migrator = new Migrator(orm.em);
    expect(await migrator.checkMigrationNeeded()).toBe(false); // the schema is the entities'
    useSchemaGenerator(migrator, new MarkingGenerator(orm.em));
    expect(await migrator.checkMigrationNeeded()).toBe(true);
    expect(() => useSchemaGenerator({} as Migrator, orm.schema)).toThrow(MikroOrmInternalError.missing('Migrator.schemaGenerator').message);
  });

  it('the wrapped entity: __managed, __originalEntityData, __loadedProperties, __config, __em, hydrator', async () => {
    expect(entityState({})).toBeUndefined(); // no wrapper: not an entity of a discovered class
    const em = orm.em.fork();
    const tag = em.create(Tag, { name: 'news' });
    expect(entityState(tag)).toMatchObject({ managed: false, loaded: false, config: orm.config });
    expect(isBeingHydrated(tag)).toBe(false);
    await em.flush();
    expect(entityState(tag)).toMatchObject({ managed: true, loaded: true, config: orm.config, em });
    const loaded = await orm.em.fork().findOneOrFail(Tag, tag.id, { fields: ['id'] });
    const state = entityState(loaded)!;
    expect([state.managed, state.loaded, [...state.loadedProperties]]).toEqual([true, true, ['id']]);
  });

  it('the wrapped entity: __meta, the metadata MikroORM discovered', async () => {
    const tag = orm.em.fork().create(Tag, { name: 'news' });
    expect(metadataOf(tag)).toBe(orm.getMetadata().get(Tag.name));
    expect(() => metadataOf({})).toThrow(MikroOrmInternalError.missing('WrappedEntity.__meta').message);
  });

  it('the wrapped entity: __touched, __processing', async () => {
    const em = orm.em.fork();
    const tag = await em.findOneOrFail(Tag, { name: 'news' });
    expect(wrap(tag).isTouched()).toBe(false);
    setTouched(tag, true);
    expect(wrap(tag).isTouched()).toBe(true);
    setTouched(tag, false);
    expect(wrap(tag).isTouched()).toBe(false);
    const during = await whileProcessing(tag, async () => wrap(tag, true).__processing);
    expect([during, wrap(tag, true).__processing]).toEqual([true, false]);
    const other = em.create(Tag, { name: 'other' });
    const both = await whileProcessing([tag, other], async () => [wrap(tag, true).__processing, wrap(other, true).__processing]);
    expect([both, wrap(other, true).__processing]).toEqual([[true, true], false]);
  });

  it('UnitOfWork.register: managed with the given snapshot, so a flush sends nothing', async () => {
    const em = orm.em.fork();
    const tag = Object.assign(new Tag(), { id: 1000, name: 'registered' });
    registerManaged(em.getUnitOfWork(false), tag, { id: 1000, name: 'registered' });
    expect(em.getUnitOfWork().getById(Tag.name, 1000)).toBe(tag);
    expect(wrap(tag).isManaged()).toBe(true);
    em.getUnitOfWork().computeChangeSets();
    expect(em.getUnitOfWork().getChangeSets()).toEqual([]);
  });

  it('EntityManager.applyFilters: {} without an enabled filter, the condition of those enabled', async () => {
    const em = orm.em.fork();
    expect(await enabledFilterCondition(em, Tag.name)).toEqual({});
    em.addFilter('red', { color: 'red' }, Tag);
    expect(await enabledFilterCondition(em, Tag.name)).toEqual({ color: 'red' });
    expect(await enabledFilterCondition(orm.em.fork(), Tag.name)).toEqual({});
    await expect(async () => enabledFilterCondition({} as EntityManager, Tag.name)).rejects.toThrow(
      MikroOrmInternalError.missing('EntityManager.applyFilters').message,
    );
  });

  it('EntityManager.getContext: the request context\'s fork, else the EntityManager itself', async () => {
    const fork = orm.em.fork();
    expect(contextEntityManager(fork)).toBe(fork);
    await RequestContext.create(fork, async () => {
      expect(contextEntityManager(orm.em)).toBe(RequestContext.getEntityManager(orm.em.name));
      expect(contextEntityManager(orm.em)).not.toBe(orm.em);
    });
    expect(() => contextEntityManager({} as EntityManager)).toThrow(MikroOrmInternalError.missing('EntityManager.getContext').message);
  });

  it('the driver error\'s routine: named on PostgreSQL\'s errors, missing (MikroOrmInternalError) on others', async () => {
    const error = (await orm.em.fork().execute('select * from no_such_table').catch((e: unknown) => e)) as DriverException;
    expect(error).toBeInstanceOf(DriverException);
    if (db.name === 'postgresql') {
      expect(postgresRoutine(error)).toBe('parserOpenTable');
    } else {
      expect(() => postgresRoutine(error)).toThrow(MikroOrmInternalError.missing('DriverException.routine (node-postgres DatabaseError.routine)').message);
    }
  });

  it('knex Transaction.begin and trxClient: SQLite transactions of the ORM begin immediately', async () => {
    const sent: string[] = [];
    const knex = orm.em.getConnection().getKnex();
    const record = (query: { sql: string }) => sent.push(query.sql);
    knex.on('query', record);
    try {
      await orm.em.fork().transactional(async em => em.execute('select 1'));
    } finally {
      knex.off('query', record);
    }
    expect(sent[0]).toBe(db.name === 'sqlite' ? 'BEGIN IMMEDIATE;' : 'BEGIN;');
  });

  it('knex Transaction.begin and trxClient: shapes refused with MikroOrmInternalError, a failed BEGIN mapped', async () => {
    const sent: string[] = [];
    const transaction = { begin: async () => sent.push('BEGIN;'), trxClient: { query: async (_: unknown, sql: string) => sent.push(sql) } };
    await beginWith(transaction, ['BEGIN IMMEDIATE;'], error => error).begin();
    expect(sent).toEqual(['BEGIN IMMEDIATE;']);
    sent.length = 0;
    await beginWith(transaction, ['SET TRANSACTION ISOLATION LEVEL serializable, READ ONLY;', 'BEGIN;'], error => error).begin();
    expect(sent).toEqual(['SET TRANSACTION ISOLATION LEVEL serializable, READ ONLY;', 'BEGIN;']);
    const failing = { begin: async () => undefined, trxClient: { query: async () => Promise.reject(new Error('busy')) } };
    await expect(beginWith(failing, ['BEGIN IMMEDIATE;'], error => new Error(`mapped: ${error.message}`)).begin()).rejects.toThrow('mapped: busy');
    expect(() => beginWith({}, ['BEGIN IMMEDIATE;'], error => error)).toThrow(MikroOrmInternalError.missing('knex Transaction.begin').message);
    await expect(beginWith({ begin: async () => undefined }, ['BEGIN IMMEDIATE;'], error => error).begin()).rejects.toThrow(
      MikroOrmInternalError.missing('knex Transaction.trxClient.query').message,
    );
  });
});
