import type { Options } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { applyOnce, extendOptions } from '../shared/options.js';
import { CoasterEntityManager } from './CoasterEntityManager.js';

/**
 * Returns `options` with `entityManager: CoasterEntityManager`, MikroORM's own option, so that `orm.em`,
 * its forks and the `em` of `transactional` callbacks have `failsafeAdd`, `addAndCommit`, `findOrCreate`,
 * `getOrCreate` and `updateOrCreate`, and are typed so. `defineCoasterConfig` applies it; options it already went through
 * are returned as they are.
 *
 * @example
 * ```ts
 * const orm = await MikroORM.init(withRaceSafeInserts({ driver: PostgreSqlDriver, clientUrl, entities: [Tag] }));
 * const tag = await orm.em.fork().findOrCreate(Tag, { name: 'news' });
 * ```
 */
export function withRaceSafeInserts<Driver extends AbstractSqlDriver>(
  options: Options<Driver, CoasterEntityManager<Driver>>,
): Options<Driver, CoasterEntityManager<Driver>> {
  return applyOnce('race-safe inserts', options, given => extendOptions(given, { entityManager: CoasterEntityManager }));
}
