import { pathToFileURL } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import config from '../mikro-orm.config.js';
import { managedSessionPlugin } from '../src/sessions/fastify.js';
import { closeOrm, initOrm } from '../src/index.js';
import { consoleMailer, errorReply, parseSignUp, showUser, signUp, type Mailer, type Reply } from './api.js';

/**
 * The example's HTTP API (see `api.ts`) on Fastify 5: `managedSessionPlugin` runs every request in a managed
 * session, so the handlers only do the work. `POST /users` with a bad tag throws after the user's INSERT; the
 * error handler answers 400, and the plugin rolls the session back because of it.
 */
export async function createFastifyApp(mailer: Mailer = consoleMailer): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(managedSessionPlugin);
  app.post('/users', async (request, reply) => send(reply, await signUp(parseSignUp(request.body), mailer)));
  app.get<{ Params: { email: string } }>('/users/:email', async (request, reply) =>
    send(reply, await showUser(request.params.email)),
  );
  app.setErrorHandler((error, _request, reply) => send(reply, errorReply(error)));
  app.addHook('onClose', () => closeOrm());
  return app;
}

function send(reply: FastifyReply, { status, body }: Reply): FastifyReply {
  return reply.code(status).send(body);
}

/** `npm run serve:fastify`: the API on http://127.0.0.1:$PORT (default 3000), on the database of mikro-orm.config.ts. */
async function main(): Promise<void> {
  const orm = await initOrm(config);
  await orm.schema.updateSchema();
  const port = Number(process.env.PORT ?? 3000);
  const app = await createFastifyApp();
  await app.listen({ port, host: '127.0.0.1' });
  console.log(`Fastify listening on http://127.0.0.1:${port}; try:`);
  console.log(`  curl -X POST localhost:${port}/users -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada","tags":["math"]}'`);
  console.log(`  curl localhost:${port}/users/ada@example.com`);
  process.once('SIGINT', () => void app.close());
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
