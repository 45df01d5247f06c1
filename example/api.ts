import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { getOrm, onCommit } from '../src/index.js';
import { Follow, Tag, User } from './entities.js';

/**
 * The example's HTTP API, the same in every server (`server.ts` on node:http, `express.ts`, `fastify.ts`):
 *
 * - `POST /users` with `{ email, name, tags }` inserts the user, then the tags it follows, and mails a
 *   welcome once the session has committed. A bad tag is found only after the user's INSERT ran: the
 *   session rolls it back, so the failed request leaves nothing behind (and sends no mail).
 * - `GET /users/:email` answers with the user and the names of the tags they follow.
 *
 * The handlers below use the global `getOrm().em`: each server runs them in the request's managed session.
 */

/** A request the client must fix: answered with 400 and the message. */
export class BadRequest extends Error {}

/** What `POST /users` takes. */
export interface SignUp {
  email: string;
  name: string;
  tags: string[];
}

/** What a route answers with. */
export interface Reply {
  status: number;
  body: unknown;
}

/** Sends the welcome mail of a new user; the demo prints it. */
export type Mailer = (email: string) => void;

/** Prints the welcome mail instead of sending it. */
export const consoleMailer: Mailer = email => console.log(`welcome mail sent to ${email}`);

/** Checks a parsed JSON body of `POST /users`. */
export function parseSignUp(body: unknown): SignUp {
  const { email, name, tags } = (body ?? {}) as Partial<Record<keyof SignUp, unknown>>;
  if (typeof email !== 'string' || typeof name !== 'string' || !Array.isArray(tags) || !tags.every(t => typeof t === 'string')) {
    throw new BadRequest('expected { "email": string, "name": string, "tags": string[] }');
  }
  return { email, name, tags };
}

/** `POST /users`, in the request's session: all of it commits, or none of it. */
export async function signUp({ email, name, tags }: SignUp, mailer: Mailer): Promise<Reply> {
  const em = getOrm().em;
  const user = em.create(User, { email, name });
  await em.flush(); // the INSERT runs here; a bad tag below rolls it back
  for (const tagName of tags) {
    if (!/^[a-z]+$/.test(tagName)) {
      throw new BadRequest(`tag names are lower-case letters, but got ${JSON.stringify(tagName)}`);
    }
    em.create(Follow, { user, tag: await em.findOrCreate(Tag, { name: tagName }) });
  }
  onCommit(() => mailer(email));
  return { status: 201, body: { id: user.id, email, name, tags } };
}

/** `GET /users/:email`, in the request's session. */
export async function showUser(email: string): Promise<Reply> {
  const em = getOrm().em;
  const user = await em.findOne(User, { email });
  if (!user) {
    return { status: 404, body: { error: 'no such user' } };
  }
  const follows = await em.find(Follow, { user }, { populate: ['tag'], orderBy: { tag: { name: 'asc' } } });
  return { status: 200, body: { id: user.id, email: user.email, name: user.name, tags: follows.map(follow => follow.tag.name) } };
}

/**
 * The reply to a failed request: 400 for a {@link BadRequest}, 409 for a taken e-mail address, the framework's
 * own client errors (a body it could not parse: a 4xx `status` or `statusCode`) as they are, and 500 (logged)
 * for anything else.
 */
export function errorReply(error: unknown): Reply {
  if (error instanceof BadRequest) {
    return { status: 400, body: { error: error.message } };
  }
  if (error instanceof UniqueConstraintViolationException) {
    return { status: 409, body: { error: 'that e-mail address is taken' } };
  }
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown };
  const clientStatus = Number(statusCode ?? status);
  if (clientStatus >= 400 && clientStatus < 500) {
    return { status: clientStatus, body: { error: (error as Error).message } };
  }
  console.error(error);
  return { status: 500, body: { error: 'internal error' } };
}
