import type { CoasterEntityManager } from '../src/index.js';
import { UserEmail } from './emails.js';
import { Follow, Tag, User } from './entities.js';

/** What a handler did, for the demo's report. */
export interface HandlerResult {
  user: User;
  tag: Tag;
  /** Whether this request inserted the follow, or found it (another request got in first). */
  created: boolean;
}

/**
 * "POST /users/:email/follow/:tag": makes sure the user, the tag and the follow exist. Run by many
 * concurrent requests for the same user and tag, every request succeeds and the database ends with
 * one row of each.
 */
export async function followTag(em: CoasterEntityManager, email: string, tagName: string): Promise<HandlerResult> {
  const user = await em.findOrCreate(User, { email }, { name: email.split('@')[0] });
  const tag = await em.findOrCreate(Tag, { name: tagName });
  const { created } = await em.getOrCreate(Follow, { user, tag });
  return { user, tag, created };
}

/**
 * "PUT /users/:email/primary-email": adds an address to the user (if new) and makes it the user's
 * primary one. The database refuses an address of another user even if this check were skipped.
 */
export async function setPrimaryEmail(em: CoasterEntityManager, email: string, address: string): Promise<UserEmail> {
  const user = await em.findOneOrFail(User, { email });
  const userEmail = await em.findOrCreate(UserEmail, { address }, { user });
  user.primaryEmail = userEmail;
  await em.flush();
  return userEmail;
}
