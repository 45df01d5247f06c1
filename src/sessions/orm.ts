import { MikroORM, Utils } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { CoasterEntityManager } from '../inserts/CoasterEntityManager.js';
import { defineCoasterConfig, type CoasterOptions } from '../defineCoasterConfig.js';
import { ManagedSessionError } from './ManagedSessionError.js';

/**
 * The process-wide ORM of {@link initOrm}, typed by its driver: a `MikroORM` whose `em` is a `CoasterEntityManager`.
 *
 * @example
 * ```ts
 * const orm: CoasterOrm<PostgreSqlDriver> = await initOrm({ driver: PostgreSqlDriver, clientUrl, entities });
 * ```
 */
export type CoasterOrm<Driver extends AbstractSqlDriver = AbstractSqlDriver> = MikroORM<
  Driver,
  CoasterEntityManager<Driver>
>;

/** What the first {@link initOrm} call was given, and the ORM it is making or made. */
interface Singleton {
  source: CoasterOptions | CoasterOrm;
  orm: Promise<CoasterOrm>;
}

let singleton: Singleton | undefined;
let initialised: CoasterOrm | undefined;

/**
 * Initialises MikroORM once for the process (a port of db_manager's `init_engine`) and resolves to it.
 * The options go through {@link defineCoasterConfig}, so the ORM's EntityManager is a `CoasterEntityManager`.
 * An ORM initialised elsewhere (by a framework module, say) can be handed over instead of options.
 *
 * A second call with the same options (the same object, or equal values with the same classes and
 * functions) or the same ORM resolves to the same instance, even while the first is still connecting;
 * a call with other options rejects with {@link ManagedSessionError} instead of making a second ORM.
 * If initialisation fails, the next call tries again.
 *
 * @example
 * ```ts
 * const orm = await initOrm({ driver: PostgreSqlDriver, clientUrl: process.env.DATABASE_URL, entities });
 * // elsewhere, later:
 * await managedSession(async em => em.persist(new User(...)));
 * ```
 */
export async function initOrm<Driver extends AbstractSqlDriver = AbstractSqlDriver>(
  optionsOrOrm: CoasterOptions<Driver> | CoasterOrm<Driver>,
): Promise<CoasterOrm<Driver>> {
  if (singleton) {
    if (!sameSource(singleton.source, optionsOrOrm as CoasterOptions | CoasterOrm)) {
      throw ManagedSessionError.alreadyInitialised();
    }
    return singleton.orm as Promise<CoasterOrm<Driver>>;
  }
  if (optionsOrOrm instanceof MikroORM) {
    const em: object = optionsOrOrm.em;
    if (!(em instanceof CoasterEntityManager)) {
      throw ManagedSessionError.notCoasterEntityManager(em.constructor.name);
    }
  }
  const orm =
    optionsOrOrm instanceof MikroORM
      ? Promise.resolve(optionsOrOrm)
      : MikroORM.init<Driver, CoasterEntityManager<Driver>>(defineCoasterConfig(optionsOrOrm));
  const current: Singleton = { source: optionsOrOrm as CoasterOptions | CoasterOrm, orm: orm as Promise<CoasterOrm> };
  singleton = current;
  try {
    const resolved = await current.orm;
    if (singleton === current) {
      initialised = resolved; // not when closeOrm() ran meanwhile
    }
  } catch (error) {
    if (singleton === current) {
      singleton = undefined;
    }
    throw error;
  }
  return orm;
}

/**
 * The ORM that {@link initOrm} initialised. Its `em` is the global EntityManager: inside a
 * {@link managedSession} it resolves to that session's fork (through MikroORM's `TransactionContext`),
 * so code deep in the call stack can use `getOrm().em` without being handed an `em`.
 * The `Driver` type parameter is taken on trust.
 *
 * @example
 * ```ts
 * export async function findUser(email: string) {
 *   return getOrm().em.findOne(User, { email }); // the calling session's EntityManager
 * }
 * ```
 * @throws {ManagedSessionError} before `initOrm` has resolved, or after `closeOrm`.
 */
export function getOrm<Driver extends AbstractSqlDriver = AbstractSqlDriver>(): CoasterOrm<Driver> {
  return requireOrm('getOrm()') as unknown as CoasterOrm<Driver>;
}

/**
 * Closes the ORM of {@link initOrm} (its connection pool included) and forgets it, so `initOrm` can run
 * again. Does nothing when no ORM is initialised.
 *
 * @example
 * ```ts
 * process.on('SIGTERM', async () => {
 *   await new Promise(resolve => server.close(resolve));
 *   await closeOrm();
 * });
 * ```
 */
export async function closeOrm(): Promise<void> {
  const current = singleton;
  if (!current) {
    return;
  }
  singleton = undefined;
  initialised = undefined;
  const orm = await current.orm.catch(() => undefined);
  await orm?.close();
}

/** The ORM of {@link initOrm}, or a {@link ManagedSessionError} naming `api` as what needed it. */
export function requireOrm(api: string): CoasterOrm {
  if (!initialised) {
    throw ManagedSessionError.notInitialised(api);
  }
  return initialised;
}

function sameSource(first: CoasterOptions | CoasterOrm, again: CoasterOptions | CoasterOrm): boolean {
  if (first instanceof MikroORM || again instanceof MikroORM) {
    return first === again;
  }
  return Utils.equals(first, again);
}
