import type { Configuration, Options, Platform } from '@mikro-orm/core';
import type { AbstractSqlDriver } from '@mikro-orm/knex';
import { afterHook } from '../shared/afterHook.js';
import { dialectOf, type Dialect } from '../shared/dialect.js';
import { extendOptions } from '../shared/options.js';

/**
 * A knex client class, as MikroORM's SQL drivers pass it to `knex({ client })`. MikroORM declares its client
 * classes over knex's untyped (`any`) ones, so their instance type is `any` here too; the one method a
 * subclass overrides (`transaction`) is typed where it is overridden.
 */
export type KnexClientClass = new (...args: any[]) => any;

/** How {@link replacingKnexClient} replaces the knex client class of the ORMs of one dialect. */
export interface KnexClientReplacement {
  /** The dialect whose ORMs get the new client class; the others are left as they are. */
  dialect: Dialect;
  /** MikroORM's client class for each driver of the dialect, by the database package the driver depends on. */
  clients: Record<string, KnexClientClass>;
  /** The error for a driver of the dialect that depends on none of `clients`' packages and gives no `driverOptions.client`. */
  unknownDriver: (dependencies: string[]) => Error;
  /** Anything else to set on the configuration of such an ORM (a pool hook). */
  configure?: (config: Configuration) => void;
  /** The subclass of `Client` (the application's `driverOptions.client`, or the driver's own) to use instead. */
  subclass: (Client: KnexClientClass, platform: Platform) => KnexClientClass;
}

/**
 * Returns `options` whose ORMs of `replacement.dialect` use a subclass of their knex client class, passed as
 * `driverOptions.client` (over the application's own client class if it gave one, in a copy of its `driverOptions`). Decided in
 * `discovery.afterDiscovered` (after the application's own hook), which comes before MikroORM opens the pool and
 * builds the knex client, and only then is the platform known.
 *
 * @throws from `replacement.unknownDriver` at `MikroORM.init` when the driver's client class is not known.
 */
export function replacingKnexClient<O extends Options<AbstractSqlDriver>>(options: O, replacement: KnexClientReplacement): O {
  const discovery = options.discovery ?? {};
  return extendOptions<Options<AbstractSqlDriver>>(options, {
    // a copy of its own, changed in place below: the application's object is left alone
    driverOptions: { ...options.driverOptions },
    discovery: {
      ...discovery,
      afterDiscovered: (storage, platform) =>
        afterHook(discovery.afterDiscovered?.(storage, platform), () => {
          if (dialectOf(platform) !== replacement.dialect) {
            return;
          }
          const config = platform.getConfig();
          replacement.configure?.(config);
          const driverOptions = config.get('driverOptions') ?? {};
          const dependencies = config.getDriver().getDependencies();
          const Client =
            typeof driverOptions.client === 'function'
              ? (driverOptions.client as KnexClientClass)
              : replacement.clients[dependencies.find(name => name in replacement.clients) ?? ''];
          if (!Client) {
            throw replacement.unknownDriver(dependencies);
          }
          // in place: the connection, made before discovery, holds this very object and reads its client over the configuration's
          driverOptions.client = replacement.subclass(Client, platform);
          config.set('driverOptions', driverOptions);
        }),
    },
  }) as O;
}
