import { Collection, Entity, ManyToOne, OneToMany, PrimaryKey, Property } from '@mikro-orm/core';
import { PrimaryRelationship } from '../../src/primary/index.js';

/**
 * A parent and child whose tables and columns need quoting (double quotes, backticks, spaces, upper case), with
 * the relationship declared by the decorator.
 */
@Entity({ tableName: 'Odd "Parent"' })
export class OddParent {
  @PrimaryKey({ type: 'integer', fieldName: 'Key "id"' })
  id!: number;

  @OneToMany(() => OddChild, child => child.parent)
  children = new Collection<OddChild>(this);

  @PrimaryRelationship(() => OddChild, 'parent', 'the "parent" id')
  favourite!: OddChild | null;
}

@Entity({ tableName: 'odd `child`' })
export class OddChild {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  name!: string;

  @ManyToOne(() => OddParent, { fieldName: 'the "parent" id', deleteRule: 'cascade' })
  parent!: OddParent;
}

export const oddEntities = [OddParent, OddChild];
