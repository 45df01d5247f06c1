import { randomUUID } from 'node:crypto';
import { Entity, ManyToOne, PrimaryKey, Property, sql, wrap, type Opt } from '@mikro-orm/core';
import { afterEach, describe, expect, test } from 'vitest';
import { AutoInitDefault, AutoInitDefaultError } from '../../src/index.js';
import { closeOrm, databases, type TestOrm } from '../support/databases.js';

/** coaster's `DefaultValue` model: `value` defaults to 'default' on first access. */
@Entity()
class DefaultValue {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string', length: 100, default: 'default' })
  @AutoInitDefault()
  value!: Opt<string>;

  /** Set by the decorator's argument, which wins over `default`; the decorator runs last here. */
  @AutoInitDefault(() => 'from decorator')
  @Property({ type: 'string', default: 'from option' })
  label!: Opt<string>;

  /** No `default`: the `onCreate` callback is the default. */
  @Property({ type: 'string', onCreate: (entity: DefaultValue) => `created for ${entity.value}` })
  @AutoInitDefault()
  origin!: Opt<string>;

  /** Nothing to initialise it with: reads undefined, and the column is nullable. */
  @Property({ type: 'string', nullable: true })
  @AutoInitDefault()
  note?: string;

  constructor(value?: string) {
    if (value !== undefined) {
      this.value = value;
    }
  }
}

/** The entities each factory call was made for, to prove it runs once per instance. */
const uuidCalls: object[] = [];

/** A UUID primary key known before the insert. */
@Entity()
class Document {
  @PrimaryKey({ type: 'uuid' })
  @AutoInitDefault((entity: object) => {
    uuidCalls.push(entity);
    return randomUUID();
  })
  id!: Opt<string>;

  @Property({ type: 'string' })
  title!: string;
}

/** References a Document, to use its key before either is inserted. */
@Entity()
class Attachment {
  @PrimaryKey({ type: 'uuid' })
  @AutoInitDefault(() => randomUUID())
  id!: Opt<string>;

  @ManyToOne(() => Document)
  document!: Document;
}

/** A UUID key with no default at all. */
@Entity()
class Note {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'string' })
  text!: string;
}

/** A SQL default cannot be computed before the insert. Not discovered: reading it is enough. */
class Visit {
  @Property({ type: 'datetime', defaultRaw: 'current_timestamp' })
  @AutoInitDefault()
  seenAt!: Date;

  @Property({ type: 'datetime', default: sql.now() })
  @AutoInitDefault()
  leftAt!: Date;
}

const entities = [DefaultValue, Document, Attachment, Note];

let orm: TestOrm | undefined;
afterEach(async () => {
  await closeOrm(orm);
  orm = undefined;
});

test('a property whose default is SQL throws when read before the insert', () => {
  const error = (() => new Visit().seenAt) as () => unknown;
  expect(error).toThrow(AutoInitDefaultError);
  expect(error).toThrow('Visit.seenAt has a SQL default (current_timestamp), which only the database can compute');
  expect(() => new Visit().leftAt).toThrow('Visit.leftAt has a SQL default (current_timestamp)');
});

describe.each(databases)('AutoInitDefault on $name', db => {
  test('test_auto_init_default: defaults on first access, explicit values kept, both persisted', async () => {
    ({ orm } = await db.init({ entities }));
    const d1 = new DefaultValue();
    const d2 = new DefaultValue('not-default');
    const d3 = new DefaultValue();
    const d4 = new DefaultValue('not-default');

    expect(d1.value).toBe('default');
    expect(d1.value).toBe('default'); // also on second access
    expect(d2.value).toBe('not-default');
    expect(d3.value).toBe('default');
    expect(d4.value).toBe('not-default');
    d3.value = 'changed';
    d4.value = 'changed';
    expect(d3.value).toBe('changed');
    expect(d4.value).toBe('changed');

    const em = orm.em.fork();
    em.persist([d1, d2, d3, d4]);
    await em.flush();

    const stored = await orm.em.fork().find(DefaultValue, {}, { orderBy: { id: 'asc' } });
    expect(stored.map(d => [d.id, d.value])).toEqual([
      [d1.id, 'default'],
      [d2.id, 'not-default'],
      [d3.id, 'changed'],
      [d4.id, 'changed'],
    ]);
  });

  test('the default is the decorator argument, else `default`, else `onCreate`, else none', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const entity = em.create(DefaultValue, {});
    expect(entity.label).toBe('from decorator');
    expect(entity.value).toBe('default');
    expect(entity.origin).toBe('created for default');
    expect(entity.note).toBeUndefined();
    await em.flush();

    const [row] = await orm.em.fork().execute(`select value, label, origin, note from default_value where id = ?`, [entity.id]);
    expect(row).toEqual({ value: 'default', label: 'from decorator', origin: 'created for default', note: null });
  });

  test('values never read are initialised at flush, and em.create data is never replaced', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const unread = em.create(DefaultValue, {});
    const given = em.create(DefaultValue, { value: 'given', label: 'given', origin: 'given', note: 'given' });
    await em.flush();

    const fork = orm.em.fork();
    expect(wrap(await fork.findOneOrFail(DefaultValue, unread.id)).toObject()).toMatchObject({
      value: 'default',
      label: 'from decorator',
      origin: 'created for default',
      note: null,
    });
    expect(wrap(await fork.findOneOrFail(DefaultValue, given.id)).toObject()).toMatchObject({
      value: 'given',
      label: 'given',
      origin: 'given',
      note: 'given',
    });
  });

  test('loaded entities keep the stored value, also when it was not selected', async () => {
    let log;
    ({ orm, log } = await db.init({ entities }));
    await orm.em.fork().execute(`insert into default_value (value, label, origin) values ('stored', 'stored', 'stored')`);
    const [{ id }] = await orm.em.fork().execute(`select id from default_value`);

    const loaded = await orm.em.fork().findOneOrFail(DefaultValue, id);
    expect([loaded.value, loaded.label, loaded.origin, loaded.note]).toEqual(['stored', 'stored', 'stored', null]);

    const em = orm.em.fork();
    // a partial load: the unselected properties are not initialised
    const partial = (await em.findOneOrFail(DefaultValue, id, { fields: ['id'] })) as DefaultValue;
    expect(partial.value).toBeUndefined();
    expect(partial.label).toBeUndefined();
    expect(em.getReference(DefaultValue, id + 1).value).toBeUndefined();
    log.clear();
    await em.flush();
    expect(log.queries).toEqual([]);
    expect((await orm.em.fork().findOneOrFail(DefaultValue, id)).value).toBe('stored');
  });

  test('a UUID primary key is known before the insert, stable, and inserted as is', async () => {
    ({ orm } = await db.init({ entities }));
    const em = orm.em.fork();
    const doc = em.create(Document, { title: 'draft' });
    const id = doc.id;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(doc.id).toBe(id); // second read
    expect(uuidCalls.filter(entity => entity === doc)).toHaveLength(1);

    const url = `/documents/${doc.id}`;
    expect(em.getReference(Document, id)).toBe(doc);
    const attachment = em.create(Attachment, { document: em.getReference(Document, id) });
    const other = new Document();
    other.title = 'new';
    const otherId = other.id;
    em.persist(other);
    await em.flush();

    expect(doc.id).toBe(id);
    expect(url).toBe(`/documents/${id}`);
    const fork = orm.em.fork();
    expect((await fork.findOneOrFail(Document, id)).title).toBe('draft');
    expect((await fork.findOneOrFail(Document, otherId)).title).toBe('new');
    expect((await fork.findOneOrFail(Attachment, attachment.id)).document.id).toBe(id);
    expect(JSON.parse(JSON.stringify(doc))).toEqual({ id, title: 'draft' });
  });

  test('discovery reading the properties does not turn their defaults into column defaults', async () => {
    ({ orm } = await db.init({ entities }));
    const { properties } = orm.getMetadata().get<DefaultValue>('DefaultValue');
    expect(properties.origin.default).toBeUndefined();
    expect(properties.label.default).toBe('from option');
    expect(properties.value.accessor).toBe('value');
    const sql = await orm.schema.getCreateSchemaSQL({ wrap: false });
    expect(sql).toMatch(/[`"]origin[`"] (text|varchar\(255\)) not null,/);
  });

  test('an entity without a default gets none', async () => {
    ({ orm } = await db.init({ entities }));
    const note = orm.em.fork().create(Note, { id: randomUUID(), text: 'x' });
    expect(new Note().id).toBeUndefined();
    expect(note.id).toBeDefined();
  });
});
