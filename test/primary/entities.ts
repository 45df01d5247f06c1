import { Collection, Entity, ManyToOne, OneToMany, PrimaryKey, Property } from '@mikro-orm/core';
import { addPrimaryRelationship } from '../../src/index.js';

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
