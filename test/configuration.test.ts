import { randomBytes } from 'node:crypto';
import { Entity, EntitySchema, MikroORM, type Opt, type Options, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import type { AbstractSqlDriver, EntityManager } from '@mikro-orm/knex';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { Migrator } from '@mikro-orm/migrations';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { MySqlDriver } from '@mikro-orm/mysql';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  AutoInitDefault,
  CoasterConfigError,
  CoasterEntityManager,
  CreatedAt,
  TimestampError,
  TimestampSubscriber,
  UpdatedAt,
  createdAtProperty,
  defineCoasterConfig,
  withEntityDecorators,
} from '../src/index.js';
import { CoasterMigrator, CoasterSchemaGenerator, PrimaryRelationshipError, withPrimaryRelationships } from '../src/primary/index.js';
import { PrimaryRelationshipSubscriber } from '../src/primary/PrimaryRelationshipSubscriber.js';
import { ChildForPrimary, ParentForPrimary, primaryEntities } from './primary/entities.js';
import { mariadbUrlFor, postgresAdmin, postgresUrlFor } from './support/databases.js';
import { mariadbAdmin } from './support/mariadbServer.js';

/** Timestamps, one of them naive (`timestamp` without time zone on PostgreSQL). */
@Entity()
class Entry {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  slug!: string;

  @Property({ type: 'integer', default: 0 })
  hits: Opt<number> = 0;

  @CreatedAt({ timezone: false })
  createdAt!: Opt<Date>;

  @UpdatedAt()
  updatedAt!: Opt<Date>;
}

/** Timestamps declared without decorators. */
const Sheet = new EntitySchema<{ id: number; createdAt: Opt<Date> }>({
  name: 'Sheet',
  properties: { id: { type: 'integer', primary: true }, createdAt: createdAtProperty() },
});

/** A lazy default, and nothing else of this library's. */
@Entity()
class Draft {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string', default: 'draft' })
  @AutoInitDefault()
  state!: Opt<string>;
}

/** The same, for the ORM configured with plain MikroORM options (MikroORM keeps one ORM's config per class). */
@Entity()
class PlainDraft {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string', default: 'draft' })
  @AutoInitDefault()
  state!: Opt<string>;
}

/** No feature of this library: what `entityManager: CoasterEntityManager` alone serves. */
@Entity()
class Label {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;
}

/** `mysql` is MikroORM's MySQL driver against the MariaDB server. */
type Name = 'sqlite' | 'postgresql' | 'mariadb' | 'mysql';
/** Where an ORM connects. */
type Connection = Pick<Options<AbstractSqlDriver>, 'driver' | 'dbName' | 'clientUrl'>;
const names: Name[] = ['sqlite', 'postgresql'];
/** The databases of the entity decorators' configuration checks: also MariaDB through both drivers, when the run has it. */
const decoratorNames: Name[] = inject('mariadbUrl') ? [...names, 'mariadb', 'mysql'] : names;

/** Connection options for a database of its own (a new PostgreSQL or MariaDB database, or in-memory SQLite). */
async function connection(name: Name): Promise<{ options: Connection; drop(): Promise<void> }> {
  if (name === 'sqlite') {
    return { options: { driver: SqliteDriver, dbName: ':memory:' }, drop: async () => undefined };
  }
  if (name === 'mariadb' || name === 'mysql') {
    const dbName = `coaster_config_${randomBytes(6).toString('hex')}`;
    await mariadbAdmin(inject('mariadbUrl'), `create database \`${dbName}\``);
    return {
      options: { driver: name === 'mariadb' ? MariaDbDriver : MySqlDriver, clientUrl: mariadbUrlFor(dbName) },
      drop: () => mariadbAdmin(inject('mariadbUrl'), `drop database if exists \`${dbName}\``),
    };
  }
  const dbName = `coaster_config_${randomBytes(6).toString('hex')}`;
  await postgresAdmin(`create database "${dbName}"`);
  return {
    options: { driver: PostgreSqlDriver, clientUrl: postgresUrlFor(dbName) },
    drop: () => postgresAdmin(`drop database if exists "${dbName}" with (force)`),
  };
}

/** Options that fail before MikroORM connects: no database is needed for them. */
function unconnected(name: Name) {
  return name === 'sqlite' ? { driver: SqliteDriver, dbName: ':memory:' } : { driver: PostgreSqlDriver, clientUrl: postgresUrlFor('postgres') };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup();
  }
});

/** An ORM on a database of its own, schema created; closed and dropped after the test. */
async function open(name: Name, configure: (options: Connection) => Options<AbstractSqlDriver>) {
  const { options, drop } = await connection(name);
  cleanups.push(drop);
  const orm = await MikroORM.init(configure(options));
  cleanups.push(() => orm.close(true));
  await orm.schema.createSchema();
  return orm;
}

describe.each(names)('entityManager: CoasterEntityManager alone, on %s', name => {
  const init = (options: Options<AbstractSqlDriver>) => MikroORM.init({ ...unconnected(name), entityManager: CoasterEntityManager, ...options });

  it.each([
    ['@CreatedAt/@UpdatedAt', Entry],
    ['createdAtProperty()', Sheet],
    ['@AutoInitDefault', Draft],
  ] as const)('rejects at MikroORM.init an entity using %s, naming defineCoasterConfig', async (_, entity) => {
    const init_ = init({ entities: [entity] });
    await expect(init_).rejects.toThrow(CoasterConfigError);
    await expect(init_).rejects.toThrow(CoasterConfigError.entityDecoratorsNotConfigured(entity instanceof EntitySchema ? 'Sheet' : entity.name).message);
    await expect(init_).rejects.toThrow('defineCoasterConfig({...})');
  });

  it('rejects at MikroORM.init a primary relationship, whose table it does not know', async () => {
    await expect(init({ entities: primaryEntities })).rejects.toThrow(
      PrimaryRelationshipError.notConfigured('ParentForPrimary', 'primaryChild').message,
    );
  });

  it('rejects optInTransactions, which MikroORM.init would ignore', async () => {
    await expect(init({ entities: [Label], optInTransactions: true } as Options<AbstractSqlDriver>)).rejects.toThrow(
      CoasterConfigError.optInTransactionsIgnored().message,
    );
  });

  it('serves entities without decorators: failsafeAdd recovers from a conflict, the rows and identity map agree', async () => {
    const orm = await open(name, options => ({ ...options, entities: [Label], entityManager: CoasterEntityManager }));
    const first = await (orm.em.fork() as CoasterEntityManager).failsafeAdd(Object.assign(new Label(), { name: 'news' }));
    const em = orm.em.fork() as CoasterEntityManager;
    expect(em).toBeInstanceOf(CoasterEntityManager);
    const rejected = Object.assign(new Label(), { name: 'news' });
    const found = await em.failsafeAdd(rejected, { name: 'news' });
    expect(found).not.toBe(rejected);
    expect(found.id).toBe(first!.id);
    expect(em.getUnitOfWork().getIdentityMap().values()).toEqual([found]);
    expect(await orm.em.fork().getConnection().execute('select id, name from label')).toEqual([{ id: first!.id, name: 'news' }]);
  });
});

describe.each(decoratorNames)('withEntityDecorators alone (MikroORM\'s EntityManager), on %s', name => {
  const configure = (options: Connection) => withEntityDecorators({ ...options, entities: [Entry] });

  it('completes the columns at discovery: createdAt = updatedAt on insert, naive type on PostgreSQL, milliseconds in UTC on MariaDB', async () => {
    const orm = await open(name, configure);
    expect(orm.em).not.toBeInstanceOf(CoasterEntityManager);
    const em = orm.em.fork();
    const entry = em.create(Entry, { slug: 'a' });
    await em.flush();
    expect(entry.createdAt).toEqual(entry.updatedAt);
    expect((await orm.em.fork().findOneOrFail(Entry, entry.id)).createdAt).toEqual(entry.createdAt);
    const [column] = orm.getMetadata().get(Entry).properties.createdAt.columnTypes;
    expect(column).toBe({ postgresql: 'timestamp(6)', sqlite: 'datetime', mariadb: 'datetime(3)', mysql: 'datetime(3)' }[name]);
    if (name === 'mariadb' || name === 'mysql') {
      expect(orm.config.get('forceUtcTimezone')).toBe(true); // set by the hook: neither it nor timezone was given
    }
    if (name === 'mariadb') {
      // the mariadb connector sets the session's zone from MikroORM's (mysql2 leaves the server's; the columns need neither)
      expect(await em.execute('select @@session.time_zone as zone')).toEqual([{ zone: '+00:00' }]);
    }
    if (name === 'postgresql') {
      const [row] = await em.execute(`select data_type from information_schema.columns where table_name = 'entry' and column_name = 'created_at'`);
      expect(row.data_type).toBe('timestamp without time zone');
    }
  });

  it('refuses a flush that changes createdAt, writing nothing', async () => {
    const orm = await open(name, configure);
    const em = orm.em.fork();
    const entry = em.create(Entry, { slug: 'a' });
    await em.flush();
    const stored = await orm.em.fork().findOneOrFail(Entry, entry.id);
    entry.createdAt = new Date(0);
    entry.hits = 5;
    await expect(em.flush()).rejects.toThrow(TimestampError);
    const row = await orm.em.fork().findOneOrFail(Entry, entry.id);
    expect([row.hits, row.createdAt]).toEqual([0, stored.createdAt]);
  });

  it('refuses em.upsert of a timestamped entity before writing anything, naming CoasterEntityManager', async () => {
    const orm = await open(name, configure);
    const em = orm.em.fork();
    const upsert = em.upsert(Entry, { slug: 'a', hits: 1 });
    await expect(upsert).rejects.toThrow(CoasterConfigError);
    await expect(upsert).rejects.toThrow(CoasterConfigError.upsertNeedsCoasterEntityManager('Entry', em.constructor.name).message);
    await expect(em.upsertMany(Entry, [{ slug: 'b', hits: 1 }])).rejects.toThrow(CoasterConfigError);
    expect(await orm.em.fork().count(Entry)).toBe(0);
    expect(em.getUnitOfWork().getIdentityMap().values()).toEqual([]);
  });

  it('with entityManager: CoasterEntityManager too, upserts move updatedAt and keep createdAt', async () => {
    const orm = await open(name, options => ({ ...configure(options), entityManager: CoasterEntityManager }));
    const inserted = await orm.em.fork().upsert(Entry, { slug: 'a', hits: 1 });
    expect(inserted.createdAt).toEqual(inserted.updatedAt);
    await new Promise(resolve => setTimeout(resolve, 5));
    const em = orm.em.fork();
    const updated = await em.upsert(Entry, { slug: 'a', hits: 2 });
    expect(updated.createdAt).toEqual(inserted.createdAt);
    expect(updated.updatedAt.getTime()).toBeGreaterThan(inserted.updatedAt.getTime());
    const row = await orm.em.fork().findOneOrFail(Entry, { slug: 'a' });
    expect([row.hits, row.createdAt, row.updatedAt]).toEqual([2, inserted.createdAt, updated.updatedAt]);
  });
});

describe.each(decoratorNames)('plain MikroORM options (neither), on %s', name => {
  it('refuses the first insert of a timestamped entity, writing nothing', async () => {
    const orm = await open(name, options => ({ ...options, entities: [Entry] }));
    const em = orm.em.fork();
    em.create(Entry, { slug: 'a' });
    await expect(em.flush()).rejects.toThrow(CoasterConfigError.entityDecoratorsNotConfigured('Entry').message);
    expect(await orm.em.fork().count(Entry)).toBe(0);
  });

  it('refuses the first read of an @AutoInitDefault property', async () => {
    const orm = await open(name, options => ({ ...options, entities: [PlainDraft] }));
    const draft = orm.em.fork().create(PlainDraft, {});
    expect(() => draft.state).toThrow(CoasterConfigError.entityDecoratorsNotConfigured('PlainDraft').message);
  });
});

describe.each(names)('defineCoasterConfig, on %s', name => {
  it('rejects at MikroORM.init options spread over its result that replace what it added', async () => {
    const defined = withPrimaryRelationships(defineCoasterConfig<AbstractSqlDriver>({ ...unconnected(name), entities: [Entry, ...primaryEntities] }));
    await expect(MikroORM.init({ ...defined, subscribers: [] })).rejects.toThrow(
      CoasterConfigError.optionReplaced('@CreatedAt columns', 'subscribers', 'a TimestampSubscriber').message,
    );
    const withoutTimestamps = withPrimaryRelationships(defineCoasterConfig<AbstractSqlDriver>({ ...unconnected(name), entities: primaryEntities }));
    await expect(MikroORM.init({ ...withoutTimestamps, subscribers: [new TimestampSubscriber()] })).rejects.toThrow(
      CoasterConfigError.optionReplaced('Primary relationships', 'subscribers', 'a PrimaryRelationshipSubscriber').message,
    );
    await expect(MikroORM.init({ ...withoutTimestamps, extensions: [Migrator] })).rejects.toThrow(
      CoasterConfigError.optionReplaced('Primary relationships', 'extensions', 'CoasterSchemaGenerator').message,
    );
    await expect(MikroORM.init({ ...withoutTimestamps, extensions: [...(withoutTimestamps.extensions ?? []), Migrator] })).rejects.toThrow(
      CoasterConfigError.optionReplaced('Primary relationships', 'extensions', 'CoasterMigrator, after any Migrator').message,
    );
  });

  it("rejects at MikroORM.init a Migrator of the application's that CoasterMigrator would replace, takes one extending CoasterMigrator", async () => {
    class AuditedMigrator extends Migrator {
      static override register(orm: MikroORM): void {
        orm.config.registerExtension('@mikro-orm/migrator', () => new AuditedMigrator(orm.em as EntityManager));
      }
    }
    const message = CoasterConfigError.migratorNotCoasterMigrator('AuditedMigrator').message;
    expect(message).toContain('Make AuditedMigrator extend CoasterMigrator');
    const options = (extensions: Options['extensions']) =>
      withPrimaryRelationships(defineCoasterConfig<AbstractSqlDriver>({ ...unconnected(name), entities: primaryEntities, extensions }));
    await expect(MikroORM.init(options([AuditedMigrator]))).rejects.toThrow(message);
    const spread = options([]);
    await expect(MikroORM.init({ ...spread, extensions: [...(spread.extensions ?? []), AuditedMigrator] })).rejects.toThrow(message);
    // an ORM without primary relationships too: CoasterMigrator would replace it all the same
    await expect(
      MikroORM.init(withPrimaryRelationships(defineCoasterConfig<AbstractSqlDriver>({ ...unconnected(name), entities: [Label], extensions: [AuditedMigrator] }))),
    ).rejects.toThrow(message);

    class AuditedCoasterMigrator extends CoasterMigrator {}
    const own = options([Migrator, AuditedCoasterMigrator]);
    expect(own.extensions).toEqual([Migrator, AuditedCoasterMigrator, CoasterSchemaGenerator]);
    const orm = await open(name, connection => ({ ...own, ...connection }));
    expect(orm.migrator).toBeInstanceOf(AuditedCoasterMigrator);
  });

  it('configures inserts, timestamps, lazy defaults and upserts, and nothing of primary relationships', async () => {
    const orm = await open(name, options => defineCoasterConfig({ ...options, entities: [Entry, Draft] }));
    expect(orm.em).toBeInstanceOf(CoasterEntityManager);
    expect([...orm.config.get('subscribers')].some(s => s instanceof PrimaryRelationshipSubscriber)).toBe(false);
    expect(orm.config.get('extensions')).not.toContain(CoasterSchemaGenerator);
    expect(orm.config.get('migrations').generator).toBeUndefined();
    const em = orm.em.fork() as CoasterEntityManager;
    const draft = em.create(Draft, {});
    expect(draft.state).toBe('draft');
    const entry = await em.upsert(Entry, { slug: 'a' });
    expect(entry.createdAt).toEqual(entry.updatedAt);
    await em.flush();
    expect(await orm.em.fork().getConnection().execute('select state from draft')).toEqual([{ state: 'draft' }]);
    expect(await orm.em.fork().count(Entry)).toBe(1);
  });

  it('wrapped in withPrimaryRelationships, configures primary relationships too, in either order, each feature once', async () => {
    const inside = defineCoasterConfig<AbstractSqlDriver>(withPrimaryRelationships({ ...unconnected(name), entities: [Entry, ...primaryEntities] }));
    const outside = withPrimaryRelationships(defineCoasterConfig<AbstractSqlDriver>({ ...unconnected(name), entities: [Entry, ...primaryEntities] }));
    for (const options of [inside, outside]) {
      expect(defineCoasterConfig(options)).toBe(options);
      expect(withPrimaryRelationships(options)).toBe(options);
      expect([...(options.subscribers ?? [])].map(s => s.constructor.name).sort()).toEqual(['PrimaryRelationshipSubscriber', 'TimestampSubscriber']);
      expect(options.extensions).toEqual([CoasterSchemaGenerator, CoasterMigrator]);
      expect(options.migrations?.generator).toBeUndefined();
      expect(options.entities?.map(e => (e instanceof EntitySchema ? e.meta.className : (e as Function).name))).toContain('ParentForPrimary_primaryChild');
    }
    const orm = await open(name, options => withPrimaryRelationships(defineCoasterConfig({ ...options, entities: [Entry, ...primaryEntities] })));
    const em = orm.em.fork();
    const parent = em.create(ParentForPrimary, { name: 'parent' });
    parent.primaryChild = em.create(ChildForPrimary, { name: 'child', parent });
    await em.flush();
    const rows = await orm.em.fork().execute('select parent_for_primary_id, child_for_primary_id from parent_for_primary_child_for_primary_primary');
    expect(rows).toEqual([{ parent_for_primary_id: parent.id, child_for_primary_id: parent.primaryChild.id }]);
  });
});
