// A NestJS app as a user writes it, compiled by test/nestjs/nest.test.ts with `module: commonjs` against the
// built package (`mikro-orm-coaster`, `mikro-orm-coaster/nestjs`). Not part of the repository's own type-check:
// it imports the package by name, which resolves only in the test's consumer directory.
import 'reflect-metadata';
import { Entity, MikroORM, PrimaryKey, Property, RequestContext, Unique } from '@mikro-orm/core';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { SqliteDriver } from '@mikro-orm/sqlite';
import { Controller, Get, HttpCode, Injectable, Module, Param, Post, Put } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { CoasterEntityManager, ManagedSession, ManagedSessionError, getOrm, onCommit } from 'mikro-orm-coaster';
import { CoasterMikroOrmModule } from 'mikro-orm-coaster/nestjs';

@Entity()
export class Tag {
  @PrimaryKey()
  id!: number;

  @Property()
  @Unique()
  name!: string;
}

/** Tags whose creation committed, counted by onCommit callbacks. */
let committedCreations = 0;

/** What a route answers: the tag, whether this request created it, and where the session ran. */
interface TagReply {
  id: number;
  name: string;
  created: boolean;
  /** The injected CoasterEntityManager resolved to a fork in a transaction: the managed session's. */
  inSession: boolean;
  /** Nest's request context was there (the session joined it). */
  inRequestContext: boolean;
}

@Injectable()
export class TagService {
  constructor(private readonly em: CoasterEntityManager) {}

  /** A service method in a session of its own (joining the request's). */
  @ManagedSession()
  async getOrCreate(name: string): Promise<TagReply> {
    const { entity, created } = await this.em.getOrCreate(Tag, { name });
    if (created) {
      onCommit(() => committedCreations++);
    }
    return {
      id: entity.id,
      name: entity.name,
      created,
      inSession: this.em.getContext().isInTransaction(),
      inRequestContext: RequestContext.getEntityManager() !== undefined,
    };
  }
}

@Controller('tags')
export class TagController {
  constructor(
    private readonly em: CoasterEntityManager,
    private readonly tags: TagService,
  ) {}

  // @ManagedSession() above the route decorators
  @ManagedSession()
  @Post(':name')
  @HttpCode(200)
  async post(@Param('name') name: string): Promise<TagReply> {
    return this.tags.getOrCreate(name); // a savepoint of this route's session
  }

  // @ManagedSession() below the route decorator
  @Put(':name')
  @ManagedSession()
  async put(@Param('name') name: string): Promise<TagReply> {
    return this.tags.getOrCreate(name);
  }

  /** No session around the route: the service's is the outermost, and its tag stays in the request's identity map. */
  @Get(':name')
  async get(@Param('name') name: string): Promise<TagReply & { inRequestIdentityMap: boolean }> {
    const reply = await this.tags.getOrCreate(name);
    const loaded = this.em.getContext().getUnitOfWork().getById<Tag>(Tag.name, reply.id);
    return { ...reply, inRequestIdentityMap: loaded?.name === name };
  }
}

@Controller('commits')
export class CommitController {
  @Get()
  count(): { committedCreations: number } {
    return { committedCreations };
  }
}

const entities = [Tag];
const databaseUrl = process.env.DATABASE_URL;
const mariadbUrl = process.env.MARIADB_URL;

/** The ORM module: PostgreSQL at DATABASE_URL, MariaDB at MARIADB_URL, else the SQLite file at SQLITE_PATH. */
function ormModule() {
  if (databaseUrl) {
    return CoasterMikroOrmModule.forRootAsync({
      driver: PostgreSqlDriver,
      useFactory: () => ({ driver: PostgreSqlDriver, clientUrl: databaseUrl, entities, pool: { max: 5 } }),
    });
  }
  if (mariadbUrl) {
    // READ COMMITTED, PostgreSQL's default. Under MariaDB's REPEATABLE READ a racing getOrCreate can meet a row its
    // snapshot hides (TransactionRetryError), which only the outermost session's retries cure, and the GET route's
    // outermost session is the service's, which also runs nested (where retries are refused).
    const readCommitted = (connection: { query(sql: string, done: (error: Error | null) => void): void }, done: (error: Error | null, connection: unknown) => void) =>
      connection.query('set session transaction isolation level read committed', error => done(error, connection));
    return CoasterMikroOrmModule.forRootAsync({
      driver: MariaDbDriver,
      useFactory: () => ({ driver: MariaDbDriver, clientUrl: mariadbUrl, entities, pool: { max: 5, afterCreate: readCommitted } }),
    });
  }
  return CoasterMikroOrmModule.forRoot({ driver: SqliteDriver, dbName: process.env.SQLITE_PATH, entities });
}

@Module({
  imports: [ormModule()],
  controllers: [TagController, CommitController],
  providers: [TagService],
})
export class AppModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  await app.get(MikroORM).schema.updateSchema();
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address();
  console.log(JSON.stringify({ port: typeof address === 'object' && address ? address.port : undefined, adopted: getOrm() === app.get(MikroORM) }));
  process.once('SIGTERM', () => {
    void app.close().then(() => {
      let forgotten = false;
      try {
        getOrm();
      } catch (error) {
        forgotten = error instanceof ManagedSessionError;
      }
      console.log(JSON.stringify({ closed: true, forgotten }));
    });
  });
}

void main();
