import { Entity, OptionalProps, PrimaryKey, Property, Unique } from '@mikro-orm/core';

/** A row written by one managed session, tagged with the session that wrote it. */
@Entity()
export class Note {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  owner!: string;

  @Property({ type: 'string' })
  @Unique()
  body!: string;
}

/** A row that concurrent sessions update, to provoke serialization failures. */
@Entity()
export class Counter {
  [OptionalProps]?: 'value';

  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'integer' })
  value: number = 0;
}

/** Every entity of the managed-session suites. */
export const sessionEntities = [Note, Counter];
