/**
 * `findOrCreate` / `getOrCreate` refuse a `where` that no unique key declared in the metadata covers: their
 * race safety rests on the database refusing the second of two racing inserts. Every kind of key MikroORM
 * declares is covered here, with what does not count as one (`@Index`, `@Unique({ expression })`, NULL).
 */
import {
  Embeddable,
  Embedded,
  Entity,
  EntityRepositoryType,
  Index,
  ManyToOne,
  OneToOne,
  PrimaryKey,
  Property,
  Unique,
  wrap,
  type EntityData,
} from '@mikro-orm/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CoasterEntityRepository, CoasterUsageError } from '../../src/index.js';
import { closeOrm, databases, type QueryLog, type TestOrm } from '../support/databases.js';
import { Account, Tag, raceEntities } from '../support/entities.js';

/** A book edition: unique by title and year together; its ISBN is indexed, not unique. */
@Entity()
@Unique({ properties: ['title', 'year'] })
class Edition {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  title!: string;

  @Property({ type: 'integer' })
  year!: number;

  @Property({ type: 'string', nullable: true })
  @Index()
  isbn?: string;
}

/** A gadget with a `unique: true` code and an optional EAN whose unique constraint is named. */
@Entity()
class Gadget {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string', unique: true })
  code!: string;

  @Property({ type: 'string', nullable: true, unique: 'gadget_ean_unique' })
  ean?: string | null;

  @Property({ type: 'string', nullable: true })
  label?: string;
}

/** A handle keyed by its natural primary key. */
@Entity()
class Handle {
  @PrimaryKey({ type: 'string' })
  nick!: string;

  @Property({ type: 'string', nullable: true })
  color?: string;
}

/** The owning side of a one-to-one, which MikroORM makes unique. */
@Entity()
class Profile {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @OneToOne(() => Account)
  account!: Account;

  @Property({ type: 'string', nullable: true })
  bio?: string;
}

/** A role in an account: unique by the relation and the role together. */
@Entity()
@Unique({ properties: ['account', 'role'] })
class Membership {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @ManyToOne(() => Account)
  account!: Account;

  @Property({ type: 'string' })
  role!: string;
}

/** An address whose street and number are unique wherever it is embedded (a key declared in the embeddable). */
@Embeddable()
@Unique({ properties: ['street', 'number'] })
class Spot {
  @Property({ type: 'string' })
  street!: string;

  @Property({ type: 'integer', nullable: true })
  number?: number | null;
}

/** A shop, also unique by its name and its spot's street (a key reaching into the embeddable). */
@Entity()
@Unique({ properties: ['name', 'spot.street'] })
class Shop {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  name!: string;

  @Embedded(() => Spot)
  spot!: Spot;
}

/** The root of a single table inheritance: its name is unique over the whole table. */
@Entity({ discriminatorColumn: 'kind', abstract: true })
abstract class Animal {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @Property({ type: 'string' })
  kind!: string;
}

@Entity({ discriminatorValue: 'dog' })
class Dog extends Animal {
  @Property({ type: 'string', nullable: true, unique: true })
  chip?: string;

  @Property({ type: 'string', nullable: true })
  breed?: string;
}

@Entity({ discriminatorValue: 'cat' })
class Cat extends Animal {
  @Property({ type: 'string', nullable: true })
  fur?: string;
}

/**
 * A slug unique only by an index given as SQL (`@Unique({ expression })`), which the metadata cannot tell the
 * properties of. Plain SQL that every database of the suite runs (MariaDB has no expression indexes, nor `"`
 * quotes); its default collation compares case-insensitively anyway.
 */
@Entity()
@Unique({ name: 'slug_value', expression: 'create unique index slug_value on slug (value)' })
class Slug {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  value!: string;
}

class SwatchRepository extends CoasterEntityRepository<Swatch> {}

/** A colour swatch served by a CoasterEntityRepository, with no unique key but its primary key. */
@Entity({ repository: () => SwatchRepository })
class Swatch {
  [EntityRepositoryType]?: SwatchRepository;

  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  color!: string;
}

const entities = [...raceEntities, Edition, Gadget, Handle, Profile, Membership, Spot, Shop, Animal, Dog, Cat, Slug, Swatch];

describe.each(databases)('the unique key covering findOrCreate’s where on $name', db => {
  let orm: TestOrm;
  let log: QueryLog;

  beforeAll(async () => {
    ({ orm, log } = await db.init({ entities }));
  });
  afterAll(() => closeOrm(orm));
  beforeEach(async () => {
    await orm.schema.clearDatabase();
    log.clear();
  });

  /**
   * getOrCreate twice with `where` (each in an EntityManager of its own): the first creates the row, the
   * second finds it; the table then holds that one row.
   */
  async function createsThenFinds<T extends object>(entity: new () => T, where: EntityData<T>, data?: EntityData<T>): Promise<T> {
    const first = await orm.em.fork().getOrCreate(entity, where, data);
    const second = await orm.em.fork().getOrCreate(entity, where, data);
    expect([first.created, second.created]).toEqual([true, false]);
    expect(wrap(second.entity, true).getPrimaryKey()).toEqual(wrap(first.entity, true).getPrimaryKey());
    expect(await orm.em.fork().count(entity, where as never)).toBe(1);
    return first.entity;
  }

  /** Both methods refuse `where` with the usage error, before any SQL; nothing is written. */
  async function refuses<T extends object>(entity: new () => T, where: EntityData<T>, message: RegExp): Promise<void> {
    const before = await orm.em.fork().count(entity);
    for (const call of [() => orm.em.fork().findOrCreate(entity, where), () => orm.em.fork().getOrCreate(entity, where)]) {
      log.clear();
      const error = await call().catch(e => e);
      expect(error).toBeInstanceOf(CoasterUsageError);
      expect(error.message).toMatch(message);
      expect(log.queries).toEqual([]);
    }
    expect(await orm.em.fork().count(entity)).toBe(before);
  }

  it('refuses a where no unique key covers, naming the entity, its where, its keys and both ways out', async () => {
    await refuses(Tag, { color: 'red' }, /^(find|get)OrCreate\(Tag, \{ color: 'red' \}\) is race-safe only when a unique constraint covers/);
    const error = await orm.em.fork().getOrCreate(Edition, { title: 'Emma' }).catch(e => e);
    expect(error.message).toMatch(/^getOrCreate\(Edition, \{ title: 'Emma' \}\)/);
    expect(error.message).toMatch(/none of Edition's unique keys \(id; title \+ year\) has all its properties in `where`/);
    expect(error.message).toMatch(/Declare the constraint: @Unique\(\{ properties: \[ 'title' \] \}\) on Edition, or unique: true on a property;/);
    expect(error.message).toMatch(/or, if the constraint exists only in the database, pass \{ checkUnique: false \} in the options\./);
    expect(error.message).toMatch(/A @Unique\(\{ expression \}\) cannot be checked, so it covers nothing\.$/);
  });

  it('a single @Unique() on the property covers it', async () => {
    await createsThenFinds(Tag, { name: 'news' }, { color: 'red' });
  });

  it('a composite @Unique covers a where holding all its properties, and not one of them', async () => {
    await refuses(Edition, { title: 'Emma' }, /Edition's unique keys \(id; title \+ year\)/);
    await refuses(Edition, { year: 1815 }, /Edition's unique keys/);
    await createsThenFinds(Edition, { title: 'Emma', year: 1815 });
  });

  it('a where may hold more than the key', async () => {
    await createsThenFinds(Edition, { title: 'Emma', year: 1816, isbn: '978-0' });
    await createsThenFinds(Gadget, { code: 'g1', label: 'first' });
  });

  it('@Index is not unique', async () => {
    await refuses(Edition, { isbn: '978-0' }, /Edition's unique keys \(id; title \+ year\)/);
  });

  it('unique: true and unique: "name" cover their property; a NULL never does', async () => {
    await createsThenFinds(Gadget, { code: 'g1' });
    await createsThenFinds(Gadget, { ean: '4006381333931' }, { code: 'g2' });
    await refuses(Gadget, { ean: null, label: 'x' }, /\{ ean: null, label: 'x' \}.*unique keys \(id; code; ean\).*with non-null values \(unique constraints let NULLs repeat\).*properties: \[ 'label' \]/);
    await refuses(Gadget, { ean: null }, /Nothing was sent\. Give the properties of one of those keys non-null values; or/);
  });

  it('the primary key covers it', async () => {
    await createsThenFinds(Handle, { nick: 'ada' }, { color: 'red' });
    await refuses(Handle, { color: 'red' }, /Handle's unique keys \(nick\)/);
  });

  it('an owning one-to-one is unique in MikroORM, so it covers it', async () => {
    expect(orm.getMetadata().get(Profile.name).properties.account.unique).toBe(true);
    const acme = await orm.em.fork().findOrCreate(Account, { name: 'acme' });
    await createsThenFinds(Profile, { account: acme.id }, { bio: 'hello' });
  });

  it('a relation counts whether given as an entity, a reference or a primary key', async () => {
    const em = orm.em.fork();
    const acme = await em.findOrCreate(Account, { name: 'acme' });
    const first = await em.getOrCreate(Membership, { account: acme, role: 'owner' });
    const other = orm.em.fork();
    const byReference = await other.getOrCreate(Membership, { account: other.getReference(Account, acme.id), role: 'owner' });
    const byKey = await orm.em.fork().getOrCreate(Membership, { account: acme.id, role: 'owner' });
    expect([first.created, byReference.created, byKey.created]).toEqual([true, false, false]);
    expect(await orm.em.fork().count(Membership)).toBe(1);
    await refuses(Membership, { account: acme.id }, /Membership's unique keys \(id; account \+ role\)/);
  });

  it('embedded properties count one by one: a key of the embeddable, and one reaching into it', async () => {
    await refuses(Shop, { spot: { street: 'Main' } }, /Shop's unique keys \(id; name \+ spot.street; spot.street \+ spot.number\).*properties: \[ 'spot.street' \]/);
    await refuses(Shop, { name: 'corner' }, /Shop's unique keys/);
    await createsThenFinds(Shop, { spot: { street: 'Main', number: 1 } }, { name: 'corner' });
    await createsThenFinds(Shop, { name: 'bakery', spot: { street: 'Main' } });
    // an embeddable instance counts by the properties it holds
    const corner = await orm.em.fork().getOrCreate(Shop, { spot: Object.assign(new Spot(), { street: 'Main', number: 1 }) });
    expect(corner).toMatchObject({ created: false, entity: { name: 'corner' } });
    await refuses(Shop, { spot: Object.assign(new Spot(), { street: 'Side' }) }, /properties: \[ 'spot.street' \]/);
    expect((await orm.em.fork().find(Shop, {}, { orderBy: { id: 'asc' } })).map(shop => [shop.name, shop.spot.number])).toEqual([
      ['corner', 1],
      ['bakery', null],
    ]);
  });

  it('single table inheritance: the keys of the root and of the subclass cover it', async () => {
    await createsThenFinds(Dog, { name: 'rex' }, { kind: 'dog' });
    await createsThenFinds(Dog, { chip: 'c-1' }, { name: 'fido', kind: 'dog' });
    await createsThenFinds(Cat, { name: 'tom' }, { kind: 'cat' });
    await refuses(Dog, { breed: 'collie' }, /Dog's unique keys \(id; name; chip\)/);
    await refuses(Cat, { fur: 'grey' }, /Cat's unique keys \(id; name; chip\)/);
  });

  it('an expression unique index cannot be judged: refused, and checkUnique: false relies on it', async () => {
    await refuses(Slug, { value: 'News' }, /Slug's unique keys \(id\)/);
    const first = await orm.em.fork().getOrCreate(Slug, { value: 'News' }, undefined, { checkUnique: false });
    const second = await orm.em.fork().getOrCreate(Slug, { value: 'News' }, undefined, { checkUnique: false });
    expect([first.created, second.created, second.entity.id]).toEqual([true, false, first.entity.id]);
    expect(await orm.em.fork().count(Slug)).toBe(1);
  });

  it('checkUnique: false runs the call with no covering key, and the row is created', async () => {
    const em = orm.em.fork();
    const tag = await em.findOrCreate(Tag, { color: 'red' }, { name: 'news' }, { checkUnique: false });
    expect(tag).toMatchObject({ name: 'news', color: 'red' });
    expect(em.getUnitOfWork().getById(Tag.name, tag.id)).toBe(tag);
    expect(await orm.em.fork().findOneOrFail(Tag, { color: 'red' })).toMatchObject({ id: tag.id, name: 'news' });
  });

  it('checkUnique: true is the default', async () => {
    const error = await orm.em.fork().findOrCreate(Tag, { color: 'red' }, { name: 'news' }, { checkUnique: true }).catch(e => e);
    expect(error).toBeInstanceOf(CoasterUsageError);
    expect(await orm.em.fork().count(Tag)).toBe(0);
  });

  it('the answer holds per set of properties, in any order, call after call', async () => {
    for (let i = 0; i < 2; i++) {
      await refuses(Edition, { title: 'Emma' }, /Edition's unique keys/);
      expect(await orm.em.fork().findOrCreate(Edition, { year: 1815, title: 'Emma' })).toMatchObject({ title: 'Emma' });
      expect(await orm.em.fork().findOrCreate(Edition, { title: 'Emma', year: 1815 })).toMatchObject({ year: 1815 });
    }
    expect(await orm.em.fork().count(Edition)).toBe(1);
  });

  it('failsafeAdd and addAndCommit are not checked: their filters only locate the row after a conflict', async () => {
    const em = orm.em.fork();
    const tag = await em.failsafeAdd(em.create(Tag, { name: 'news', color: 'red' }, { persist: false }), { color: 'red' });
    expect(await em.addAndCommit(em.create(Tag, { name: 'news', color: 'blue' }, { persist: false }), { color: 'red' })).toBe(tag);
    expect(await orm.em.fork().count(Tag)).toBe(1);
  });

  it('CoasterEntityRepository checks the same and passes the options through', async () => {
    const swatches = orm.em.fork().getRepository(Swatch);
    for (const call of [() => swatches.findOrCreate({ color: 'red' }), () => swatches.getOrCreate({ color: 'red' })]) {
      const error = await call().catch(e => e);
      expect(error).toBeInstanceOf(CoasterUsageError);
      expect(error.message).toMatch(/^(find|get)OrCreate\(Swatch, \{ color: 'red' \}\) is race-safe only/);
    }
    const red = await swatches.findOrCreate({ color: 'red' }, undefined, { checkUnique: false });
    expect(await swatches.getOrCreate({ color: 'red' }, undefined, { checkUnique: false })).toEqual({ entity: red, created: false });
    expect(await orm.em.fork().count(Swatch)).toBe(1);
  });
});
