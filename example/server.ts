import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { pathToFileURL } from 'node:url';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import config from '../mikro-orm.config.js';
import { closeOrm, getOrm, initOrm, managedSession, onCommit } from '../src/index.js';
import { Follow, Tag, User } from './entities.js';

/** A request the client must fix: answered with 400 and the message. */
class BadRequest extends Error {}

/** What `POST /users` takes. */
interface SignUp {
  email: string;
  name: string;
  tags: string[];
}

/** What the example's routes answer with. */
interface Reply {
  status: number;
  body: unknown;
}

/** Sends the welcome mail of a new user; the demo prints it. */
export type Mailer = (email: string) => void;

/**
 * The example's HTTP API, every request in a managed session of the ORM that `initOrm` initialised:
 *
 * - `POST /users` with `{ email, name, tags }` inserts the user, then the tags it follows, and mails a
 *   welcome once the session has committed. A bad tag is found only after the user's INSERT ran: the
 *   session rolls it back, so the failed request leaves nothing behind (and sends no mail).
 * - `GET /users/:email` answers with the user and the names of the tags they follow.
 */
export function createExampleServer(mailer: Mailer = email => console.log(`welcome mail sent to ${email}`)): Server {
  return createServer((request, response) => {
    route(request, mailer).then(
      reply => send(response, reply),
      (error: unknown) => send(response, errorReply(error)),
    );
  });
}

async function route(request: IncomingMessage, mailer: Mailer): Promise<Reply> {
  const url = new URL(request.url ?? '/', 'http://localhost');
  if (request.method === 'POST' && url.pathname === '/users') {
    return { status: 201, body: await signUp(parseSignUp(await readBody(request)), mailer) };
  }
  const userPath = /^\/users\/([^/]+)$/.exec(url.pathname);
  if (request.method === 'GET' && userPath) {
    const user = await managedSession(() => showUser(decodeURIComponent(userPath[1])));
    return user ? { status: 200, body: user } : { status: 404, body: { error: 'no such user' } };
  }
  return { status: 404, body: { error: 'no such route' } };
}

/** `POST /users`: all of it commits, or none of it. */
function signUp({ email, name, tags }: SignUp, mailer: Mailer) {
  return managedSession(async em => {
    const user = em.create(User, { email, name });
    await em.flush(); // the INSERT runs here; a bad tag below rolls it back
    for (const tagName of tags) {
      if (!/^[a-z]+$/.test(tagName)) {
        throw new BadRequest(`tag names are lower-case letters, but got ${JSON.stringify(tagName)}`);
      }
      em.create(Follow, { user, tag: await em.findOrCreate(Tag, { name: tagName }) });
    }
    onCommit(() => mailer(email));
    return { id: user.id, email, name, tags };
  });
}

/** `GET /users/:email`, written against the global `getOrm().em`: inside a session it is the session's. */
async function showUser(email: string) {
  const em = getOrm().em;
  const user = await em.findOne(User, { email });
  if (!user) {
    return undefined;
  }
  const follows = await em.find(Follow, { user }, { populate: ['tag'], orderBy: { tag: { name: 'asc' } } });
  return { id: user.id, email: user.email, name: user.name, tags: follows.map(follow => follow.tag.name) };
}

function parseSignUp(text: string): SignUp {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new BadRequest('the body must be JSON');
  }
  const { email, name, tags } = (body ?? {}) as Partial<Record<keyof SignUp, unknown>>;
  if (typeof email !== 'string' || typeof name !== 'string' || !Array.isArray(tags) || !tags.every(t => typeof t === 'string')) {
    throw new BadRequest('expected { "email": string, "name": string, "tags": string[] }');
  }
  return { email, name, tags };
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function errorReply(error: unknown): Reply {
  if (error instanceof BadRequest) {
    return { status: 400, body: { error: error.message } };
  }
  if (error instanceof UniqueConstraintViolationException) {
    return { status: 409, body: { error: 'that e-mail address is taken' } };
  }
  console.error(error);
  return { status: 500, body: { error: 'internal error' } };
}

function send(response: ServerResponse, { status, body }: Reply): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** `npm run serve`: the API on http://127.0.0.1:$PORT (default 3000), on the database of mikro-orm.config.ts. */
async function main(): Promise<void> {
  const orm = await initOrm(config);
  await orm.schema.updateSchema();
  const port = Number(process.env.PORT ?? 3000);
  const server = createExampleServer().listen(port, '127.0.0.1', () => {
    console.log(`listening on http://127.0.0.1:${port}; try:`);
    console.log(`  curl -X POST localhost:${port}/users -d '{"email":"ada@example.com","name":"Ada","tags":["math"]}'`);
    console.log(`  curl localhost:${port}/users/ada@example.com`);
  });
  process.once('SIGINT', () => server.close(() => void closeOrm()));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
