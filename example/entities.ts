import { Entity, ManyToOne, PrimaryKey, Property, Unique } from '@mikro-orm/core';

/**
 * The example app's entities. Types are given explicitly: `npm start` runs under tsx (esbuild), which
 * does not emit decorator metadata.
 */
@Entity()
export class User {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  email!: string;

  @Property({ type: 'string' })
  name!: string;
}

@Entity()
export class Tag {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;
}

/** A user following a tag: the (user, tag) pair is unique, so a double click must not fail. */
@Entity()
@Unique({ properties: ['user', 'tag'] })
export class Follow {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @ManyToOne(() => User)
  user!: User;

  @ManyToOne(() => Tag)
  tag!: Tag;
}

export const entities = [User, Tag, Follow];
