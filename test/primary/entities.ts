import { Collection, Entity, ManyToOne, OneToMany, PrimaryKey, Property } from '@mikro-orm/core';
import { addPrimaryRelationship } from '../../src/primary/index.js';

/**
 * Coaster's ParentForPrimary / ChildForPrimary. The child's parent column (`parent_ref`) is named
 * differently from the primary table's parent column (`parent_for_primary_id`), so a mix-up is caught.
 */
@Entity()
export class ParentForPrimary {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  name!: string;

  @OneToMany(() => ChildForPrimary, child => child.parent)
  children = new Collection<ChildForPrimary>(this);

  primaryChild!: ChildForPrimary | null;
}

@Entity()
export class ChildForPrimary {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  name!: string;

  @ManyToOne(() => ParentForPrimary, { fieldName: 'parent_ref', deleteRule: 'cascade' })
  parent!: ParentForPrimary;
}

addPrimaryRelationship(ParentForPrimary, 'primaryChild', ChildForPrimary, 'parent', 'parent_ref');

export const primaryEntities = [ParentForPrimary, ChildForPrimary];

/**
 * A parent and child whose many-to-one is nullable: MikroORM inserts a new child before its new
 * parent and sets its parent by a later update in the same flush.
 */
@Entity()
export class LooseParent {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @OneToMany(() => LooseChild, child => child.parent)
  children = new Collection<LooseChild>(this);

  primaryChild!: LooseChild | null;
}

@Entity()
export class LooseChild {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  name!: string;

  @ManyToOne(() => LooseParent, { fieldName: 'loose_parent_id', nullable: true, deleteRule: 'cascade' })
  parent?: LooseParent | null;
}

addPrimaryRelationship(LooseParent, 'primaryChild', LooseChild, 'parent', 'loose_parent_id');

export const looseEntities = [LooseParent, LooseChild];
