import { Entity, PrimaryKey, Property, Unique } from '@mikro-orm/core';

/** The benchmark's row: a unique name, as in the race-safe-inserts tests. Types are explicit for tsx. */
@Entity({ tableName: 'bench_tag' })
export class BenchTag {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  /** What `updateOrCreate` and `em.upsert` write to an existing row. */
  @Property({ type: 'string', nullable: true })
  note?: string;
}
