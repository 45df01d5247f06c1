/**
 * Model-based test of the race-safe inserts: random sequences of `create`, `flush`, `assign`, `remove`,
 * `failsafeAdd` (with and without filters, from `em.create` or `new`), `getOrCreate`, `updateOrCreate`, the batch
 * calls (`getOrCreateMany`, `findOrCreateMany`, `failsafeAddMany`, keys repeating and overlapping stored and held
 * ones), inserts committed by a second connection, `failsafeAdd` / `getOrCreate` calls and batches whose
 * `beforeCreate` or `afterCreate` hook throws, and `getOrCreate` calls whose `where` no unique key covers, for an entity with a generated key,
 * one with a natural key and a `beforeCreate` hook (fast path), one with a natural key and an `afterCreate`
 * hook (savepoint path), and one without any unique key but its generated one. After every step the
 * database is compared with a reference model, and every entity the EntityManager holds with the model's
 * view of it and with its row's identity.
 *
 * On failure fast-check prints the seed and path; rerun with `FC_SEED=<seed> FC_PATH=<path>` to replay.
 */
import { AfterCreate, BeforeCreate, Entity, FlushMode, PrimaryKey, Property, wrap } from '@mikro-orm/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoasterUsageError } from '../../src/index.js';
import { closeOrm, databases, type TestOrm } from '../support/databases.js';
import { Tag } from '../support/entities.js';
import { insertPaths } from '../support/insertPaths.js';

/**
 * The row whose insert a hook refuses, while a {@link FailingInsert} runs; `undefined` otherwise. By kind too: the
 * pending rows of the other kind that the call flushes first may share the key, and must go in.
 */
let refused: { kind: Kind; key: string } | undefined;

/** The error a refusing hook throws. */
class HookRefusal extends Error {}

/**
 * A row keyed by a natural key, so a new instance can share the primary key of a managed one. Its
 * `beforeCreate` hook refuses {@link refused}; the fast path fires it before sending the insert.
 */
@Entity()
class Handle {
  @PrimaryKey({ type: 'string' })
  nick!: string;

  @Property({ type: 'string', nullable: true })
  color?: string | null;

  @BeforeCreate()
  refuse(): void {
    if (refused?.kind === 'handle' && this.nick === refused.key) {
      throw new HookRefusal(`beforeCreate refused ${this.nick}`);
    }
  }
}

/** A natural key with an `afterCreate` hook that refuses {@link refused}: inserted on the savepoint path. */
@Entity()
class Ticket {
  @PrimaryKey({ type: 'string' })
  code!: string;

  @Property({ type: 'string', nullable: true })
  color?: string | null;

  @AfterCreate()
  refuse(): void {
    if (refused?.kind === 'ticket' && this.code === refused.key) {
      throw new HookRefusal(`afterCreate refused ${this.code}`);
    }
  }
}

/** No unique key but its generated primary key: `getOrCreate` by `text` must be refused before any SQL. */
@Entity()
class Note {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  text!: string;
}

type Em = TestOrm['em'];
type Kind = 'tag' | 'handle' | 'ticket';
type Row = Tag | Handle | Ticket;

/**
 * `key`: the natural key's property. `mappedWhenNew`: MikroORM puts a persisted entity in the identity map
 * before it is inserted when its primary key is known, as a natural key is. `hook`: which of the entity's
 * hooks refuses {@link refused}, if any.
 */
const KINDS: Record<Kind, { entity: typeof Tag | typeof Handle | typeof Ticket; key: string; mappedWhenNew: boolean; hook?: string }> = {
  tag: { entity: Tag, key: 'name', mappedWhenNew: false },
  handle: { entity: Handle, key: 'nick', mappedWhenNew: true, hook: 'beforeCreate' },
  ticket: { entity: Ticket, key: 'code', mappedWhenNew: true, hook: 'afterCreate' },
};

const ALL_KINDS = Object.keys(KINDS) as Kind[];

function perKind<V>(make: () => V): Record<Kind, V> {
  return { tag: make(), handle: make(), ticket: make() };
}

function keyOf(kind: Kind, row: Row): string {
  return Reflect.get(row, KINDS[kind].key) as string;
}

function dataOf(kind: Kind, name: string, color: string | null): object {
  return { [KINDS[kind].key]: name, color };
}

function build(em: Em, kind: Kind, name: string, color: string | null, via: 'create' | 'new'): Row {
  const data = dataOf(kind, name, color);
  if (via === 'create') {
    return em.create(KINDS[kind].entity as typeof Tag, data as never, { persist: false });
  }
  return Object.assign(new KINDS[kind].entity(), data);
}

/** What the database and the EntityManager should hold, per kind, by natural key (tag name or handle nick). */
class Model {
  /** Committed rows: key → colour. */
  readonly db = perKind(() => new Map<string, string | null>());
  /** Entities the EntityManager holds (managed or waiting to be inserted): key → in-memory colour. */
  readonly memory = perKind(() => new Map<string, string | null>());
  readonly pendingInsert = perKind(() => new Set<string>());
  readonly pendingRemove = perKind(() => new Set<string>());

  /** What a flush does: every pending insert, update and removal reaches the database. */
  flush(): void {
    for (const kind of ALL_KINDS) {
      for (const [key, color] of this.memory[kind]) {
        this.db[kind].set(key, color);
      }
      for (const key of this.pendingRemove[kind]) {
        this.db[kind].delete(key);
        this.memory[kind].delete(key);
      }
      this.pendingInsert[kind].clear();
      this.pendingRemove[kind].clear();
    }
  }

  hasPending(): boolean {
    return ALL_KINDS.some(kind => this.pendingInsert[kind].size + this.pendingRemove[kind].size > 0);
  }
}

/** The system under test: one EntityManager and the entities it handed out, by natural key. */
interface Real {
  orm: TestOrm;
  em: Em;
  held: Record<Kind, Map<string, Row>>;
}

type Command = fc.AsyncCommand<Model, Real>;

const names = fc.constantFrom('a', 'b', 'c', 'd');
const colors = fc.constantFrom(null, 'red', 'blue');
const kinds = fc.constantFrom<Kind>(...ALL_KINDS);
/** One to four rows of a batch, keys repeating. */
const batchRows = fc.array(fc.tuple(names, colors), { minLength: 1, maxLength: 4 });

class Create implements Command {
  constructor(readonly kind: Kind, readonly name: string, readonly color: string | null) {}
  check = (m: Readonly<Model>) => !m.memory[this.kind].has(this.name) && !m.db[this.kind].has(this.name);
  async run(m: Model, r: Real): Promise<void> {
    r.held[this.kind].set(this.name, r.em.create(KINDS[this.kind].entity as typeof Tag, dataOf(this.kind, this.name, this.color) as never));
    m.memory[this.kind].set(this.name, this.color);
    m.pendingInsert[this.kind].add(this.name);
  }
  toString = () => `create(${this.kind} ${this.name}, ${this.color})`;
}

class Flush implements Command {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await r.em.flush();
    m.flush();
    forgetRemoved(m, r);
  }
  toString = () => 'flush()';
}

class Assign implements Command {
  constructor(readonly kind: Kind, readonly name: string, readonly color: string | null) {}
  check = (m: Readonly<Model>) =>
    m.memory[this.kind].has(this.name) &&
    !m.pendingRemove[this.kind].has(this.name) &&
    m.memory[this.kind].get(this.name) !== this.color &&
    (!m.db[this.kind].has(this.name) || m.db[this.kind].get(this.name) !== this.color);
  async run(m: Model, r: Real): Promise<void> {
    r.em.assign(r.held[this.kind].get(this.name)!, { color: this.color });
    m.memory[this.kind].set(this.name, this.color);
  }
  toString = () => `assign(${this.kind} ${this.name}, ${this.color})`;
}

class Remove implements Command {
  constructor(readonly kind: Kind, readonly name: string) {}
  check = (m: Readonly<Model>) => m.memory[this.kind].has(this.name) && !m.pendingRemove[this.kind].has(this.name);
  async run(m: Model, r: Real): Promise<void> {
    r.em.remove(r.held[this.kind].get(this.name)!);
    if (m.pendingInsert[this.kind].delete(this.name)) {
      m.memory[this.kind].delete(this.name);
      r.held[this.kind].delete(this.name);
    } else {
      m.pendingRemove[this.kind].add(this.name);
    }
  }
  toString = () => `remove(${this.kind} ${this.name})`;
}

/** A row committed by another connection that this EntityManager knows nothing about. */
class InsertElsewhere implements Command {
  constructor(readonly kind: Kind, readonly name: string, readonly color: string | null) {}
  check = (m: Readonly<Model>) => !m.memory[this.kind].has(this.name) && !m.db[this.kind].has(this.name);
  async run(m: Model, r: Real): Promise<void> {
    await r.orm.em.fork().insert(KINDS[this.kind].entity as typeof Tag, dataOf(this.kind, this.name, this.color) as never);
    m.db[this.kind].set(this.name, this.color);
  }
  toString = () => `insertElsewhere(${this.kind} ${this.name}, ${this.color})`;
}

class FailsafeAdd implements Command {
  constructor(
    readonly kind: Kind,
    readonly name: string,
    readonly color: string | null,
    readonly withFilters: boolean,
    readonly via: 'create' | 'new',
  ) {}
  // em.create() with the key of an entity this EntityManager holds merges into it: the documented trap,
  // refused with a CoasterUsageError and tested in insertEdges.test.ts
  check = (m: Readonly<Model>) => !(this.via === 'create' && KINDS[this.kind].mappedWhenNew && m.memory[this.kind].has(this.name));
  async run(m: Model, r: Real): Promise<void> {
    const candidate = build(r.em, this.kind, this.name, this.color, this.via);
    const filters = this.withFilters ? { [KINDS[this.kind].key]: this.name } : undefined;
    const result = await r.em.failsafeAdd(candidate, filters as never);
    m.flush();
    forgetRemoved(m, r);
    expectOutcome(m, r, this.kind, this.name, this.color, candidate, result, this.withFilters);
  }
  toString = () => `failsafeAdd(${this.via} ${this.kind} ${this.name}, ${this.color}${this.withFilters ? ', filters' : ''})`;
}

class GetOrCreate implements Command {
  constructor(readonly kind: Kind, readonly name: string, readonly color: string | null) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const where = { [KINDS[this.kind].key]: this.name };
    // with FlushMode.AUTO, the lookup flushes this EntityManager's pending changes of that entity first
    if (m.pendingInsert[this.kind].size + m.pendingRemove[this.kind].size > 0 || dirty(m, this.kind)) {
      m.flush();
    }
    const existed = m.db[this.kind].has(this.name);
    const { entity, created } = await r.em.getOrCreate(KINDS[this.kind].entity as typeof Tag, where as never, { color: this.color });
    if (created) {
      m.flush(); // the insert path flushes every other pending change before its savepoint
    }
    forgetRemoved(m, r);
    expect(created).toBe(!existed);
    expectOutcome(m, r, this.kind, this.name, this.color, created ? entity : undefined, entity, true);
  }
  toString = () => `getOrCreate(${this.kind} ${this.name}, ${this.color})`;
}

/**
 * A `failsafeAdd` or `getOrCreate` of a new key whose hook (`beforeCreate` for handles, `afterCreate` for
 * tickets) throws: the call rejects with the hook's error, the other pending changes it flushed first
 * stay, and the refused row is nowhere, neither in the database nor in the identity map.
 */
class FailingInsert implements Command {
  constructor(
    readonly kind: Kind,
    readonly name: string,
    readonly color: string | null,
    readonly call: 'failsafeAdd' | 'getOrCreate',
  ) {}
  check = (m: Readonly<Model>) => KINDS[this.kind].hook !== undefined && !m.memory[this.kind].has(this.name) && !m.db[this.kind].has(this.name);
  async run(m: Model, r: Real): Promise<void> {
    const where = { [KINDS[this.kind].key]: this.name } as never;
    refused = { kind: this.kind, key: this.name };
    try {
      const call =
        this.call === 'failsafeAdd'
          ? r.em.failsafeAdd(build(r.em, this.kind, this.name, this.color, 'new'), where)
          : r.em.getOrCreate(KINDS[this.kind].entity as typeof Tag, where, { color: this.color });
      await expect(call).rejects.toThrow(HookRefusal);
    } finally {
      refused = undefined;
    }
    m.flush(); // both flush every other pending change before the insert
    forgetRemoved(m, r);
  }
  toString = () => `${this.call}(${this.kind} ${this.name}, ${this.color}) with its ${KINDS[this.kind].hook} throwing`;
}

/**
 * `updateOrCreate` of `name` with `color`: every pending change is flushed first; then the row holds
 * `color` whether it existed (`created: false`) or not, and the entity this EntityManager held for it, if
 * any, is the one returned, holding `color` too.
 */
class UpdateOrCreate implements Command {
  constructor(readonly kind: Kind, readonly name: string, readonly color: string | null) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const where = { [KINDS[this.kind].key]: this.name } as never;
    m.flush();
    forgetRemoved(m, r);
    const existed = m.db[this.kind].has(this.name);
    const held = r.held[this.kind].get(this.name);
    const { entity, created } = await r.em.updateOrCreate(KINDS[this.kind].entity as typeof Tag, where, { color: this.color });
    expect(created).toBe(!existed);
    if (held) {
      expect(entity).toBe(held);
    }
    m.db[this.kind].set(this.name, this.color);
    m.memory[this.kind].set(this.name, this.color);
    r.held[this.kind].set(this.name, entity);
  }
  toString = () => `updateOrCreate(${this.kind} ${this.name}, ${this.color})`;
}

/** Rows of one batch: keys may repeat, and the first row of a key gives its values. */
type BatchRows = readonly (readonly [name: string, color: string | null])[];

/**
 * After a batch call of `rows` that resolved to `results` (one entity per row), with `existed` the keys the
 * database held before: each key's rows share one entity; an existing key's is the entity this EntityManager
 * held for it (or, when it held none, a newly loaded one, now held); a new key's is inserted with its first
 * row's colour.
 */
function expectBatchOutcome(m: Model, r: Real, kind: Kind, rows: BatchRows, results: Row[], existed: Set<string>): Map<string, number> {
  const first = new Map<string, number>();
  rows.forEach(([name], index) => {
    if (!first.has(name)) {
      first.set(name, index);
    }
    expect(keyOf(kind, results[index])).toBe(name);
    expect(results[index]).toBe(results[first.get(name)!]);
  });
  for (const [name, index] of first) {
    const entity = results[index];
    const held = r.held[kind].get(name);
    if (existed.has(name)) {
      if (held) {
        expect(entity).toBe(held);
      } else {
        r.held[kind].set(name, entity);
        m.memory[kind].set(name, m.db[kind].get(name)!);
      }
    } else {
      m.db[kind].set(name, rows[index][1]);
      m.memory[kind].set(name, rows[index][1]);
      r.held[kind].set(name, entity);
    }
  }
  return first;
}

/**
 * `getOrCreateMany` (or `findOrCreateMany`) of rows whose keys may repeat and overlap stored and held ones:
 * every pending change is flushed first; `created` is true for the first row of each new key only.
 */
class GetOrCreateMany implements Command {
  constructor(
    readonly kind: Kind,
    readonly rows: BatchRows,
    readonly call: 'getOrCreateMany' | 'findOrCreateMany',
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    m.flush();
    forgetRemoved(m, r);
    const existed = new Set(this.rows.map(([name]) => name).filter(name => m.db[this.kind].has(name)));
    const entityName = KINDS[this.kind].entity as typeof Tag;
    const data = this.rows.map(([name, color]) => dataOf(this.kind, name, color)) as never[];
    if (this.call === 'findOrCreateMany') {
      expectBatchOutcome(m, r, this.kind, this.rows, await r.em.findOrCreateMany(entityName, data), existed);
      return;
    }
    const results = await r.em.getOrCreateMany(entityName, data);
    const first = expectBatchOutcome(m, r, this.kind, this.rows, results.map(result => result.entity), existed);
    expect(results.map(result => result.created)).toEqual(this.rows.map(([name], index) => !existed.has(name) && first.get(name) === index));
  }
  toString = () => `${this.call}(${this.kind} ${this.rows.map(([name, color]) => `${name}:${color}`).join(' ')})`;
}

/**
 * `failsafeAddMany` of new instances whose keys may repeat and overlap stored and held ones: the first
 * instance of a new key is inserted and returned; every other instance resolves to its key's managed entity
 * and is detached.
 */
class FailsafeAddMany implements Command {
  constructor(
    readonly kind: Kind,
    readonly rows: BatchRows,
    readonly via: 'create' | 'new',
  ) {}
  // as for FailsafeAdd: em.create() with the key of a held entity merges into it (the documented trap)
  check = (m: Readonly<Model>) => !(this.via === 'create' && KINDS[this.kind].mappedWhenNew && this.rows.some(([name]) => m.memory[this.kind].has(name)));
  async run(m: Model, r: Real): Promise<void> {
    const candidates = this.rows.map(([name, color]) => build(r.em, this.kind, name, color, this.via));
    m.flush();
    forgetRemoved(m, r);
    const existed = new Set(this.rows.map(([name]) => name).filter(name => m.db[this.kind].has(name)));
    const results = await r.em.failsafeAddMany(candidates);
    const first = expectBatchOutcome(m, r, this.kind, this.rows, results as Row[], existed);
    candidates.forEach((candidate, index) => {
      const inserted = !existed.has(this.rows[index][0]) && first.get(this.rows[index][0]) === index;
      expect(results[index] === candidate, `${this.kind} entities[${index}] is returned itself`).toBe(inserted);
      expect(wrap(candidate, true).isManaged(), `${this.kind} entities[${index}] is managed`).toBe(inserted || results[index] === candidate);
    });
  }
  toString = () => `failsafeAddMany(${this.via} ${this.kind} ${this.rows.map(([name, color]) => `${name}:${color}`).join(' ')})`;
}

/**
 * A batch with a new key whose hook (`beforeCreate` for handles, `afterCreate` for tickets) throws: the call
 * rejects with the hook's error, the pending changes it flushed first stay, none of its rows is written and
 * none of its new entities is managed; the stored rows it found are managed, as a find leaves them.
 */
class FailingBatch implements Command {
  constructor(
    readonly kind: Kind,
    readonly rows: BatchRows,
    readonly refusedName: string,
    readonly call: 'getOrCreateMany' | 'failsafeAddMany',
  ) {}
  check = (m: Readonly<Model>) =>
    KINDS[this.kind].hook !== undefined && !m.memory[this.kind].has(this.refusedName) && !m.db[this.kind].has(this.refusedName);
  async run(m: Model, r: Real): Promise<void> {
    const rows = [...this.rows, [this.refusedName, null] as const];
    refused = { kind: this.kind, key: this.refusedName };
    try {
      const call =
        this.call === 'failsafeAddMany'
          ? r.em.failsafeAddMany(rows.map(([name, color]) => build(r.em, this.kind, name, color, 'new')))
          : r.em.getOrCreateMany(KINDS[this.kind].entity as typeof Tag, rows.map(([name, color]) => dataOf(this.kind, name, color)) as never[]);
      await expect(call).rejects.toThrow(HookRefusal);
    } finally {
      refused = undefined;
    }
    m.flush();
    forgetRemoved(m, r);
    for (const [name] of rows) {
      if (m.db[this.kind].has(name) && !r.held[this.kind].has(name)) {
        // the natural key is the primary key of the kinds with hooks
        r.held[this.kind].set(name, r.em.getUnitOfWork().getById<Row>(KINDS[this.kind].entity.name, name as never)!);
        m.memory[this.kind].set(name, m.db[this.kind].get(name)!);
      }
    }
  }
  toString = () => `${this.call}(${this.kind} ${this.rows.map(([name]) => name).join(' ')} ${this.refusedName}) with its ${KINDS[this.kind].hook} throwing`;
}

/** `getOrCreate` by a property no unique key covers: refused before any SQL, nothing flushed or written. */
class UncoveredGetOrCreate implements Command {
  constructor(readonly text: string) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await expect(r.em.getOrCreate(Note, { text: this.text })).rejects.toThrow(CoasterUsageError);
  }
  toString = () => `getOrCreate(note ${this.text})`;
}

/**
 * Whether a managed entity of `kind` has an unflushed change of colour: MikroORM marks it "touched", and
 * FlushMode.AUTO flushes before a query of that entity. (Assign never sets the colour back to the
 * row's, which would leave an entity touched without a change.)
 */
function dirty(m: Model, kind: Kind): boolean {
  return [...m.memory[kind]].some(([key, color]) => m.db[kind].has(key) && m.db[kind].get(key) !== color);
}

function forgetRemoved(m: Model, r: Real): void {
  for (const kind of ALL_KINDS) {
    for (const key of r.held[kind].keys()) {
      if (!m.memory[kind].has(key)) {
        r.held[kind].delete(key);
      }
    }
  }
}

/**
 * After `failsafeAdd` or `getOrCreate` of `name`: a new row is the candidate itself; an existing one is
 * the entity this EntityManager already held for it (or, when it held none, a newly loaded one), with
 * filters, and nothing without them.
 */
function expectOutcome(
  m: Model,
  r: Real,
  kind: Kind,
  name: string,
  color: string | null,
  candidate: Row | undefined,
  result: Row | undefined,
  withFilters: boolean,
): void {
  const inserted = candidate !== undefined && result === candidate;
  if (inserted) {
    expect(m.db[kind].has(name)).toBe(false);
    m.db[kind].set(name, color);
    m.memory[kind].set(name, color);
    r.held[kind].set(name, result);
    return;
  }
  expect(m.db[kind].has(name)).toBe(true);
  if (!withFilters) {
    expect(result).toBeUndefined();
    return;
  }
  const held = r.held[kind].get(name);
  if (held) {
    expect(result).toBe(held);
  } else {
    r.held[kind].set(name, result!);
    m.memory[kind].set(name, m.db[kind].get(name)!);
  }
}

/** The database equals the model; every held entity equals the model's memory and is its row's managed instance. */
async function compare(m: Model, r: Real): Promise<void> {
  const reader = r.orm.em.fork();
  expect(await reader.count(Note), 'note rows').toBe(0);
  for (const kind of ALL_KINDS) {
    const rows = await reader.find(KINDS[kind].entity as typeof Tag, {});
    const db = new Map(rows.map(row => [keyOf(kind, row), row.color ?? null]));
    expect(Object.fromEntries(db), `${kind} rows`).toEqual(Object.fromEntries(m.db[kind]));
    expect([...r.held[kind].keys()].sort(), `${kind} entities held`).toEqual([...m.memory[kind].keys()].sort());
    const uow = r.em.getUnitOfWork();
    const meta = r.em.getMetadata().get(KINDS[kind].entity.name);
    const managed = [...uow.getIdentityMap().getStore(meta).values()] as Row[];
    expect(managed.map(row => keyOf(kind, row)).sort(), `${kind} identity map`).toEqual(
      [...m.memory[kind].keys()].filter(key => KINDS[kind].mappedWhenNew || !m.pendingInsert[kind].has(key)).sort(),
    );
    for (const [key, row] of r.held[kind]) {
      expect(row.color ?? null, `${kind} ${key} in memory`).toBe(m.memory[kind].get(key));
      if (KINDS[kind].mappedWhenNew || !m.pendingInsert[kind].has(key)) {
        expect(managed, `${kind} ${key} is the managed instance`).toContain(row);
      }
      if (m.pendingInsert[kind].has(key)) {
        continue;
      }
      const stored = rows.find(candidate => keyOf(kind, candidate) === key);
      expect(stored, `${kind} ${key} has its row`).toBeDefined();
      if (kind === 'tag') {
        expect((row as Tag).id, `tag ${key} has its row's id`).toBe((stored as Tag).id);
      }
    }
  }
}

const commands = [
  fc.tuple(kinds, names, colors).map(([k, n, c]) => new Create(k, n, c)),
  fc.constant(new Flush()),
  fc.tuple(kinds, names, colors).map(([k, n, c]) => new Assign(k, n, c)),
  fc.tuple(kinds, names).map(([k, n]) => new Remove(k, n)),
  fc.tuple(kinds, names, colors).map(([k, n, c]) => new InsertElsewhere(k, n, c)),
  fc
    .tuple(kinds, names, colors, fc.boolean(), fc.constantFrom<'create' | 'new'>('create', 'new'))
    .map(([k, n, c, f, v]) => new FailsafeAdd(k, n, c, f, v)),
  fc.tuple(kinds, names, colors).map(([k, n, c]) => new GetOrCreate(k, n, c)),
  fc
    .tuple(kinds, names, colors, fc.constantFrom<'failsafeAdd' | 'getOrCreate'>('failsafeAdd', 'getOrCreate'))
    .map(([k, n, c, call]) => new FailingInsert(k, n, c, call)),
  names.map(n => new UncoveredGetOrCreate(n)),
  fc.tuple(kinds, names, colors).map(([k, n, c]) => new UpdateOrCreate(k, n, c)),
  fc
    .tuple(kinds, batchRows, fc.constantFrom<'getOrCreateMany' | 'findOrCreateMany'>('getOrCreateMany', 'findOrCreateMany'))
    .map(([k, rows, call]) => new GetOrCreateMany(k, rows, call)),
  fc.tuple(kinds, batchRows, fc.constantFrom<'create' | 'new'>('create', 'new')).map(([k, rows, v]) => new FailsafeAddMany(k, rows, v)),
  fc
    .tuple(fc.constantFrom<Kind>('handle', 'ticket'), batchRows, names, fc.constantFrom<'getOrCreateMany' | 'failsafeAddMany'>('getOrCreateMany', 'failsafeAddMany'))
    .map(([k, rows, n, call]) => new FailingBatch(k, rows, n, call)),
];

describe.each(databases)('race-safe inserts against a reference model on $name', db => {
  describe.each(insertPaths)('on the $name path', path => {
    let orm: TestOrm;

    beforeAll(async () => {
      ({ orm } = await db.init({ ...path.options(), entities: [Tag, Handle, Ticket, Note], flushMode: FlushMode.AUTO }));
    });
    afterAll(() => closeOrm(orm));

    it('keeps the database, the identity map and every held entity in step with the model', async () => {
      const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);
      await fc.assert(
        fc.asyncProperty(fc.commands(commands, { maxCommands: 30 }), async sequence => {
          await orm.schema.clearDatabase();
          const real: Real = { orm, em: orm.em.fork(), held: perKind(() => new Map()) };
          const model = new Model();
          await fc.asyncModelRun(
            () => ({ model, real }),
            [...sequence].map(command => ({
              check: (m: Readonly<Model>) => command.check(m),
              run: async (m: Model, r: Real) => {
                await command.run(m, r);
                await compare(m, r);
              },
              toString: () => command.toString(),
            })),
          );
        }),
        // bounded: at most 100 sequences or 12 s per database and path, whichever comes first
        { numRuns: 100, seed, path: process.env.FC_PATH, endOnFailure: !!process.env.FC_PATH, interruptAfterTimeLimit: 12_000 },
      );
    }, 60_000);
  });
});
