import { Entity, ManyToOne, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import { addPrimaryRelationship } from '../src/primary/index.js';
import { User } from './entities.js';

/**
 * A user's e-mail address; one of them is the user's primary one. The column pointing to the user is
 * `owner_id`, while the primary table's is `user_id`.
 */
@Entity()
export class UserEmail {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  @Unique()
  address!: string;

  @ManyToOne(() => User, { fieldName: 'owner_id', deleteRule: 'cascade' })
  user!: User;
}

declare module './entities.js' {
  interface User {
    /** The user's primary e-mail address, stored in `user_user_email_primary`. */
    primaryEmail: UserEmail | null;
  }
}

addPrimaryRelationship(User, 'primaryEmail', UserEmail, 'user', 'owner_id');

export const emailEntities = [UserEmail];
