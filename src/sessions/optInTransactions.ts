import type { Configuration, MikroORMOptions } from '@mikro-orm/core';
import { CoasterConfigError } from '../shared/CoasterConfigError.js';
import { extendOptions } from '../shared/options.js';
import { ManagedSessionError } from './ManagedSessionError.js';

/**
 * The option that {@link withManagedSessions} (and so `defineCoasterConfig`) adds to MikroORM's for opt-in transactions.
 *
 * @example
 * ```ts
 * export default defineCoasterConfig({ driver: PostgreSqlDriver, clientUrl, entities, optInTransactions: true });
 * ```
 */
export interface OptInTransactionOptions {
  /**
   * Autocommit by default, transactions only where asked for (a port of fictive's `OptInTransactionMixin`).
   * A `flush` outside `em.transactional()` / `em.begin()` sends its statements without BEGIN/COMMIT, each
   * committed on its own (MikroORM's `implicitTransactions: false`); reads never open a transaction;
   * `em.transactional()`, `em.begin()`...`em.commit()` and {@link managedSession} give atomic blocks, nested
   * ones as savepoints. A failing flush outside a transaction can leave part of its statements written.
   * Default: `false` (MikroORM wraps every flush in a transaction of its own).
   */
  optInTransactions?: boolean;
}

/**
 * Turns `optInTransactions` into the MikroORM options it stands for, and leaves it out of the result
 * (where the type still allows it, as `undefined`).
 * @throws {ManagedSessionError} when `implicitTransactions: true` is given as well.
 */
export function applyOptInTransactions<O extends OptInTransactionOptions & { implicitTransactions?: boolean }>(options: O): O {
  const { optInTransactions, implicitTransactions } = options;
  if (optInTransactions && implicitTransactions === true) {
    throw ManagedSessionError.optInWithImplicitTransactions();
  }
  const result: O = optInTransactions ? extendOptions<O>(options, { implicitTransactions: false } as Partial<O>) : extendOptions(options, {});
  delete result.optInTransactions;
  return result;
}

/**
 * Throws {@link CoasterConfigError} when `optInTransactions` reached MikroORM, which ignores it: the ORM was
 * initialised without {@link applyOptInTransactions} (`withManagedSessions`, `defineCoasterConfig`).
 */
export function checkOptInTransactionsApplied(config: Configuration): void {
  if ((config.getAll() as MikroORMOptions & OptInTransactionOptions).optInTransactions) {
    throw CoasterConfigError.optInTransactionsIgnored();
  }
}
