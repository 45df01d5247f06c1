/**
 * NestJS integration of mikro-orm-coaster, on top of `@mikro-orm/nestjs` 6.x:
 * `import { CoasterMikroOrmModule } from 'mikro-orm-coaster/nestjs'`. `@nestjs/common`, `@nestjs/core` and
 * `@mikro-orm/nestjs` are optional peer dependencies; the core package never loads them.
 *
 * @example
 * ```ts
 * import { Module } from '@nestjs/common';
 * import { PostgreSqlDriver } from '@mikro-orm/postgresql';
 * import { CoasterMikroOrmModule } from 'mikro-orm-coaster/nestjs';
 *
 * @Module({ imports: [CoasterMikroOrmModule.forRoot({ driver: PostgreSqlDriver, clientUrl: process.env.DATABASE_URL, entities: [Tag] })] })
 * export class AppModule {}
 * ```
 * @module mikro-orm-coaster/nestjs
 */
export {
  CoasterMikroOrmModule,
  type CoasterMikroOrmModuleAsyncOptions,
  type CoasterMikroOrmModuleOptions,
} from './CoasterMikroOrmModule.js';
