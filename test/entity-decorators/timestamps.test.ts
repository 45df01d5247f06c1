import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Entity, EntitySchema, MikroORM, PrimaryKey, Property, Unique, defineEntity, p, type Opt } from '@mikro-orm/core';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { Migrator } from '@mikro-orm/migrations';
import { MySqlDriver } from '@mikro-orm/mysql';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { afterEach, describe, expect, test } from 'vitest';
import {
  CreatedAt,
  TimestampError,
  Timestamped,
  UpdatedAt,
  createdAtProperty,
  defineCoasterConfig,
  updatedAtProperty,
  type CoasterOptions,
} from '../../src/index.js';
import { allDrivers, closeOrm, type TestDatabase, type TestOrm } from '../support/databases.js';

/** Timestamps with the defaults; one decorator below `@Property` (runs first), one above (runs last). */
@Entity()
class Article {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  title!: string;

  @Property({ type: 'integer', default: 0 })
  views: Opt<number> = 0;

  @Property({ fieldName: 'made_at', comment: 'insert time' })
  @CreatedAt()
  createdAt!: Opt<Date>;

  @UpdatedAt()
  @Property({ comment: 'last update time' })
  updatedAt!: Opt<Date>;
}

/** Naive columns: `timestamp` without time zone on PostgreSQL. */
@Entity()
class LogLine {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  text!: string;

  @CreatedAt({ timezone: false })
  createdAt!: Opt<Date>;

  @UpdatedAt({ timezone: false })
  updatedAt!: Opt<Date>;
}

@Entity()
class Post extends Timestamped {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  body!: string;
}

interface Page {
  id: number;
  path: string;
  createdAt: Opt<Date>;
  updatedAt: Opt<Date>;
}

const PageSchema = new EntitySchema<Page>({
  name: 'Page',
  properties: {
    id: { type: 'integer', primary: true },
    path: { type: 'string' },
    createdAt: createdAtProperty(),
    updatedAt: updatedAtProperty(),
  },
});

const Memo = defineEntity({
  name: 'Memo',
  properties: {
    id: p.integer().primary(),
    text: p.string(),
    createdAt: createdAtProperty(),
    updatedAt: updatedAtProperty({ timezone: false }),
  },
});

const entities = [Article, LogLine, Post, PageSchema, Memo];

/** Timestamps with microseconds: `datetime(6)` on MariaDB. */
const Tick = new EntitySchema<{ id: number; createdAt: Opt<Date>; updatedAt: Opt<Date> }>({
  name: 'Tick',
  properties: {
    id: { type: 'integer', primary: true },
    createdAt: { ...createdAtProperty(), length: 6 },
    updatedAt: { ...updatedAtProperty({ timezone: false }), length: 6 },
  },
});

/** Timestamps declared with fewer fractional digits than milliseconds. */
const Coarse = new EntitySchema<{ id: number; createdAt: Opt<Date> }>({
  name: 'Coarse',
  properties: { id: { type: 'integer', primary: true }, createdAt: { ...createdAtProperty(), length: 2 } },
});

/** No timestamp column. */
const Plain = new EntitySchema<{ id: number }>({ name: 'Plain', properties: { id: { type: 'integer', primary: true } } });

/** Resolves once the clock has moved past `instant`, so that a timestamp taken next is strictly later. */
async function clockPast(instant: Date): Promise<void> {
  while (Date.now() <= instant.getTime()) {
    await sleep(1);
  }
}

/** The stored values of a row's timestamp columns as milliseconds since the epoch, read by SQL. */
async function storedMillis(orm: TestOrm, db: TestDatabase, table: string, columns: [string, string], id: number) {
  const em = orm.em.fork();
  const [created, updated] = columns;
  if (db.name === 'sqlite') {
    const [row] = await em.execute(
      `select ${created} as created, ${updated} as updated, typeof(${created}) as kind from ${table} where id = ?`,
      [id],
    );
    expect(row.kind).toBe('integer');
    return { createdAt: row.created, updatedAt: row.updated };
  }
  // MariaDB: microseconds from the epoch's wall-clock time, which does not depend on the session's time zone
  // (unix_timestamp() would read a datetime in the session's zone)
  const millis = (column: string) =>
    db.name === 'postgresql' ? `(extract(epoch from ${column}) * 1000)::float8` : `timestampdiff(microsecond, '1970-01-01', ${column}) div 1000`;
  const [row] = await em.execute(`select ${millis(created)} as created, ${millis(updated)} as updated from ${table} where id = ?`, [id]);
  return { createdAt: Number(row.created), updatedAt: Number(row.updated) };
}

/** The wall-clock time a row's column holds, to the millisecond, in ISO 8601 without a zone. */
async function storedWallClock(orm: TestOrm, db: TestDatabase, table: string, column: string, id: number): Promise<string> {
  const format = db.name === 'postgresql' ? `to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS.MS')` : `date_format(${column}, '%Y-%m-%dT%H:%i:%s.%f')`;
  const [row] = await orm.em.fork().execute(`select ${format} as wall from ${table} where id = ?`, [id]);
  return String(row.wall).slice(0, 23);
}

/** Whether `db` is MariaDB, through either of MikroORM's drivers. */
const isMariadb = (db: TestDatabase) => db.name === 'mariadb' || db.name === 'mysql';

/** A raw connection of either MariaDB connector (`mariadb/callback`, mysql2), as knex's `pool.afterCreate` gets it. */
interface RawMariadbConnection {
  query(sql: string, callback: (error: Error | null) => void): void;
}

/**
 * Options whose every pooled connection sets its session's time zone to `+05:00` (after the driver's own
 * settings: the mariadb connector sets `+00:00` from MikroORM's time zone), as a server or an application
 * in another zone would.
 */
const sessionAtPlusFive = {
  pool: {
    afterCreate: (connection: RawMariadbConnection, done: (error: Error | null, connection: RawMariadbConnection) => void) =>
      connection.query(`set time_zone = '+05:00'`, error => done(error, connection)),
  },
};

let orm: TestOrm | undefined;
afterEach(async () => {
  await closeOrm(orm);
  orm = undefined;
});

describe.each(allDrivers)('timestamps on $name', db => {
  test('both are set on insert, equal, and on the entity right after flush', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const article = em.create(Article, { title: 'hello' });
    expect(article.createdAt).toBeUndefined();
    const before = Date.now();
    await em.flush();

    expect(article.createdAt).toBeInstanceOf(Date);
    expect(article.createdAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(article.updatedAt).toEqual(article.createdAt);
    expect(article.updatedAt).not.toBe(article.createdAt);

    const loaded = await orm.em.fork().findOneOrFail(Article, article.id);
    expect(loaded.createdAt).toEqual(article.createdAt);
    expect(loaded.updatedAt).toEqual(article.createdAt);
  });

  test('updatedAt moves forward on every updating flush while createdAt stays', async () => {
    let log;
    ({ orm, log } = await db.init({ entities }));
    const em = orm.em.fork();
    const article = em.create(Article, { title: 'hello' });
    await em.flush();
    const { createdAt, updatedAt } = article;

    await clockPast(updatedAt);
    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]); // nothing changed: no update, no bump

    article.views = 1;
    await em.flush();
    expect(article.updatedAt.getTime()).toBeGreaterThan(updatedAt.getTime());
    expect(article.createdAt).toEqual(createdAt);
    const firstUpdate = article.updatedAt;

    await clockPast(firstUpdate);
    article.views = 2;
    await em.flush();
    expect(article.updatedAt.getTime()).toBeGreaterThan(firstUpdate.getTime());

    const loaded = await orm.em.fork().findOneOrFail(Article, article.id);
    expect(loaded.createdAt).toEqual(createdAt);
    expect(loaded.updatedAt).toEqual(article.updatedAt);
  });

  test('a loaded entity flushes nothing until changed, then the change and updatedAt', async () => {
    let log;
    ({ orm, log } = await db.init({ entities }));
    await orm.em.fork().insert(Article, { title: 'hello' });
    const em = orm.em.fork();
    const article = await em.findOneOrFail(Article, { title: 'hello' });
    const { createdAt, updatedAt } = article;
    await clockPast(updatedAt);

    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]);

    article.views = 1;
    await em.flush();
    const quote = db.name === 'postgresql' ? '"' : '`';
    expect(log.queries.map(query => query.replaceAll(quote, '"'))).toEqual([
      'begin',
      'update "article" set "views" = ?, "updated_at" = ? where "id" = ?',
      'commit',
    ]);
    expect(article.createdAt).toEqual(createdAt);
    expect(article.updatedAt.getTime()).toBeGreaterThan(updatedAt.getTime());
  });

  test('changing createdAt of a stored row fails at flush and writes nothing', async () => {
    let log;
    ({ orm, log } = await db.init({ entities }));
    const em = orm.em.fork();
    const article = em.create(Article, { title: 'hello' });
    await em.flush();
    const { createdAt } = article;

    article.createdAt = new Date(0);
    article.views = 5;
    log.clear();
    const error = await em.flush().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimestampError);
    expect((error as TimestampError).message).toContain('Article.createdAt is set when the row is inserted and never changes');
    expect(log.queries).toEqual([]);
    expect((await orm.em.fork().findOneOrFail(Article, article.id)).views).toBe(0);

    article.createdAt = createdAt; // restored: the other change flushes
    await em.flush();
    const loaded = await orm.em.fork().findOneOrFail(Article, article.id);
    expect(loaded.views).toBe(5);
    expect(loaded.createdAt).toEqual(createdAt);
  });

  test('rows inserted by raw SQL or em.insert get both from the column defaults', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const before = Date.now();
    await em.execute(`insert into article (title) values ('raw')`);
    await em.insert(Article, { title: 'native' });
    await em.execute(`insert into log_line (text) values ('raw')`);
    const after = Date.now();

    const rows = [...(await em.find(Article, {}, { orderBy: { id: 'asc' } })), ...(await em.find(LogLine, {}))];
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row.createdAt).toBeInstanceOf(Date);
      expect(row.createdAt.getTime()).toBeGreaterThanOrEqual(before);
      expect(row.createdAt.getTime()).toBeLessThanOrEqual(after);
      expect(row.updatedAt).toEqual(row.createdAt);
    }
  });

  test('the columns are NOT NULL with a default, and aware or naive as declared', async () => {
    ({ orm } = await db.init({ entities }));
    const sql = await orm.schema.getCreateSchemaSQL({ wrap: false });
    if (db.name === 'postgresql') {
      expect(sql).toContain('"made_at" timestamptz not null default current_timestamp, ');
      expect(sql).toContain(`"updated_at" timestamp(6) not null default timezone('utc'::text, current_timestamp)`);
    } else if (isMariadb(db)) {
      // milliseconds, and UTC whatever the time zone of the session that inserts
      expect(sql).toContain("`made_at` datetime(3) not null default utc_timestamp(3) comment 'insert time', ");
      expect(sql).toContain('`created_at` datetime(3) not null default utc_timestamp(3), `updated_at` datetime(3) not null default utc_timestamp(3)');
    } else {
      const now = `(cast(round((julianday('now') - 2440587.5) * 86400000) as integer))`;
      expect(sql).toContain(`\`made_at\` datetime not null default ${now}, `);
      expect(sql).toContain(`\`updated_at\` datetime not null default ${now}`);
    }
    expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe('');
  });

  test('aware and naive columns store the instant that was written', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const article = em.create(Article, { title: 'hello' });
    const line = em.create(LogLine, { text: 'hello' });
    await em.flush();

    const stored = await storedMillis(orm, db, 'article', ['made_at', 'updated_at'], article.id);
    expect(stored).toEqual({ createdAt: article.createdAt.getTime(), updatedAt: article.updatedAt.getTime() });
    if (db.name !== 'sqlite') {
      // a naive column (every column on MariaDB) holds UTC wall-clock time
      expect(await storedWallClock(orm, db, 'log_line', 'created_at', line.id)).toBe(line.createdAt.toISOString().slice(0, 23));
      if (isMariadb(db)) {
        expect(await storedWallClock(orm, db, 'article', 'made_at', article.id)).toBe(article.createdAt.toISOString().slice(0, 23));
      }
    } else {
      expect(await storedMillis(orm, db, 'log_line', ['created_at', 'updated_at'], line.id)).toEqual({
        createdAt: line.createdAt.getTime(),
        updatedAt: line.updatedAt.getTime(),
      });
    }
  });

  test('values read back as the same instants when the process time zone is not UTC', async () => {
    const timezone = process.env.TZ;
    process.env.TZ = 'Asia/Kolkata';
    try {
      ({ orm } = await db.init({
        entities,
        // and a server session time zone that is neither UTC nor the process's
        ...(db.name === 'postgresql' ? { driverOptions: { connection: { options: '-c TimeZone=America/New_York' } } } : {}),
        ...(isMariadb(db) ? sessionAtPlusFive : {}),
      }));
      const em = orm.em.fork();
      expect(new Date(2026, 0, 1).getTimezoneOffset()).toBe(-330);
      if (db.name === 'postgresql') {
        expect(await em.execute('show timezone')).toEqual([{ TimeZone: 'America/New_York' }]);
      }
      if (isMariadb(db)) {
        expect(await em.execute('select @@session.time_zone as zone')).toEqual([{ zone: '+05:00' }]);
      }
      const before = Date.now();
      const article = em.create(Article, { title: 'hello' });
      const line = em.create(LogLine, { text: 'hello' });
      await em.flush();
      await em.execute(`insert into log_line (text) values ('raw')`);
      const after = Date.now();

      const fork = orm.em.fork();
      expect((await fork.findOneOrFail(Article, article.id)).createdAt).toEqual(article.createdAt);
      expect((await fork.findOneOrFail(LogLine, line.id)).createdAt).toEqual(line.createdAt);
      const raw = await fork.findOneOrFail(LogLine, { text: 'raw' });
      expect(raw.createdAt.getTime()).toBeGreaterThanOrEqual(before);
      expect(raw.createdAt.getTime()).toBeLessThanOrEqual(after);
      if (db.name !== 'sqlite') {
        // UTC wall-clock time in the naive columns, from the application and from the column default alike
        expect(await storedWallClock(orm, db, 'log_line', 'created_at', line.id)).toBe(line.createdAt.toISOString().slice(0, 23));
        expect(await storedWallClock(orm, db, 'log_line', 'created_at', raw.id)).toBe(raw.createdAt.toISOString().slice(0, 23));
      }
    } finally {
      process.env.TZ = timezone;
      if (timezone === undefined) {
        delete process.env.TZ;
      }
    }
  });

  test('em.upsert sets both on insert and moves only updatedAt on conflict', async () => {
    let log;
    ({ orm, log } = await db.init({ entities }));
    const inserted = await orm.em.fork().upsert(Article, { title: 'hello', views: 1 });
    const insert = 'insert into "article" ("made_at", "title", "updated_at", "views") values (?, ?, ?, ?) ';
    expect(log.queries.map(query => query.replaceAll('`', '"'))).toEqual(
      isMariadb(db)
        ? [
            // no RETURNING on MikroORM's MySQL platforms: MikroORM reads the row back, with the stored createdAt
            `${insert}on duplicate key update "views" = values("views"), "updated_at" = values("updated_at")`,
            'select "a0"."id", "a0"."views", "a0"."made_at", "a0"."updated_at" from "article" as "a0" where "a0"."title" = ? limit ?',
          ]
        : [
            `${insert}on conflict ("title") do update set "views" = excluded."views", "updated_at" = excluded."updated_at" ` +
              'returning "id", "views", "made_at", "updated_at"',
          ],
    );
    expect(inserted.createdAt).toBeInstanceOf(Date);
    expect(inserted.updatedAt).toEqual(inserted.createdAt);

    await clockPast(inserted.updatedAt);
    const merged = await orm.em.fork().upsert(Article, { title: 'hello', views: 2 });
    expect(merged.id).toBe(inserted.id);
    expect(merged.views).toBe(2);
    expect(merged.createdAt).toEqual(inserted.createdAt);
    expect(merged.updatedAt.getTime()).toBeGreaterThan(inserted.updatedAt.getTime());

    const loaded = await orm.em.fork().findOneOrFail(Article, inserted.id);
    expect(loaded.createdAt).toEqual(inserted.createdAt);
    expect(loaded.updatedAt).toEqual(merged.updatedAt);
  });

  test('em.upsertMany and em.upsert of an entity instance handle them the same way', async () => {
    ({ orm } = await db.init({ entities }));
    const [a, b] = await orm.em.fork().upsertMany(Article, [{ title: 'a' }, { title: 'b' }]);
    for (const article of [a, b]) {
      expect(article.createdAt).toBeInstanceOf(Date);
      expect(article.updatedAt).toEqual(article.createdAt);
    }

    await clockPast(a.updatedAt);
    const [a2] = await orm.em.fork().upsertMany(Article, [{ title: 'a', views: 3 }]);
    expect(a2.createdAt).toEqual(a.createdAt);
    expect(a2.updatedAt.getTime()).toBeGreaterThan(a.updatedAt.getTime());

    const entity = new Article();
    entity.title = 'b';
    entity.views = 4;
    const b2 = await orm.em.fork().upsert(entity);
    expect(b2.views).toBe(4);
    expect(b2.createdAt).toEqual(b.createdAt);
    expect(b2.updatedAt.getTime()).toBeGreaterThan(b.updatedAt.getTime());
  });

  test('em.upsert of a row already in the identity map does not touch createdAt', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const article = em.create(Article, { title: 'hello' });
    await em.flush();
    const { createdAt } = article;

    const same = await em.upsert(Article, { id: article.id, title: 'hello', views: 7 });
    expect(same).toBe(article);
    expect(article.createdAt).toEqual(createdAt);
    await em.flush(); // no TimestampError: createdAt was left alone
    expect((await orm.em.fork().findOneOrFail(Article, article.id)).views).toBe(7);
  });

  test('nativeUpdate and the query builder do not bump updatedAt unless told to', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const article = em.create(Article, { title: 'hello' });
    await em.flush();
    await clockPast(article.updatedAt);

    await em.nativeUpdate(Article, article.id, { views: 1 });
    await em.createQueryBuilder(Article).update({ views: 2 }).where({ id: article.id }).execute();
    const untouched = await orm.em.fork().findOneOrFail(Article, article.id);
    expect(untouched.views).toBe(2);
    expect(untouched.updatedAt).toEqual(article.updatedAt);

    const told = new Date('2030-01-01T12:34:56.999Z'); // the milliseconds are kept, not truncated
    await em.nativeUpdate(Article, article.id, { views: 3, updatedAt: told });
    expect((await orm.em.fork().findOneOrFail(Article, article.id)).updatedAt).toEqual(told);
  });

  test('entities extending Timestamped or defined by EntitySchema or defineEntity get both', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const post = em.create(Post, { body: 'hi' });
    const page = em.create<Page>('Page', { path: '/' });
    const memo = em.create(Memo, { text: 'hi' });
    await em.flush();
    for (const entity of [post, page, memo]) {
      expect(entity.createdAt).toBeInstanceOf(Date);
      expect(entity.updatedAt).toEqual(entity.createdAt);
    }
    const meta = orm.getMetadata().get('Post');
    expect(meta.properties.createdAt.fieldNames).toEqual(['created_at']);
    expect(meta.properties.updatedAt.onUpdate).toBeTypeOf('function');
  });

  test('findOrCreate and failsafeAdd insert them like any other insert', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const found = await em.findOrCreate(Article, { title: 'a' });
    const added = await em.failsafeAdd(em.create(Article, { title: 'b' }), { title: 'b' });
    for (const article of [found, added]) {
      expect(article.createdAt).toBeInstanceOf(Date);
      expect(article.updatedAt).toEqual(article.createdAt);
    }
  });

  test('migration:create emits the columns, and the migration creates them with nothing left to diff', async () => {
    const path = join('.tmp', `timestamps-${randomBytes(6).toString('hex')}`);
    try {
      ({ orm } = await db.init({ entities: [LogLine], extensions: [Migrator], migrations: { path, emit: 'cjs', snapshot: false } }));
      await orm.schema.dropSchema();
      const { code } = await orm.migrator.createMigration();
      const column = {
        sqlite: "`created_at` datetime not null default (cast(round((julianday('now') - 2440587.5) * 86400000) as integer))",
        postgresql: `"created_at" timestamp(6) not null default timezone('utc'::text, current_timestamp)`,
        mariadb: '`created_at` datetime(3) not null default utc_timestamp(3)',
        mysql: '`created_at` datetime(3) not null default utc_timestamp(3)',
      }[db.name];
      expect(code.replaceAll('\\`', '`')).toContain(column); // the backticks of MySQL identifiers are escaped in the file
      await orm.migrator.up();
      expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe('');
      const em = orm.em.fork();
      const line = em.create(LogLine, { text: 'migrated' });
      await em.flush();
      expect((await orm.em.fork().findOneOrFail(LogLine, line.id)).createdAt).toEqual(line.createdAt);
    } finally {
      await rm(path, { recursive: true, force: true });
    }
  });
});

describe.each(allDrivers.filter(isMariadb))('timestamps on MariaDB only, through $name', db => {
  test("timezone: '+00:00' is UTC, a given length is kept, and a session in another zone stores UTC", async () => {
    ({ orm } = await db.init({ entities: [Tick], timezone: '+00:00', ...sessionAtPlusFive }));
    expect(orm.config.get('forceUtcTimezone')).toBeUndefined(); // the application chose a zone: left alone
    expect(orm.em.getPlatform().getTimezone()).toBe('+00:00');
    const sql = await orm.schema.getCreateSchemaSQL({ wrap: false });
    expect(sql).toContain('`created_at` datetime(6) not null default utc_timestamp(6), `updated_at` datetime(6) not null default utc_timestamp(6)');
    expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe('');

    const em = orm.em.fork();
    const tick = em.create(Tick, {});
    await em.flush();
    const before = Date.now();
    await em.execute('insert into tick () values ()');
    const after = Date.now();
    const fork = orm.em.fork();
    expect((await fork.findOneOrFail(Tick, tick.id)).createdAt).toEqual(tick.createdAt);
    expect(await storedWallClock(orm, db, 'tick', 'created_at', tick.id)).toBe(tick.createdAt.toISOString().slice(0, 23));
    const raw = await fork.findOneOrFail(Tick, { id: { $ne: tick.id } });
    // the default is UTC to the microsecond; MikroORM reads milliseconds
    expect(raw.createdAt.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(raw.createdAt.getTime()).toBeLessThanOrEqual(after);
  });

  test('a column created by an earlier version (datetime, current_timestamp) is modified by the next diff', async () => {
    ({ orm } = await db.init({ entities: [LogLine] }));
    await orm.em.fork().execute('alter table log_line modify created_at datetime not null default current_timestamp');
    expect((await orm.schema.getUpdateSchemaSQL({ wrap: false })).trim()).toBe(
      'alter table `log_line` modify `created_at` datetime(3) not null default utc_timestamp(3);',
    );
    await orm.schema.updateSchema();
    expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe('');
  });
});

describe('timestamp configuration checks at MikroORM.init (no connection)', () => {
  /** Initialises an ORM that does not connect; closed at once when init succeeds. */
  async function initUnconnected(options: CoasterOptions) {
    const result = await MikroORM.init(defineCoasterConfig({ dbName: 'unused', connect: false, ...options })).catch((e: unknown) => e);
    if (result instanceof MikroORM) {
      await result.close();
    }
    return result;
  }

  test('a naive column needs MikroORM to write dates in UTC (PostgreSQL)', async () => {
    const error = await initUnconnected({ driver: PostgreSqlDriver, forceUtcTimezone: false, entities: [LogLine] });
    expect(error).toBeInstanceOf(TimestampError);
    expect((error as TimestampError).message).toContain('LogLine.createdAt is a timestamp column without time zone');
    // '+00:00' (MySQL's spelling) is UTC too
    const orm = await initUnconnected({ driver: PostgreSqlDriver, forceUtcTimezone: false, timezone: '+00:00', entities: [LogLine] });
    expect(orm).toBeInstanceOf(MikroORM);
    expect((orm as MikroORM).getMetadata().get('LogLine').properties.createdAt.columnTypes).toEqual(['timestamp(6)']);
  });

  test.each([
    ['mariadb', MariaDbDriver],
    ['mysql', MySqlDriver],
  ] as const)('on MariaDB/MySQL (%s driver), a zone other than UTC is refused, UTC accepted, none set to UTC', async (_, driver) => {
    for (const zone of [{ timezone: '+05:00' }, { timezone: 'local' }, { forceUtcTimezone: false }]) {
      const error = await initUnconnected({ driver, ...zone, entities: [Article] });
      expect(error).toBeInstanceOf(TimestampError);
      expect((error as TimestampError).message).toBe(
        TimestampError.mysqlColumnNeedsUtc('Article', 'createdAt', 'timezone' in zone ? zone.timezone : undefined).message,
      );
    }
    for (const [zone, expected] of [
      [{ timezone: '+00:00' }, '+00:00'],
      [{ timezone: 'Z' }, 'Z'],
      [{ forceUtcTimezone: true }, 'Z'],
      [{}, 'Z'],
    ] as const) {
      const orm = (await initUnconnected({ driver, ...zone, entities: [Article] })) as MikroORM;
      expect(orm.em.getPlatform().getTimezone()).toBe(expected);
      expect(orm.getMetadata().get('Article').properties.createdAt.columnTypes).toEqual(['datetime(3)']);
    }
    // an ORM without timestamp columns keeps MikroORM's default (the process's zone)
    const plain = (await initUnconnected({ driver, entities: [Plain] })) as MikroORM;
    expect(plain.em.getPlatform().getTimezone()).toBeUndefined();
    expect(plain.config.get('forceUtcTimezone')).toBeUndefined();
  });

  test.each([
    ['postgresql', PostgreSqlDriver],
    ['mariadb', MariaDbDriver],
    ['mysql', MySqlDriver],
  ] as const)('a length below milliseconds is refused on %s', async (_, driver) => {
    const error = await initUnconnected({ driver, entities: [Coarse] });
    expect(error).toBeInstanceOf(TimestampError);
    expect((error as TimestampError).message).toBe(TimestampError.precisionBelowMilliseconds('Coarse', 'createdAt', 2).message);
  });
});
