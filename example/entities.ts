import { randomUUID } from 'node:crypto';
import { Entity, ManyToOne, PrimaryKey, Property, Unique, type Opt } from '@mikro-orm/core';
import { AutoInitDefault, CreatedAt, UpdatedAt } from '../src/index.js';

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

  /** Set on insert (also by findOrCreate), never changed. */
  @CreatedAt()
  createdAt!: Opt<Date>;

  /** Set on insert and moved forward by every flush that updates the row. */
  @UpdatedAt()
  updatedAt!: Opt<Date>;
}

/** A tag whose UUID key exists as soon as the object does, so its URL is known before the insert. */
@Entity()
export class Tag {
  @PrimaryKey({ type: 'uuid' })
  @AutoInitDefault(() => randomUUID())
  id!: Opt<string>;

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
