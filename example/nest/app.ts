import 'reflect-metadata';
import { pathToFileURL } from 'node:url';
import {
  Body,
  Catch,
  Controller,
  Get,
  Inject,
  Module,
  Param,
  Post,
  Res,
  type ArgumentsHost,
  type ExceptionFilter,
  type INestApplication,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Response } from 'express';
import config from '../../mikro-orm.config.js';
import { CoasterEntityManager, ManagedSession, getOrm, type CoasterOptions } from '../../src/index.js';
import { CoasterMikroOrmModule } from '../../src/nestjs/index.js';
import { withPrimaryRelationships } from '../../src/primary/index.js';
import { consoleMailer, errorReply, parseSignUp, showUser, signUp, type Mailer, type Reply } from '../api.js';
import { Tag } from '../entities.js';

/**
 * The example's HTTP API (see `../api.ts`) on NestJS 11 with `@mikro-orm/nestjs`, through
 * `CoasterMikroOrmModule`: every route runs in a managed session (`@ManagedSession()`, in either order with the
 * route decorator), which joins the request context that `@mikro-orm/nestjs` opens for each request.
 * `POST /users` with a bad tag throws after the user's INSERT: the session rolls back, and the exception filter
 * answers 400. `GET /tags/:name` shows `CoasterEntityManager` injected by class.
 *
 * The constructors name their injection tokens with `@Inject(...)` because `npm run serve:nest` runs this file
 * with tsx, which emits no decorator metadata; an app compiled by tsc (or Nest's CLI) writes
 * `constructor(private readonly em: CoasterEntityManager)` and needs no `@Inject`.
 */

/** The token of the {@link Mailer} the app sends its welcome mails with. */
const MAILER = Symbol('mailer');

@Controller('users')
class UsersController {
  constructor(@Inject(MAILER) private readonly mailer: Mailer) {}

  @Post()
  @ManagedSession()
  async create(@Body() body: unknown, @Res({ passthrough: true }) response: Response): Promise<unknown> {
    return send(response, await signUp(parseSignUp(body), this.mailer));
  }

  @ManagedSession()
  @Get(':email')
  async show(@Param('email') email: string, @Res({ passthrough: true }) response: Response): Promise<unknown> {
    return send(response, await showUser(email));
  }
}

@Controller('tags')
class TagsController {
  constructor(@Inject(CoasterEntityManager) private readonly em: CoasterEntityManager) {}

  /**
   * The tag of that name, made by the first request that asks for it, however many race. Under REPEATABLE READ
   * (MariaDB's and MySQL's default) a racing request's snapshot can hide the winner's row: `findOrCreate` then
   * throws `TransactionRetryError`, and the session runs again.
   */
  @ManagedSession({ retries: 3 })
  @Post(':name')
  async findOrCreate(@Param('name') name: string): Promise<{ id: string; name: string }> {
    const tag = await this.em.findOrCreate(Tag, { name }); // the session's fork: the em resolves through the context
    return { id: tag.id, name: tag.name };
  }
}

/** Answers every error as `errorReply` says: 400 for a bad sign-up, 409 for a taken address, 500 otherwise. */
@Catch()
class ErrorReplyFilter implements ExceptionFilter {
  catch(error: unknown, host: ArgumentsHost): void {
    const { status, body } = errorReply(error);
    host.switchToHttp().getResponse<Response>().status(status).json(body);
  }
}

function send(response: Response, { status, body }: Reply): unknown {
  response.status(status);
  return body;
}

/**
 * The Nest app of the example API on the database of `options` (MikroORM options, through
 * `CoasterMikroOrmModule.forRoot` and `withPrimaryRelationships`), not yet listening; `app.close()` closes its ORM.
 */
export async function createNestApp(options: CoasterOptions, mailer: Mailer = consoleMailer): Promise<INestApplication> {
  @Module({
    // the example's User has a primary email: its ORM needs the primary relationships' wiring
    imports: [CoasterMikroOrmModule.forRoot(withPrimaryRelationships(options))],
    controllers: [UsersController, TagsController],
    providers: [{ provide: MAILER, useValue: mailer }],
  })
  class AppModule {}

  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  app.useGlobalFilters(new ErrorReplyFilter());
  return app;
}

/** `npm run serve:nest`: the API on http://127.0.0.1:$PORT (default 3000), on the database of mikro-orm.config.ts. */
async function main(): Promise<void> {
  const app = await createNestApp(config);
  await getOrm().schema.updateSchema();
  const port = Number(process.env.PORT ?? 3000);
  await app.listen(port, '127.0.0.1');
  console.log(`NestJS listening on http://127.0.0.1:${port}; try:`);
  console.log(`  curl -X POST localhost:${port}/users -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada","tags":["math"]}'`);
  console.log(`  curl localhost:${port}/users/ada@example.com`);
  console.log(`  curl -X POST localhost:${port}/tags/news`);
  process.once('SIGINT', () => void app.close());
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
