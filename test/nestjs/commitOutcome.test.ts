import 'reflect-metadata';
import { Entity, PrimaryKey, Property } from '@mikro-orm/core';
import { Catch, Controller, Module, Param, Post, type ArgumentsHost, type ExceptionFilter, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Response } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { CommitOutcomeUnknownError, getOrm, ManagedSession, onCommit } from '../../src/index.js';
import { CoasterMikroOrmModule } from '../../src/nestjs/index.js';
import { databases } from '../support/databases.js';
import { loseConnection } from '../support/httpSessions.js';
import { ownDatabase } from '../support/ownDatabases.js';

@Entity()
class Entry {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  text!: string;
}

/** The texts whose onCommit callbacks ran. */
const committedTexts: string[] = [];

@Controller('entries')
class EntriesController {
  /** Inserts an entry in the request's session; `lost` then terminates the session's backend before the COMMIT. */
  @ManagedSession()
  @Post(':text')
  async create(@Param('text') text: string): Promise<{ text: string }> {
    const em = getOrm().em;
    em.create(Entry, { text });
    await em.flush();
    onCommit(() => committedTexts.push(text));
    if (text === 'lost') {
      await loseConnection(em);
    }
    return { text };
  }
}

/** The errors the app's exception filter caught. */
const caught: unknown[] = [];

/** Records every error and answers 500 with its class name. */
@Catch()
class RecordingFilter implements ExceptionFilter {
  catch(error: unknown, host: ArgumentsHost): void {
    caught.push(error);
    host.switchToHttp().getResponse<Response>().status(500).json({ error: (error as Error).constructor.name });
  }
}

let app: INestApplication | undefined;
let drop: (() => Promise<void>) | undefined;

afterEach(async () => {
  await app?.close();
  app = undefined;
  await drop?.();
  drop = undefined;
  caught.length = committedTexts.length = 0;
});

/** The databases with a server whose connection can be lost (SQLite commits in the process). */
const servers = databases.filter(db => db.name !== 'sqlite').map(db => db.name);

describe.each(servers)('a NestJS route in a managed session on %s, when the connection is lost during its COMMIT', name => {
  it('rejects with CommitOutcomeUnknownError, which reaches the exception filters, runs no onCommit, and the next request works', async () => {
    const database = await ownDatabase(name, 'coaster_nestcommit');
    drop = database.drop;
    @Module({
      imports: [CoasterMikroOrmModule.forRoot({ ...database.options, entities: [Entry] })],
      controllers: [EntriesController],
    })
    class AppModule {}
    app = await NestFactory.create(AppModule, { logger: false });
    app.useGlobalFilters(new RecordingFilter());
    await getOrm().schema.createSchema();
    await app.listen(0, '127.0.0.1');
    const base = await app.getUrl();
    const texts = async () => (await getOrm().em.fork().find(Entry, {}, { orderBy: { text: 'asc' } })).map(entry => entry.text);

    const lost = await fetch(`${base}/entries/lost`, { method: 'POST' });
    expect(lost.status).toBe(500);
    expect(await lost.json()).toEqual({ error: 'CommitOutcomeUnknownError' });
    expect(caught).toEqual([expect.any(CommitOutcomeUnknownError)]);
    expect((caught[0] as Error).cause).toEqual(expect.objectContaining({ message: expect.stringMatching(/^COMMIT; - /) }));
    expect(committedTexts).toEqual([]);
    expect(await texts()).toEqual([]); // terminated before the COMMIT reached it: rolled back

    const kept = await fetch(`${base}/entries/kept`, { method: 'POST' });
    expect(kept.status).toBe(201);
    expect(committedTexts).toEqual(['kept']);
    expect(await texts()).toEqual(['kept']);
  });
});
