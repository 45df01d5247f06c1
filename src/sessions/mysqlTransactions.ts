import type { ExceptionConverter, Options } from '@mikro-orm/core';
import { MariaDbKnexDialect, MySqlKnexDialect, type AbstractSqlDriver, type Knex } from '@mikro-orm/knex';
import { beginWith } from '../shared/internals.js';
import { replacingKnexClient, type KnexClientClass } from './knexClients.js';
import { ManagedSessionError } from './ManagedSessionError.js';

/** The knex client class of each MikroORM driver of the MySQL family, by the database package the driver depends on. */
const DIALECTS: Record<string, KnexClientClass> = {
  mariadb: MariaDbKnexDialect,
  mysql2: MySqlKnexDialect,
};

/**
 * `Dialect` with its top-level transactions that are both `readOnly` and given an isolation level started by
 * `SET TRANSACTION ISOLATION LEVEL <level>, READ ONLY;` then `BEGIN;`. knex joins the two characteristics with a
 * space (`SET TRANSACTION ISOLATION LEVEL serializable READ ONLY`), which MySQL and MariaDB refuse as a syntax
 * error (1064); the comma is their grammar. Every other transaction begins as knex begins it. A failed statement
 * rejects with MikroORM's exception for it (made by `exceptions`), not the driver's raw error.
 */
function readOnlyWithIsolation(Dialect: KnexClientClass, exceptions: ExceptionConverter): KnexClientClass {
  return class ReadOnlyIsolationDialect extends Dialect {
    transaction(container: unknown, config: Knex.TransactionConfig | undefined, outerTx: unknown): object {
      const transaction: object = super.transaction(container, config, outerTx);
      if (outerTx || !config?.readOnly || !config.isolationLevel) {
        return transaction;
      }
      const statements = [`SET TRANSACTION ISOLATION LEVEL ${config.isolationLevel}, READ ONLY;`, 'BEGIN;'];
      return beginWith(transaction, statements, error => exceptions.convertException(error));
    }
  };
}

/**
 * Returns `options` whose top-level transactions on the MySQL family (`@mikro-orm/mariadb`, `@mikro-orm/mysql`)
 * can be `readOnly` with an isolation level (see {@link readOnlyWithIsolation}), for `withManagedSessions`,
 * through `driverOptions.client`, over the application's own client class if it gave one. Other databases are
 * left as they are.
 *
 * @throws {ManagedSessionError} at `MikroORM.init` when the MySQL-family driver is not one of MikroORM's own and
 *   gives no `driverOptions.client`.
 */
export function withMysqlTransactions<O extends Options<AbstractSqlDriver>>(options: O): O {
  return replacingKnexClient(options, {
    dialect: 'mysql',
    clients: DIALECTS,
    unknownDriver: dependencies => ManagedSessionError.unknownMysqlDriver(dependencies),
    subclass: (Client, platform) => readOnlyWithIsolation(Client, platform.getExceptionConverter()),
  });
}
