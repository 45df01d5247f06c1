import {
  ChangeSetType,
  MetadataStorage,
  wrap,
  type Dictionary,
  type ChangeSet,
  type EntityClass,
  type EntityManager,
  type EntityMetadata,
  type EventSubscriber,
  type FlushEventArgs,
  type Primary,
  type Transaction,
  type TransactionEventArgs,
  type UnitOfWork,
} from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import type { InsertPathAware } from '../inserts/insertPath.js';
import {
  type PrimaryLink,
  type PrimaryRelationshipDefinition,
  configuredRelationships,
  declaredRelationships,
  primaryRole,
  samePrimaryKey,
} from './primaryRelationship.js';
import { PrimaryRelationshipError } from './PrimaryRelationshipError.js';

/** A parent's primary child that a flush writes to the primary table (`null`: delete the row). */
interface PrimaryWrite {
  definition: PrimaryRelationshipDefinition;
  parent: object;
  child: object | null;
}

/** What one flush writes, and whether it is written yet. */
interface PendingWrites {
  writes: PrimaryWrite[];
  written: boolean;
}

function entitiesOf(changeSets: ChangeSet<object>[], entityClass: EntityClass<object>, types: ChangeSetType[]): Set<object> {
  return new Set(changeSets.filter(cs => cs.meta.class === entityClass && types.includes(cs.type)).map(cs => cs.entity));
}

const deletions = [ChangeSetType.DELETE, ChangeSetType.DELETE_EARLY];

/**
 * Throws {@link PrimaryRelationshipError} when a managed entity has a primary child assigned through a
 * relationship declared after `MikroORM.init()`: its ORM has no table to write it to. Those declarations are
 * in the decorators' metadata of the entity's class, not in the ORM's copy of it.
 */
function refuseLateDeclarations(em: EntityManager, uow: UnitOfWork, configured: ReadonlySet<PrimaryRelationshipDefinition>): void {
  for (const meta of Object.values(em.getMetadata().getAll())) {
    const store = uow.getIdentityMap().getStore(meta);
    if (!meta.class || store.size === 0) {
      continue;
    }
    const declared = declaredRelationships(MetadataStorage.getMetadataFromDecorator<Dictionary>(meta.class as Dictionary), meta.class);
    for (const definition of declared.filter(d => !configured.has(d))) {
      if ([...store.values()].some(parent => definition.state(parent).value !== undefined)) {
        throw PrimaryRelationshipError.notConfigured(definition.parent.name, definition.property);
      }
    }
  }
}

/**
 * Writes primary relationships on flush, in the flush's transaction. `onFlush` collects every changed
 * `parent.primaryChild`; the rows are written once the flush's own statements have run, as an upsert
 * (`insert ... on conflict (<parent column>) do update`) for a child and a plain delete for `null`, so
 * the write never depends on what this process last saw of the table. A flush that starts its own
 * transaction writes them in `beforeTransactionCommit`; one inside a transaction the application began
 * writes them in `afterFlush`, in that transaction; one with nothing else to write opens a transaction
 * for them. `afterFlush` then records what the table holds, and forgets primaries whose child was deleted
 * (the database's ON DELETE CASCADE removed their rows). Nothing is recorded, and no entity is left in
 * the identity map, by a flush that fails.
 */
export class PrimaryRelationshipSubscriber implements EventSubscriber, InsertPathAware {
  private readonly pending = new WeakMap<UnitOfWork, PendingWrites>();

  /** Parents, children and primary-table rows are inserted by a flush, which this subscriber follows. */
  insertNeedsFlush(meta: EntityMetadata): string | undefined {
    return primaryRole(meta);
  }

  /** As for inserts: parents, children and primary-table rows are updated by a flush, which this subscriber follows. */
  updateNeedsFlush(meta: EntityMetadata): string | undefined {
    return primaryRole(meta);
  }

  async onFlush({ em, uow }: FlushEventArgs): Promise<void> {
    this.pending.delete(uow); // left by a flush that failed
    const writes: PrimaryWrite[] = [];
    const changeSets = uow.getChangeSets();
    const configured = configuredRelationships(em.getMetadata());
    refuseLateDeclarations(em, uow, new Set(configured.map(r => r.definition)));
    for (const { definition } of configured) {
      const meta = em.getMetadata().get(definition.parent.name);
      const created = entitiesOf(changeSets, definition.parent, [ChangeSetType.CREATE]);
      const deleted = entitiesOf(changeSets, definition.parent, deletions);
      const deletedChildren = entitiesOf(changeSets, definition.child(), deletions);
      for (const parent of new Set([...uow.getIdentityMap().getStore(meta).values(), ...created])) {
        const { value, stored } = definition.state(parent);
        if (value === undefined || deleted.has(parent)) {
          continue;
        }
        // a parent inserted by this flush has no row; a parent whose row is unknown gets the write
        const known = created.has(parent) ? null : stored;
        if (known !== undefined && (value ? samePrimaryKey(wrap(value, true).getPrimaryKey(), known) : known === null)) {
          continue;
        }
        // the row is written after this flush's deletes: a child deleted by it leaves no row
        writes.push({ definition, parent, child: value && !deletedChildren.has(value) ? value : null });
      }
    }
    if (writes.length > 0) {
      this.pending.set(uow, { writes, written: false });
    }
  }

  /** Writes the rows of a flush that started its own transaction, just before it commits. */
  async beforeTransactionCommit({ em, uow, transaction }: TransactionEventArgs): Promise<void> {
    const pending = uow && this.pending.get(uow);
    if (pending && !pending.written) {
      await this.write(em, pending.writes, transaction);
      pending.written = true;
    }
  }

  async afterFlush({ em, uow }: FlushEventArgs): Promise<void> {
    const pending = this.pending.get(uow);
    this.pending.delete(uow);
    if (pending && !pending.written) {
      const ctx = em.getTransactionContext();
      await (ctx ? this.write(em, pending.writes, ctx) : em.getConnection('write').transactional(trx => this.write(em, pending.writes, trx)));
    }
    for (const { definition, parent, child } of pending?.writes ?? []) {
      definition.markStored(parent, child);
    }
    const changeSets = uow.getChangeSets();
    for (const { definition } of configuredRelationships(em.getMetadata())) {
      // a parent inserted by this flush has exactly the row this flush wrote, if any
      for (const parent of entitiesOf(changeSets, definition.parent, [ChangeSetType.CREATE])) {
        definition.markStored(parent, definition.state(parent).value ?? null);
      }
      const deletedChildren = entitiesOf(changeSets, definition.child(), deletions);
      if (deletedChildren.size === 0) {
        continue;
      }
      for (const parent of uow.getIdentityMap().getStore(em.getMetadata().get(definition.parent.name)).values()) {
        const { value } = definition.state(parent);
        if (value && deletedChildren.has(value)) {
          definition.markStored(parent, null);
        }
      }
    }
  }

  /**
   * Writes the rows, per relationship: one delete of the rows cleared, one upsert of the rows set
   * (`updated_at` moves, `created_at` stays), with MikroORM's query builder in the given transaction.
   */
  private async write(em: EntityManager, writes: PrimaryWrite[], ctx: Transaction | undefined): Promise<void> {
    // primary relationships exist on PostgreSQL, SQLite and the MySQL family only (see triggerDialect)
    const driver = em.getDriver() as AbstractSqlDriver;
    const key = (entity: object) => wrap(entity, true).getPrimaryKey() as Primary<object>;
    // as MikroORM's driver methods do, report database errors (the trigger's) as MikroORM's exceptions
    const run = (query: Promise<unknown>) =>
      query.catch((error: Error) => {
        throw driver.convertException(error);
      });
    for (const definition of new Set(writes.map(w => w.definition))) {
      const table = () => driver.createQueryBuilder<PrimaryLink>(definition.link.meta.className, ctx, 'write');
      const mine = writes.filter(w => w.definition === definition);
      const cleared = mine.filter(w => !w.child).map(w => key(w.parent));
      if (cleared.length > 0) {
        await run(table().delete({ parent: { $in: cleared } }).execute('run'));
      }
      const now = new Date();
      const rows = mine.flatMap(w => (w.child ? [{ parent: key(w.parent), child: key(w.child), createdAt: now, updatedAt: now }] : []));
      if (rows.length > 0) {
        await run(table().insert(rows).onConflict('parent').merge(['child', 'updatedAt']).execute('run'));
      }
    }
  }
}
