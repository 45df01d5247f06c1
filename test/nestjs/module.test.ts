import 'reflect-metadata';
import { Entity, MikroORM, PrimaryKey, Property } from '@mikro-orm/core';
import { InjectEntityManager, InjectMikroORM } from '@mikro-orm/nestjs';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CoasterEntityManager,
  ManagedSession,
  ManagedSessionError,
  closeOrm,
  getOrm,
  initOrm,
  type CoasterOptions,
} from '../../src/index.js';
import { CoasterMikroOrmModule } from '../../src/nestjs/index.js';
import { databases, type TestDatabase } from '../support/databases.js';
import { ownDatabase } from '../support/ownDatabases.js';

@Entity()
class Entry {
  @PrimaryKey({ type: 'integer' })
  id!: number;

  @Property({ type: 'string' })
  text!: string;
}

/** Writes to the ORM of the 'reports' context, through the EntityManager Nest injects for it. */
@Injectable()
class ReportWriter {
  constructor(
    @InjectEntityManager('reports') readonly em: CoasterEntityManager,
    @InjectMikroORM('reports') readonly orm: MikroORM,
    readonly defaultEm: CoasterEntityManager,
  ) {}

  @ManagedSession({ orm: 'reports' })
  async write(text: string): Promise<Entry> {
    expect(this.em.getContext().isInTransaction()).toBe(true); // the session's fork, through TransactionContext
    return this.em.create(Entry, { text });
  }
}

const cleanUps: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanUp of cleanUps.splice(0).reverse()) {
    await cleanUp();
  }
});

/** Options of a new, empty database of its own on `name`, dropped after the test. */
async function databaseOptions(name: TestDatabase['name']): Promise<CoasterOptions> {
  const { options, drop } = await ownDatabase(name, 'coaster_nestmod');
  cleanUps.push(drop);
  return options;
}

async function texts(orm: MikroORM): Promise<string[]> {
  return (await orm.em.fork().find(Entry, {}, { orderBy: { text: 'asc' } })).map(entry => entry.text);
}

describe.each(databases.map(db => db.name))('CoasterMikroOrmModule on %s', name => {
  it('hands a named context to initOrm, injects its CoasterEntityManager by name, and forgets both ORMs on close', async () => {
    const [main, reports] = [await databaseOptions(name), await databaseOptions(name)];
    @Module({
      imports: [
        CoasterMikroOrmModule.forRoot({ ...main, entities: [Entry], registerRequestContext: false }),
        CoasterMikroOrmModule.forRoot({ ...reports, entities: [Entry], contextName: 'reports', registerRequestContext: false }),
      ],
      providers: [ReportWriter],
    })
    class AppModule {}

    const app: INestApplicationContext = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false });
    let closed = false;
    cleanUps.push(async () => closed || app.close());
    const writer = app.get(ReportWriter);
    expect(getOrm('reports')).toBe(writer.orm);
    expect(getOrm()).toBe(app.get(MikroORM));
    expect(getOrm()).not.toBe(writer.orm);
    expect(writer.em).toBeInstanceOf(CoasterEntityManager);
    expect(writer.em).toBe(writer.orm.em);
    expect(writer.defaultEm).toBe(getOrm().em); // the class token is the unnamed context's
    for (const orm of [getOrm(), getOrm('reports')]) {
      await orm.schema.createSchema();
    }

    const entry = await writer.write('quarterly');
    expect(entry.id).toBeGreaterThan(0);
    expect(await texts(getOrm('reports'))).toEqual(['quarterly']);
    expect(await texts(getOrm())).toEqual([]);
    expect(writer.orm.em.getUnitOfWork(false).getIdentityMap().values()).toEqual([]); // the global em stayed empty

    const [mainOrm, reportsOrm] = [getOrm(), getOrm('reports')];
    await app.close();
    closed = true;
    expect(() => getOrm()).toThrow(ManagedSessionError);
    expect(() => getOrm('reports')).toThrow(ManagedSessionError);
    expect(await mainOrm.isConnected()).toBe(false);
    expect(await reportsOrm.isConnected()).toBe(false);
  });

  it('fails to start when initOrm already registered another ORM under its name', async () => {
    const options = await databaseOptions(name);
    const other = await initOrm({ ...options, entities: [Entry], connect: false });
    cleanUps.push(() => closeOrm());
    @Module({ imports: [CoasterMikroOrmModule.forRoot({ ...options, entities: [Entry], connect: false, registerRequestContext: false })] })
    class AppModule {}

    await expect(NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false })).rejects.toThrow(
      /^initOrm\(\) was already called with other options for the ORM named 'default'/,
    );
    expect(getOrm()).toBe(other);
  });
});
