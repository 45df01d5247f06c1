import {
  EntitySchema,
  ManyToOne,
  MetadataStorage,
  Reference,
  ReferenceKind,
  type OptionalProps,
  wrap,
  type Configuration,
  type Dictionary,
  type EntityClass,
  type EntityMetadata,
  type EntityProperty,
  type FormulaTable,
  type Platform,
  type Primary,
} from '@mikro-orm/core';
import { createdAtProperty, updatedAtProperty } from '../entity-decorators/timestamps.js';
import { entityState, isBeingHydrated, setTouched } from '../shared/internals.js';
import { PrimaryRelationshipError } from './PrimaryRelationshipError.js';
import { type PrimaryTableNames, primaryTableComment, qualified, quoteIdentifier, type TriggerDialect, triggerDialect, validateFunctionName } from './primaryTriggers.js';

/**
 * A row of a primary table: which child is the parent's primary one. The entity behind it, named
 * `<Parent>_<property>`, is made by {@link addPrimaryRelationship}; applications read and write rows
 * through the parent's property instead.
 *
 * @example
 * ```ts
 * const rows = await em.find<PrimaryLink>('User_primaryEmail', {}, { populate: ['child'] });
 * ```
 */
export interface PrimaryLink {
  /** The parent; the table's primary key. */
  parent: object;
  /** The parent's primary child. */
  child: object;
  /** When the row was inserted, that is when the parent first had a primary child since it last had none. */
  createdAt: Date;
  /** When the row was last written: the primary child chosen last. */
  updatedAt: Date;
  /** MikroORM's marker of the properties `em.create` may leave out: the timestamps, which the database fills in. */
  [OptionalProps]?: 'createdAt' | 'updatedAt';
}

/** What the primary table holds for one parent, as far as this process knows. */
interface PrimaryState {
  /**
   * The parent's primary child as the application sees it (`null`: none); `undefined` until loaded,
   * assigned or flushed, so MikroORM's own bookkeeping never mistakes it for an assignment of `null`.
   */
  value?: object | null;
  /** Primary key of the child the table's row names (`null`: no row); `undefined` if unknown. */
  stored?: Primary<object> | null;
}

/**
 * Options of {@link addPrimaryRelationship} and {@link PrimaryRelationship}.
 *
 * @example
 * ```ts
 * addPrimaryRelationship(Organisation, 'primaryVenue', OrganisationVenue, 'organisation', 'organisation_id', {
 *   tableName: 'organisation_primary_venue',
 * });
 * ```
 */
export interface PrimaryRelationshipOptions {
  /**
   * The primary table's name, instead of `<parent table>_<child table>_primary`. At most 54 bytes
   * (UTF-8), so that every name derived from it fits PostgreSQL's 63-byte identifiers; checked at
   * discovery on every database, so a schema moves to PostgreSQL as it is (MariaDB's 64-character
   * identifiers take these names and its triggers' `<table>_insert`/`<table>_update`). Its columns keep their names (`<parent table>_<primary key>`, ...).
   */
  tableName?: string;
}

/**
 * PostgreSQL keeps the first 63 bytes of an identifier (`NAMEDATALEN` - 1) and silently drops the rest, the
 * narrowest limit of the databases primary relationships run on (MariaDB and MySQL refuse identifiers of more
 * than 64 characters; 63 bytes are at most 63 characters).
 */
const MAX_IDENTIFIER_BYTES = 63;

/**
 * The longest primary table name, in UTF-8 bytes: PostgreSQL's limit less the longest suffix of a name
 * derived from it (`<table>_validate`, the trigger's function). At 63 bytes and more, MikroORM's
 * `<table>_pkey` is cut to the table's own name and PostgreSQL refuses the table as already existing;
 * from 55 bytes, two tables sharing their first 54 bytes would share one function.
 */
const MAX_PRIMARY_TABLE_BYTES = MAX_IDENTIFIER_BYTES - Buffer.byteLength(validateFunctionName(''));

/** The names a relationship's SQL uses, known once MikroORM has discovered its entities. */
export interface PrimaryRelationshipNames extends PrimaryTableNames {
  /** The parent's primary key column. */
  parentPrimaryKey: string;
}

function singlePrimaryKey(meta: EntityMetadata, platform: Platform): string {
  const pks = Object.values<EntityProperty>(meta.properties).filter(prop => prop.primary);
  if (pks.length !== 1) {
    throw PrimaryRelationshipError.compositePrimaryKey(meta.className);
  }
  const [pk] = pks;
  return pk.fieldNames?.[0] ?? platform.getConfig().getNamingStrategy().propertyToColumnName(pk.name);
}

/** Whether two single-column primary keys name the same row; a missing key (`null`, an entity not yet inserted) names none. */
export function samePrimaryKey(a: Primary<object> | null | undefined, b: Primary<object> | null | undefined): boolean {
  return a != null && b != null && String(a) === String(b);
}

/** Whether two entities are the same row. */
function sameEntity(a: object, b: object): boolean {
  return a === b || (a.constructor === b.constructor && samePrimaryKey(wrap(a, true).getPrimaryKey(), wrap(b, true).getPrimaryKey()));
}

/**
 * One `addPrimaryRelationship()` call: the primary table's entity, the parent's property, and the
 * state of every parent's primary child. It is carried on the parent property's metadata (see
 * {@link declaredRelationships}), so every ORM's copy of that metadata finds it; the table and column names
 * are worked out per ORM, at its discovery, and kept with that ORM's metadata ({@link configuredRelationships}).
 */
export class PrimaryRelationshipDefinition {
  /** The primary table's entity. Its table and column names are filled in during discovery. */
  readonly link: EntitySchema<PrimaryLink>;
  private readonly states = new WeakMap<object, PrimaryState>();

  constructor(
    readonly parent: EntityClass<object>,
    readonly property: string,
    readonly child: () => EntityClass<object>,
    readonly parentRelation: string,
    readonly parentColumn: string,
    readonly options: PrimaryRelationshipOptions = {},
  ) {
    // a class of its own per relationship, named `<Parent>_<property>` (MikroORM names the entity after it)
    class Link implements PrimaryLink {
      declare parent: object;
      declare child: object;
      declare createdAt: Date;
      declare updatedAt: Date;
    }
    Object.defineProperty(Link, 'name', { value: `${parent.name}_${property}` });
    this.link = new EntitySchema<PrimaryLink>({
      class: Link,
      comment: primaryTableComment(parentColumn),
      properties: {
        parent: { kind: 'm:1', entity: () => parent, primary: true, deleteRule: 'cascade' },
        child: { kind: 'm:1', entity: child, deleteRule: 'cascade' },
        // the columns of @CreatedAt/@UpdatedAt: timestamptz NOT NULL DEFAULT now, set on insert, updated_at on update
        createdAt: createdAtProperty<PrimaryLink>(),
        updatedAt: updatedAtProperty<PrimaryLink>(),
      },
    });
  }

  /** The state of one parent's primary child. */
  state(parent: object): PrimaryState {
    let state = this.states.get(parent);
    if (!state) {
      state = {};
      this.states.set(parent, state);
    }
    return state;
  }

  /**
   * Declares the parent's property to MikroORM and puts its accessor on the parent's prototype. Like
   * MikroORM's own relation properties, the first assignment (MikroORM's hydrator included) gives the
   * instance an enumerable accessor of its own, so the property is serialised and inspected.
   */
  install(): void {
    const options: PrimaryPropertyOptions = {
      entity: this.child,
      persist: false,
      nullable: true,
      // replaced, per ORM, at discovery by withPrimaryRelationships: an ORM without it cannot read the property
      formula: () => {
        throw PrimaryRelationshipError.notConfigured(this.parent.name, this.property);
      },
      // behind a function: MikroORM deep-copies metadata for each ORM, and every copy must find this definition
      [PRIMARY]: () => this,
    };
    ManyToOne(options)(this.parent.prototype, this.property);
    const accessor = (enumerable: boolean): PropertyDescriptor => {
      const definition = this;
      return {
        get(this: object) {
          return definition.state(this).value;
        },
        set(this: object, value: object | Reference<object> | null | undefined) {
          if (enumerable === false) {
            Object.defineProperty(this, definition.property, accessor(true));
          }
          definition.assign(this, value ? Reference.unwrapReference(value) : value);
        },
        enumerable,
        configurable: true,
      };
    };
    Object.defineProperty(this.parent.prototype, this.property, accessor(false));
  }

  /**
   * Sets the parent's primary child. MikroORM's hydrator records what the table holds; the
   * application's assignments are checked against the child's parent first.
   */
  private assign(parent: object, child: object | null | undefined): void {
    const state = this.state(parent);
    if (child === undefined) {
      state.value = undefined; // not loaded: nothing to write
      return;
    }
    if (isBeingHydrated(parent)) {
      this.markStored(parent, child);
      return;
    }
    if (child && wrap(child, true).isInitialized()) {
      const reference = (child as Record<string, object | undefined>)[this.parentRelation];
      const owner = reference ? Reference.unwrapReference(reference) : null;
      if (owner ? !sameEntity(owner, parent) : !this.readWithoutParent(child)) {
        throw PrimaryRelationshipError.notAffiliated(this.parent.name, this.property, this.child().name);
      }
    }
    state.value = child;
    setTouched(parent, true);
  }

  /**
   * Whether the child was read from the database without its parent relation (`fields`), so its
   * parent is unknown here, as for an unloaded reference: the trigger checks those.
   */
  private readWithoutParent(child: object): boolean {
    const state = entityState(child);
    return !!state?.loaded && !state.loadedProperties.has(this.parentRelation);
  }

  /** Records that the table now holds `child` for `parent` (after a flush). */
  markStored(parent: object, child: object | null): void {
    const state = this.state(parent);
    state.value = child;
    state.stored = child && wrap(child, true).getPrimaryKey();
  }
}

/** Marks the parent property's options as a primary relationship's, as timestamps mark theirs. */
const PRIMARY = Symbol('mikro-orm-coaster:primary-relationship');

/** The parent property's options: MikroORM's many-to-one, read through a formula, plus the marker. */
type PrimaryPropertyOptions = Parameters<typeof ManyToOne<object, object>>[0] & {
  [PRIMARY]: () => PrimaryRelationshipDefinition;
};

/** The primary relationship declared on a property, read from its metadata (an ORM's or the decorators'). */
function declaredOn(prop: Partial<EntityProperty>): PrimaryRelationshipDefinition | undefined {
  return (prop as Partial<PrimaryPropertyOptions>)[PRIMARY]?.();
}

/**
 * The primary relationships whose parent is `entityClass`, the class of `meta`: an ORM's metadata holds those
 * declared before its `MikroORM.init()`, the decorators' metadata (`MetadataStorage.getMetadataFromDecorator`)
 * all of them. A subclass inherits the property, not the relationship.
 */
export function declaredRelationships(meta: EntityMetadata, entityClass: unknown = meta.class): PrimaryRelationshipDefinition[] {
  return Object.values<EntityProperty>(meta.properties).flatMap(prop => {
    const definition = declaredOn(prop);
    return definition && definition.parent === entityClass ? [definition] : [];
  });
}

function declare(definition: PrimaryRelationshipDefinition): void {
  const declared: EntityProperty | undefined = MetadataStorage.getMetadataFromDecorator<Dictionary>(definition.parent as Dictionary).properties[
    definition.property
  ];
  if (declared && declaredOn(declared)) {
    throw PrimaryRelationshipError.alreadyRegistered(definition.parent.name, definition.property);
  }
  definition.install();
}

/**
 * Lets a parent name one of its children as its primary one (a user's primary email), stored in a
 * table `<parent table>_<child table>_primary` whose trigger refuses a child of another parent.
 * `parent[childProperty]` becomes the child or `null`: populate it, assign it, flush.
 *
 * Call it once at start-up, before `MikroORM.init()`. Parent and child need single-column
 * primary keys; `parentRelation` is the child's many-to-one to the parent, stored in `parentColumn`.
 * A table name longer than 54 bytes makes `MikroORM.init()` throw {@link PrimaryRelationshipError}
 * on every database: choose a shorter one with `options.tableName`.
 *
 * @example
 * ```ts
 * addPrimaryRelationship(User, 'primaryEmail', UserEmail, 'user', 'user_id');
 * const orm = await MikroORM.init(withPrimaryRelationships(defineCoasterConfig({ driver: SqliteDriver, dbName, entities: [User, UserEmail] })));
 * user.primaryEmail = email; // throws PrimaryRelationshipError if email.user is not user
 * await em.flush();
 * const again = await em.fork().findOneOrFail(User, user.id, { populate: ['primaryEmail'] });
 * ```
 */
export function addPrimaryRelationship<P extends object, C extends object>(
  parent: EntityClass<P>,
  childProperty: keyof P & string,
  child: EntityClass<C>,
  parentRelation: keyof C & string,
  parentColumn: string,
  options: PrimaryRelationshipOptions = {},
): void {
  declare(new PrimaryRelationshipDefinition(parent, childProperty, () => child, parentRelation, parentColumn, options));
}

/**
 * Decorator form of {@link addPrimaryRelationship}, on the parent's property, with the same options.
 * The child is given lazily, like MikroORM's own relation decorators.
 *
 * @example
 * ```ts
 * @Entity()
 * class User {
 *   @OneToMany(() => UserEmail, email => email.user)
 *   emails = new Collection<UserEmail>(this);
 *
 *   @PrimaryRelationship(() => UserEmail, 'user', 'user_id')
 *   primaryEmail!: UserEmail | null;
 *
 *   @PrimaryRelationship(() => UserAddress, 'user', 'user_id', { tableName: 'user_primary_address' })
 *   primaryAddress!: UserAddress | null;
 * }
 * ```
 */
export function PrimaryRelationship<C extends object>(
  child: () => EntityClass<C>,
  parentRelation: keyof C & string,
  parentColumn: string,
  options: PrimaryRelationshipOptions = {},
) {
  return (target: object, propertyName: string): void => {
    declare(new PrimaryRelationshipDefinition(target.constructor as EntityClass<object>, propertyName, child, parentRelation, parentColumn, options));
  };
}

/** One relationship as one ORM has it: its declaration and that ORM's table and column names. */
export interface ConfiguredRelationship {
  definition: PrimaryRelationshipDefinition;
  names: PrimaryRelationshipNames;
}

/** Each relationship's names in one ORM, keyed by that ORM's metadata of the primary table's entity. */
const namesByLink = new WeakMap<EntityMetadata, PrimaryRelationshipNames>();

/** Why each entity of an ORM that takes part in a relationship is inserted by a flush, by that ORM's metadata. */
const roles = new WeakMap<EntityMetadata, string>();

/** The relationships of each ORM whose discovery is done, by its metadata storage. */
const configuredByStorage = new WeakMap<MetadataStorage, readonly ConfiguredRelationship[]>();

/**
 * The primary relationships of the ORM whose metadata is `metadata`, with that ORM's names: those whose
 * parent and primary table it discovered with {@link discoverPrimaryRelationship}'s hook. None for an ORM
 * configured without `withPrimaryRelationships`.
 */
export function configuredRelationships(metadata: MetadataStorage): readonly ConfiguredRelationship[] {
  let configured = configuredByStorage.get(metadata);
  if (!configured) {
    configured = Object.values(metadata.getAll()).flatMap(meta =>
      declaredRelationships(meta).flatMap(definition => {
        const link = metadata.find(definition.link.meta.className);
        const names = link && namesByLink.get(link);
        return names ? [{ definition, names }] : [];
      }),
    );
    configuredByStorage.set(metadata, configured);
  }
  return configured;
}

/**
 * Why inserting an entity of `meta` (an ORM's metadata) needs a flush for primary relationships: it is the
 * parent, the child or the primary table of one. `undefined` for the other entities.
 */
export function primaryRole(meta: EntityMetadata): string | undefined {
  return roles.get(meta);
}

/**
 * Throws {@link PrimaryRelationshipError} when an entity of `metadata` is the parent of a primary
 * relationship whose table the ORM does not know: it was initialised without `withPrimaryRelationships`.
 */
export function checkPrimaryRelationshipsConfigured(metadata: MetadataStorage): void {
  const configured = new Set(configuredRelationships(metadata).map(r => r.definition));
  for (const meta of Object.values(metadata.getAll())) {
    const missing = declaredRelationships(meta).find(definition => !configured.has(definition));
    if (missing) {
      throw PrimaryRelationshipError.notConfigured(missing.parent.name, missing.property);
    }
  }
}

/**
 * The primary relationships whose parent is among `entities` (every one declared so far if entities are
 * given as paths), read from the decorators' metadata, for `withPrimaryRelationships`.
 */
export function primaryRelationshipsFor(entities: readonly unknown[]): PrimaryRelationshipDefinition[] {
  const metas = entities.some(e => typeof e === 'string')
    ? Object.values(MetadataStorage.getMetadata())
    : entities.flatMap(e => {
        const entityClass = e instanceof EntitySchema ? e.meta.class : e;
        return typeof entityClass === 'function' ? [MetadataStorage.getMetadataFromDecorator(entityClass)] : [];
      });
  return metas.flatMap(meta => Object.values<EntityProperty>(meta.properties).flatMap(prop => declaredOn(prop) ?? []));
}

/** The parent's property read from the primary table, as MikroORM selects it. */
function selectChildSQL(dialect: TriggerDialect, names: PrimaryRelationshipNames, table: FormulaTable): string {
  const quote = (name: string) => quoteIdentifier(dialect, name);
  return (
    `(select ${quote(names.childColumn)} from ${qualified(dialect, names.schema, names.table)} ` +
    `where ${quote(names.parentColumn)} = ${table}.${quote(names.parentPrimaryKey)})`
  );
}

/** The metadata an ORM's discovery has handed to {@link discoverPrimaryRelationship} so far, by class. */
const discovering = new WeakMap<Configuration, Map<unknown, EntityMetadata>>();

/**
 * MikroORM's `discovery.onMetadata` hook, for `withPrimaryRelationships`: once the parent, the child and the
 * primary table of a relationship are all discovered, names the table `<parent table>_<child table>_primary`
 * (or the `tableName` option) and its columns `<table>_<primary key>` for this ORM, on every database within
 * PostgreSQL's identifier length, so that an application built on SQLite does not fail at its first PostgreSQL
 * migration, and points this ORM's parent property at that table.
 * @throws {PrimaryRelationshipError} when a name is too long for PostgreSQL.
 */
export function discoverPrimaryRelationship(meta: EntityMetadata, platform: Platform): void {
  const config = platform.getConfig();
  let seen = discovering.get(config);
  if (!seen) {
    seen = new Map();
    discovering.set(config, seen);
  }
  seen.set(meta.class, meta);
  for (const parentMeta of seen.values()) {
    for (const definition of declaredRelationships(parentMeta)) {
      const childMeta = seen.get(definition.child());
      const linkMeta = seen.get(definition.link.meta.class);
      if ((meta === parentMeta || meta === childMeta || meta === linkMeta) && childMeta && linkMeta) {
        nameRelationship(definition, parentMeta, childMeta, linkMeta, platform);
      }
    }
  }
}

/** Names one relationship's table and columns in this ORM's metadata (see {@link discoverPrimaryRelationship}). */
function nameRelationship(
  definition: PrimaryRelationshipDefinition,
  parentMeta: EntityMetadata,
  childMeta: EntityMetadata,
  linkMeta: EntityMetadata,
  platform: Platform,
): void {
  const parentPrimaryKey = singlePrimaryKey(parentMeta, platform);
  const childPrimaryKey = singlePrimaryKey(childMeta, platform);
  // entities without a schema of their own live in the ORM's `schema` option when it names another
  // schema than the platform's default (PostgreSQL's `public`, which the trigger SQL leaves implicit)
  const configuredSchema = platform.getConfig().get('schema');
  const defaultSchema = configuredSchema === platform.getDefaultSchemaName() ? undefined : configuredSchema;
  const names: PrimaryRelationshipNames = {
    schema: linkMeta.schema ?? parentMeta.schema ?? defaultSchema,
    table: definition.options.tableName ?? `${parentMeta.tableName}_${childMeta.tableName}_primary`,
    parentColumn: `${parentMeta.tableName}_${parentPrimaryKey}`,
    childColumn: `${childMeta.tableName}_${childPrimaryKey}`,
    childTable: [childMeta.schema ?? defaultSchema, childMeta.tableName],
    childPrimaryKey,
    childParentColumn: definition.parentColumn,
    parentPrimaryKey,
  };
  if (Buffer.byteLength(names.table) > MAX_PRIMARY_TABLE_BYTES) {
    throw PrimaryRelationshipError.tableNameTooLong(definition.parent.name, definition.property, names.table, MAX_PRIMARY_TABLE_BYTES);
  }
  const longColumn = [names.parentColumn, names.childColumn].find(column => Buffer.byteLength(column) > MAX_IDENTIFIER_BYTES);
  if (longColumn) {
    throw PrimaryRelationshipError.columnNameTooLong(definition.parent.name, definition.property, longColumn, MAX_IDENTIFIER_BYTES);
  }
  linkMeta.tableName = names.table;
  linkMeta.schema = names.schema;
  for (const [prop, column] of [['parent', names.parentColumn], ['child', names.childColumn]] as const) {
    linkMeta.properties[prop].fieldNames = [column];
    linkMeta.properties[prop].joinColumns = [column];
  }
  parentMeta.properties[definition.property].formula = table => selectChildSQL(triggerDialect(platform), names, table);
  namesByLink.set(linkMeta, names);
  const role = `it takes part in the primary relationship ${definition.parent.name}.${definition.property}`;
  [parentMeta, childMeta, linkMeta].forEach(meta => roles.set(meta, role));
}

/**
 * MikroORM's `discovery.afterDiscovered` hook, for `withPrimaryRelationships`: checks each declaration whose
 * parent this ORM discovered against the discovered metadata.
 * @throws {PrimaryRelationshipError} for a parent discovered without its primary table (not listed in
 *   `entities`), a child relation that is not a many-to-one to the parent in `parentColumn`, or a database other
 *   than PostgreSQL, SQLite, MariaDB and MySQL.
 */
export function checkDiscoveredRelationships(storage: MetadataStorage, platform: Platform): void {
  discovering.delete(platform.getConfig());
  for (const parentMeta of Object.values(storage.getAll())) {
    for (const definition of declaredRelationships(parentMeta)) {
      if (!storage.find(definition.link.meta.className)) {
        throw PrimaryRelationshipError.notConfigured(definition.parent.name, definition.property);
      }
      triggerDialect(platform);
      const childName = definition.child().name;
      const prop = storage.get(childName).properties[definition.parentRelation] as EntityProperty | undefined;
      const actual = !prop
        ? `${childName} has no property '${definition.parentRelation}'`
        : prop.kind !== ReferenceKind.MANY_TO_ONE || prop.type !== parentMeta.className
          ? `it is a ${prop.kind} property of type ${prop.type}`
          : prop.fieldNames[0] !== definition.parentColumn
            ? `its column is '${prop.fieldNames.join("', '")}'`
            : undefined;
      if (actual) {
        throw PrimaryRelationshipError.invalidParentRelation(childName, definition.parentRelation, definition.parentColumn, parentMeta.className, actual);
      }
    }
  }
}
