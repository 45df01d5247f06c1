import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { pathToFileURL } from 'node:url';
import config from '../mikro-orm.config.js';
import { closeOrm, initOrm, managedSession } from '../src/index.js';
import { BadRequest, consoleMailer, errorReply, parseSignUp, showUser, signUp, type Mailer, type Reply } from './api.js';

export type { Mailer } from './api.js';

/**
 * The example's HTTP API (see `api.ts`) on plain `node:http`, every request's work in a `managedSession` of
 * the ORM that `initOrm` initialised. `express.ts` and `fastify.ts` serve the same API with the framework
 * integrations instead.
 */
export function createExampleServer(mailer: Mailer = consoleMailer): Server {
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
    const body = parseSignUp(parseJson(await readBody(request)));
    return managedSession(() => signUp(body, mailer));
  }
  const userPath = /^\/users\/([^/]+)$/.exec(url.pathname);
  if (request.method === 'GET' && userPath) {
    return managedSession(() => showUser(decodeURIComponent(userPath[1])));
  }
  return { status: 404, body: { error: 'no such route' } };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest('the body must be JSON');
  }
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
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
