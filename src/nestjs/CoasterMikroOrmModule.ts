import { EntityManager, MikroORM } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import {
  MikroOrmModule,
  getMikroORMToken,
  type MaybePromise,
  type MikroOrmModuleAsyncOptions,
  type MikroOrmModuleSyncOptions,
} from '@mikro-orm/nestjs';
import { Inject, Module, type DynamicModule, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { CoasterEntityManager } from '../inserts/CoasterEntityManager.js';
import { defineCoasterConfig, type CoasterOptions } from '../defineCoasterConfig.js';
import { closeOrm, initOrm, type CoasterOrm } from '../sessions/orm.js';

/**
 * Options of {@link CoasterMikroOrmModule.forRoot}: those of `defineCoasterConfig` (MikroORM's, with
 * `optInTransactions`) and those of `@mikro-orm/nestjs`'s `MikroOrmModule.forRoot` (`registerRequestContext`,
 * `autoLoadEntities`, `forRoutesPath`, `scope`, `forkOptions`). `contextName` names the ORM for Nest
 * (`@InjectEntityManager(name)`) and for `initOrm` (`getOrm(name)`, `managedSession(fn, { orm: name })`).
 *
 * @example
 * ```ts
 * const options: CoasterMikroOrmModuleOptions<PostgreSqlDriver> = { driver: PostgreSqlDriver, clientUrl, entities: [Tag] };
 * ```
 */
export type CoasterMikroOrmModuleOptions<Driver extends AbstractSqlDriver = AbstractSqlDriver> = CoasterOptions<Driver> &
  Pick<MikroOrmModuleSyncOptions, 'registerRequestContext' | 'autoLoadEntities' | 'forRoutesPath' | 'scope' | 'forkOptions'>;

/** The arguments of a `forRootAsync` factory (the providers of its `inject`), as `@mikro-orm/nestjs` types them. */
type FactoryArguments = Parameters<NonNullable<MikroOrmModuleAsyncOptions['useFactory']>>;

/**
 * Options of {@link CoasterMikroOrmModule.forRootAsync}: `@mikro-orm/nestjs`'s `MikroOrmModule.forRootAsync`
 * options with a `useFactory` (whose result goes through `defineCoasterConfig`). `useClass` and `useExisting`
 * are not offered: their factories' options could not be passed through `defineCoasterConfig`.
 *
 * @example
 * ```ts
 * const options: CoasterMikroOrmModuleAsyncOptions<PostgreSqlDriver> = {
 *   inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ driver: PostgreSqlDriver, clientUrl: config.get('DATABASE_URL'), entities: [Tag] }),
 * };
 * ```
 */
export type CoasterMikroOrmModuleAsyncOptions<Driver extends AbstractSqlDriver = AbstractSqlDriver> = Omit<
  MikroOrmModuleAsyncOptions<Driver>,
  'useFactory' | 'useClass' | 'useExisting'
> & {
  /** Returns the options (or a promise of them), from the providers of `inject`; they go through `defineCoasterConfig`. */
  useFactory: (...args: FactoryArguments) => MaybePromise<CoasterMikroOrmModuleOptions<Driver>>;
};

/** The ORM that a {@link CoasterMikroOrmModule} handed to `initOrm`; private to the module. */
const ADOPTED_ORM = Symbol('mikro-orm-coaster adopted ORM');

/**
 * `defineCoasterConfig(options)` typed as what it is: it spreads its argument into the options it returns,
 * so the `@mikro-orm/nestjs` options among them reach `MikroOrmModule` unchanged.
 */
function coasterModuleOptions<Options extends CoasterMikroOrmModuleOptions>(options: Options): Options {
  return defineCoasterConfig(options) as Options;
}

/**
 * NestJS module for mikro-orm-coaster on top of `@mikro-orm/nestjs` (6.x, NestJS 10 or 11):
 * `import { CoasterMikroOrmModule } from 'mikro-orm-coaster/nestjs'`, in place of `MikroOrmModule.forRoot`.
 *
 * - It imports `MikroOrmModule.forRoot(defineCoasterConfig(options))` (or `forRootAsync`), so everything
 *   `@mikro-orm/nestjs` provides is there: `MikroORM`, `EntityManager`, repositories, the request context
 *   middleware, `@InjectEntityManager(name)` for a named context.
 * - `CoasterEntityManager` is injectable by class anywhere in the app (the module is global), with the `scope`
 *   `MikroOrmModule` gives `EntityManager`: by default the global EntityManager, which resolves to the request's
 *   fork through MikroORM's `RequestContext`, and to the session's inside a managed session. A context with a
 *   `contextName` is injected with `@InjectEntityManager(name)` instead (its EntityManager is a
 *   `CoasterEntityManager` too); the class can name only one.
 * - The ORM Nest made is handed to `initOrm` under its `contextName` (`'default'` when none is given) when the
 *   app starts, so `managedSession`, `@ManagedSession()` on controllers and services, `getOrm()` and `onCommit`
 *   use it; inside a request, a session joins the request's `RequestContext`. Starting fails with
 *   `ManagedSessionError` if `initOrm` already registered another ORM under that name.
 * - On shutdown (`app.close()`, or a signal with `enableShutdownHooks()`), `closeOrm(name)` closes the ORM and
 *   forgets it, so the app can be created again in the same process.
 *
 * @example
 * ```ts
 * @Module({ imports: [CoasterMikroOrmModule.forRoot({ driver: PostgreSqlDriver, clientUrl, entities: [Tag] })], controllers: [TagController] })
 * class AppModule {}
 *
 * @Controller('tags')
 * class TagController {
 *   constructor(private readonly em: CoasterEntityManager) {}
 *
 *   @ManagedSession()
 *   @Post(':name')
 *   async tag(@Param('name') name: string) {
 *     return this.em.getOrCreate(Tag, { name }); // the request's session
 *   }
 * }
 * ```
 */
@Module({})
export class CoasterMikroOrmModule implements OnApplicationShutdown {
  constructor(@Inject(ADOPTED_ORM) private readonly orm: CoasterOrm) {}

  /**
   * `MikroOrmModule.forRoot(defineCoasterConfig(options))`, with `CoasterEntityManager` provided and the ORM
   * handed to `initOrm`.
   *
   * @example
   * ```ts
   * @Module({ imports: [CoasterMikroOrmModule.forRoot({ driver: SqliteDriver, dbName: 'app.sqlite', entities: [Tag] })] })
   * class AppModule {}
   * ```
   */
  static forRoot<Driver extends AbstractSqlDriver>(options: CoasterMikroOrmModuleOptions<Driver>): DynamicModule {
    return CoasterMikroOrmModule.around(options, MikroOrmModule.forRoot(coasterModuleOptions(options)));
  }

  /**
   * `MikroOrmModule.forRootAsync(options)` with the factory's options passed through `defineCoasterConfig`,
   * `CoasterEntityManager` provided and the ORM handed to `initOrm`.
   *
   * @example
   * ```ts
   * @Module({
   *   imports: [
   *     CoasterMikroOrmModule.forRootAsync({
   *       driver: PostgreSqlDriver,
   *       inject: [ConfigService],
   *       useFactory: (config: ConfigService) => ({ driver: PostgreSqlDriver, clientUrl: config.get('DATABASE_URL'), entities: [Tag] }),
   *     }),
   *   ],
   * })
   * class AppModule {}
   * ```
   */
  static forRootAsync<Driver extends AbstractSqlDriver>(options: CoasterMikroOrmModuleAsyncOptions<Driver>): DynamicModule {
    const { useFactory } = options;
    return CoasterMikroOrmModule.around(
      options,
      MikroOrmModule.forRootAsync({ ...options, useFactory: async (...args: FactoryArguments) => coasterModuleOptions(await useFactory(...args)) }),
    );
  }

  /** The module around `MikroOrmModule`'s: the ORM handed to `initOrm`, and `CoasterEntityManager` for the unnamed context. */
  private static around(
    { contextName, scope }: Pick<MikroOrmModuleSyncOptions, 'contextName' | 'scope'>,
    mikroOrmModule: MaybePromise<DynamicModule>,
  ): DynamicModule {
    const providers: Provider[] = [
      {
        provide: ADOPTED_ORM,
        useFactory: (orm: MikroORM) => initOrm(orm),
        inject: [contextName ? getMikroORMToken(contextName) : MikroORM],
      },
    ];
    if (!contextName) {
      // an alias of MikroOrmModule's EntityManager provider, in its scope, as it aliases the drivers' classes
      providers.push({ provide: CoasterEntityManager, scope, useFactory: (em: EntityManager) => em, inject: [EntityManager] });
    }
    return {
      module: CoasterMikroOrmModule,
      global: true,
      imports: [mikroOrmModule],
      providers,
      exports: contextName ? [] : [CoasterEntityManager],
    };
  }

  /** Closes the ORM and forgets it (`closeOrm`), so the app can be created again in this process. */
  async onApplicationShutdown(): Promise<void> {
    await closeOrm(this.orm.config.get('contextName'));
  }
}
