import { Collection, Entity, ManyToOne, OneToMany, PrimaryKey, Property, Unique } from '@mikro-orm/core';

/** A tag with a unique name: the row two workers race to insert. */
@Entity()
export class Tag {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  name!: string;

  /** Not unique: two tags may share a colour, so filters on it can match several rows. */
  @Property({ type: 'string', nullable: true })
  color?: string;
}

/** An account whose e-mail addresses are children, to test cascades from a managed parent. */
@Entity()
export class Account {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  /** Unique, so that `findOrCreate(Account, { name })` is race-safe. */
  @Property({ type: 'string' })
  @Unique()
  name!: string;

  @OneToMany(() => Address, address => address.account)
  addresses = new Collection<Address>(this);
}

@Entity()
export class Address {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  email!: string;

  @ManyToOne(() => Account)
  account!: Account;
}

/** Every entity of {@link Tag}'s suites. */
export const raceEntities = [Tag, Account, Address];
