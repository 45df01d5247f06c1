import { MikroORM, Utils } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { CoasterEntityManager } from '../inserts/CoasterEntityManager.js';
import { defineCoasterConfig, type CoasterOptions } from '../defineCoasterConfig.js';
import { ManagedSessionError } from './ManagedSessionError.js';

/**
 * An ORM of {@link initOrm}, typed by its driver: a `MikroORM` whose `em` is a `CoasterEntityManager`.
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

/**
 * Which ORM a managed-session API uses: the name {@link initOrm} registered it under (its MikroORM
 * `contextName`), or the ORM itself. Default: `'default'`, MikroORM's own default `contextName`.
 *
 * @example
 * ```ts
 * const reports: OrmReference = 'reports'; // initOrm({ ..., contextName: 'reports' }) made it
 * await managedSession(em => em.count(Report), { orm: reports });
 * ```
 */
export type OrmReference = string | MikroORM;

/** MikroORM's default `contextName`: the name of an ORM whose options do not give one. */
export const DEFAULT_ORM_NAME = 'default';

/** What the first {@link initOrm} call for a name was given, and the ORM it is making or made. */
interface Registration {
  source: CoasterOptions | MikroORM;
  orm: Promise<CoasterOrm>;
  /** Set once `orm` has resolved, while the registration is still the name's. */
  initialised?: CoasterOrm;
}

/** The ORMs of {@link initOrm}, by name (their MikroORM `contextName`). */
const registry = new Map<string, Registration>();

/**
 * Initialises a MikroORM once for the process (a port of db_manager's `init_engine`) and resolves to it.
 * The options go through {@link defineCoasterConfig}, so the ORM's EntityManager is a `CoasterEntityManager`.
 * An ORM initialised elsewhere (by NestJS's `MikroOrmModule`, a test harness) can be handed over instead of
 * options; it must use `CoasterEntityManager`, or the call rejects with {@link ManagedSessionError}.
 *
 * The ORM is registered under its MikroORM `contextName` (`'default'` unless the options give one), as
 * `@mikro-orm/nestjs` names its contexts and `RequestContext` keys its EntityManagers: several ORMs with
 * different names can live side by side, and {@link getOrm}, {@link closeOrm} and {@link managedSession}
 * take the name (`managedSession(fn, { orm: 'reports' })`).
 *
 * A second call for a name with the same options (the same object, or equal values with the same classes
 * and functions) or the same ORM resolves to the same instance, even while the first is still connecting;
 * a call with other options rejects with {@link ManagedSessionError} instead of making a second ORM of that
 * name. If initialisation fails, the next call tries again.
 *
 * @example
 * ```ts
 * const orm = await initOrm({ driver: PostgreSqlDriver, clientUrl: process.env.DATABASE_URL, entities });
 * const reports = await initOrm({ driver: PostgreSqlDriver, clientUrl: REPORTS_URL, entities: [Report], contextName: 'reports' });
 * // elsewhere, later:
 * await managedSession(async em => em.persist(new User(...)));
 * await managedSession(async em => em.persist(new Report(...)), { orm: 'reports' });
 * ```
 */
export async function initOrm<Driver extends AbstractSqlDriver>(orm: CoasterOrm<Driver>): Promise<CoasterOrm<Driver>>;
export async function initOrm<Driver extends AbstractSqlDriver = AbstractSqlDriver>(orm: MikroORM): Promise<CoasterOrm<Driver>>;
export async function initOrm<Driver extends AbstractSqlDriver = AbstractSqlDriver>(
  options: CoasterOptions<Driver>,
): Promise<CoasterOrm<Driver>>;
export async function initOrm(optionsOrOrm: CoasterOptions | MikroORM): Promise<CoasterOrm> {
  const name = optionsOrOrm instanceof MikroORM ? optionsOrOrm.config.get('contextName') : (optionsOrOrm.contextName ?? DEFAULT_ORM_NAME);
  const existing = registry.get(name);
  if (existing) {
    if (!sameSource(existing.source, optionsOrOrm)) {
      throw ManagedSessionError.alreadyInitialised(name);
    }
    return existing.orm;
  }
  const current: Registration = {
    source: optionsOrOrm,
    orm:
      optionsOrOrm instanceof MikroORM
        ? Promise.resolve(coasterOrm(optionsOrOrm))
        : MikroORM.init<AbstractSqlDriver, CoasterEntityManager>(defineCoasterConfig(optionsOrOrm)),
  };
  registry.set(name, current);
  try {
    const resolved = await current.orm;
    if (registry.get(name) === current) {
      current.initialised = resolved; // not when closeOrm() ran meanwhile
    }
    return resolved;
  } catch (error) {
    if (registry.get(name) === current) {
      registry.delete(name);
    }
    throw error;
  }
}

/**
 * The ORM that {@link initOrm} initialised under `name` (its `contextName`; default `'default'`). Its `em` is
 * the global EntityManager: inside a {@link managedSession} of that ORM it resolves to the session's fork
 * (through MikroORM's `TransactionContext`), so code deep in the call stack can use `getOrm().em` without
 * being handed an `em`. The `Driver` type parameter is taken on trust.
 *
 * @example
 * ```ts
 * export async function findUser(email: string) {
 *   return getOrm().em.findOne(User, { email }); // the calling session's EntityManager
 * }
 * export const countReports = () => getOrm('reports').em.count(Report);
 * ```
 * @throws {ManagedSessionError} before `initOrm` has resolved for that name, or after `closeOrm(name)`.
 */
export function getOrm<Driver extends AbstractSqlDriver = AbstractSqlDriver>(name: string = DEFAULT_ORM_NAME): CoasterOrm<Driver> {
  // the registry holds ORMs of every driver; the caller names the one it expects
  return resolveOrm(name === DEFAULT_ORM_NAME ? 'getOrm()' : `getOrm('${name}')`, name) as CoasterOrm<Driver>;
}

/**
 * Closes the ORM that {@link initOrm} registered under `name` (default `'default'`), its connection pool
 * included, and forgets it, so `initOrm` can run again for that name. Other names' ORMs stay open. Does
 * nothing when no ORM is registered under the name.
 *
 * @example
 * ```ts
 * process.on('SIGTERM', async () => {
 *   await new Promise(resolve => server.close(resolve));
 *   await closeOrm();
 *   await closeOrm('reports');
 * });
 * ```
 */
export async function closeOrm(name: string = DEFAULT_ORM_NAME): Promise<void> {
  const current = registry.get(name);
  if (!current) {
    return;
  }
  registry.delete(name);
  const orm = await current.orm.catch(() => undefined);
  await orm?.close();
}

/**
 * The ORM `reference` points to: the one {@link initOrm} registered under that name, or the given ORM
 * itself once checked to use `CoasterEntityManager`. `api` names what needed it, for the error.
 * @throws {ManagedSessionError} when no ORM is initialised under the name, or the given ORM's EntityManager
 *   is not a `CoasterEntityManager`.
 */
export function resolveOrm(api: string, reference: OrmReference = DEFAULT_ORM_NAME): CoasterOrm {
  if (reference instanceof MikroORM) {
    return coasterOrm(reference);
  }
  const orm = registry.get(reference)?.initialised;
  if (!orm) {
    const initialised = [...registry].flatMap(([name, registration]) => (registration.initialised ? [name] : []));
    throw ManagedSessionError.notInitialised(api, reference, initialised);
  }
  return orm;
}

/** `orm`, typed as what it is once its EntityManager is known to be a `CoasterEntityManager`. */
function coasterOrm(orm: MikroORM): CoasterOrm {
  const em: object = orm.em;
  if (!(em instanceof CoasterEntityManager)) {
    throw ManagedSessionError.notCoasterEntityManager(em.constructor.name);
  }
  return orm as CoasterOrm; // the check above is what the type says
}

function sameSource(first: CoasterOptions | MikroORM, again: CoasterOptions | MikroORM): boolean {
  if (first instanceof MikroORM || again instanceof MikroORM) {
    return first === again;
  }
  return Utils.equals(first, again);
}
