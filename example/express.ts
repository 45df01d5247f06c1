import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import express, { type ErrorRequestHandler, type Express, type Response } from 'express';
import config from '../mikro-orm.config.js';
import { managedSessionMiddleware } from '../src/sessions/express.js';
import { closeOrm, initOrm } from '../src/index.js';
import { consoleMailer, errorReply, parseSignUp, showUser, signUp, type Mailer, type Reply } from './api.js';

/**
 * The example's HTTP API (see `api.ts`) on Express 5: `managedSessionMiddleware()` runs every request in a
 * managed session, so the handlers only do the work. `POST /users` with a bad tag throws after the user's
 * INSERT; Express's error handler answers 400, and the middleware rolls the session back because of it.
 */
export function createExpressApp(mailer: Mailer = consoleMailer): Express {
  const app = express();
  app.use(express.json(), managedSessionMiddleware());
  app.post('/users', async (req, res) => send(res, await signUp(parseSignUp(req.body), mailer)));
  app.get('/users/:email', async (req, res) => send(res, await showUser(req.params.email)));
  const errorHandler: ErrorRequestHandler = (error, _req, res, next) => {
    if (res.headersSent) {
      next(error); // Express closes the connection
      return;
    }
    send(res, errorReply(error));
  };
  app.use(errorHandler);
  return app;
}

function send(res: Response, { status, body }: Reply): void {
  res.status(status).json(body);
}

/** `npm run serve:express`: the API on http://127.0.0.1:$PORT (default 3000), on the database of mikro-orm.config.ts. */
async function main(): Promise<void> {
  const orm = await initOrm(config);
  await orm.schema.updateSchema();
  const port = Number(process.env.PORT ?? 3000);
  const server: Server = createExpressApp().listen(port, '127.0.0.1', () => {
    console.log(`Express listening on http://127.0.0.1:${port}; try:`);
    console.log(`  curl -X POST localhost:${port}/users -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada","tags":["math"]}'`);
    console.log(`  curl localhost:${port}/users/ada@example.com`);
  });
  process.once('SIGINT', () => server.close(() => void closeOrm()));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
