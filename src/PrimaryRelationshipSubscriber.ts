import {
  ChangeSetType,
  helper,
  type ChangeSet,
  type EntityClass,
  type EventSubscriber,
  type FlushEventArgs,
  type Primary,
  type UnitOfWork,
} from '@mikro-orm/core';
import { type PrimaryLink, type PrimaryRelationshipDefinition, primaryRelationships } from './primaryRelationship.js';
import { PrimaryRelationshipError } from './PrimaryRelationshipError.js';

/** A primary table row a flush writes: the parent, its new primary child, and the row's entity. */
interface PrimaryWrite {
  definition: PrimaryRelationshipDefinition;
  parent: object;
  child: object | null;
  link: PrimaryLink;
}

function sameKey(a: Primary<object> | null | undefined, b: Primary<object> | null | undefined): boolean {
  return a == null || b == null ? a == null && b == null : String(a) === String(b);
}

function entitiesOf(changeSets: ChangeSet<object>[], entityClass: EntityClass<object>, types: ChangeSetType[]): Set<object> {
  return new Set(changeSets.filter(cs => cs.meta.class === entityClass && types.includes(cs.type)).map(cs => cs.entity));
}

const deletions = [ChangeSetType.DELETE, ChangeSetType.DELETE_EARLY];

/**
 * Writes primary relationships on flush. In `onFlush` it turns every changed `parent.primaryChild`
 * into a change set of the primary table's entity (insert, update of the child, or delete), so the
 * row is written in the flush's transaction, after the parent and child it references. In
 * `afterFlush` it records what the table now holds, and forgets primaries whose child was deleted
 * (the database's ON DELETE CASCADE removed their rows).
 */
export class PrimaryRelationshipSubscriber implements EventSubscriber {
  private readonly writes = new WeakMap<UnitOfWork, PrimaryWrite[]>();

  async onFlush({ em, uow }: FlushEventArgs): Promise<void> {
    const writes: PrimaryWrite[] = [];
    const changeSets = uow.getChangeSets();
    for (const definition of primaryRelationships()) {
      const meta = em.getMetadata().find(definition.parent.name);
      if (meta?.class !== definition.parent) {
        continue;
      }
      if (!definition.isPartOf(em.getMetadata())) {
        // declared after MikroORM.init(): the ORM has no table to write an assignment to
        if ([...uow.getIdentityMap().getStore(meta).values()].some(parent => definition.state(parent).value !== undefined)) {
          throw PrimaryRelationshipError.notConfigured(definition.parent.name, definition.property);
        }
        continue;
      }
      const linkClass = definition.link.meta.class;
      const created = entitiesOf(changeSets, definition.parent, [ChangeSetType.CREATE]);
      const deleted = entitiesOf(changeSets, definition.parent, deletions);
      for (const parent of new Set([...uow.getIdentityMap().getStore(meta).values(), ...created])) {
        const state = definition.state(parent);
        if (state.value === undefined || deleted.has(parent)) {
          continue;
        }
        const child = state.value;
        const parentKey = helper(parent).getPrimaryKey();
        let stored = created.has(parent) ? null : state.stored;
        if (stored === undefined) {
          const row = await em.getDriver().findOne<PrimaryLink>(linkClass.name, { parent: parentKey }, { ctx: em.getTransactionContext() });
          stored = (row?.child as Primary<object> | undefined) ?? null;
        }
        if (child ? helper(child).getPrimaryKey() != null && sameKey(helper(child).getPrimaryKey(), stored) : stored === null) {
          continue;
        }
        let link: PrimaryLink;
        if (!child) {
          link = em.getReference(linkClass, parentKey as Primary<PrimaryLink>);
          uow.computeChangeSet(link, ChangeSetType.DELETE);
        } else if (stored !== null) {
          link = em.merge(linkClass, { parent: parentKey, child: stored }, { refresh: true });
          link.child = child;
          uow.computeChangeSet(link);
        } else {
          link = em.create(linkClass, { parent, child });
          uow.computeChangeSet(link);
        }
        writes.push({ definition, parent, child, link });
      }
    }
    this.writes.set(uow, writes);
  }

  afterFlush({ em, uow }: FlushEventArgs): void {
    for (const { definition, parent, child, link } of this.writes.get(uow) ?? []) {
      definition.markStored(parent, child);
      if (child) {
        // the row's entity only carried this write: keep the identity map to the application's entities
        uow.unsetIdentity(link);
      }
    }
    this.writes.delete(uow);
    const changeSets = uow.getChangeSets();
    for (const definition of primaryRelationships().filter(d => d.isPartOf(em.getMetadata()))) {
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
}
