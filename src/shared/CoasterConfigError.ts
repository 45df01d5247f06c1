import { CoasterError } from './errors.js';

/**
 * The ORM was initialised without options a feature of this library needs, so it could not work as
 * documented: `MikroORM.init` (or, where init cannot see it, the first use) throws this instead of
 * running half-configured. The message names what to add; `defineCoasterConfig` adds all of it.
 *
 * @example
 * ```ts
 * await MikroORM.init({ driver, entities: [User], entityManager: CoasterEntityManager });
 * // CoasterConfigError: User uses @CreatedAt, @UpdatedAt, @AutoInitDefault or timestamp properties ... defineCoasterConfig
 * await MikroORM.init(defineCoasterConfig({ driver, entities: [User] })); // what it asks for
 * ```
 */
export class CoasterConfigError extends CoasterError {
  /** An entity uses the entity decorators, but the ORM's options lack {@link withEntityDecorators}' discovery hook. */
  static entityDecoratorsNotConfigured(entityName: string): CoasterConfigError {
    return new CoasterConfigError(
      `${entityName} uses @CreatedAt, @UpdatedAt, @AutoInitDefault or timestamp properties, whose column types, ` +
        `defaults and checks are completed at discovery by options this ORM was not given. Initialise MikroORM with ` +
        `defineCoasterConfig({...}) (entityManager: CoasterEntityManager alone is not enough), or wrap the options ` +
        `in withEntityDecorators({...}).`,
    );
  }

  /**
   * Options that `defineCoasterConfig` added are missing from what MikroORM was given: its result was
   * spread and `key` replaced.
   */
  static optionReplaced(feature: string, key: string, what: string): CoasterConfigError {
    return new CoasterConfigError(
      `${feature} need ${what} in the ORM's ${key} option, which defineCoasterConfig adds, but the options MikroORM.init ` +
        `was given do not have it: a ${key} option set after defineCoasterConfig (e.g. { ...defineCoasterConfig(options), ` +
        `${key}: ... }) replaces the library's. Pass your own ${key} in defineCoasterConfig's argument instead.`,
    );
  }

  /**
   * The ORM's `extensions` hold a Migrator of the application's that extends MikroORM's Migrator, not
   * CoasterMigrator, which primary relationships register as the ORM's Migrator.
   */
  static migratorNotCoasterMigrator(migrator: string): CoasterConfigError {
    return new CoasterConfigError(
      `Primary relationships make CoasterMigrator (from mikro-orm-coaster/primary) the ORM's Migrator, so that ` +
        `migrations create and drop their triggers, which would replace ${migrator} in the ORM's extensions. Make ` +
        `${migrator} extend CoasterMigrator instead of MikroORM's Migrator.`,
    );
  }

  /** `optInTransactions` reached `MikroORM.init`, which ignores it. */
  static optInTransactionsIgnored(): CoasterConfigError {
    return new CoasterConfigError(
      `optInTransactions is an option of defineCoasterConfig, which turns it into MikroORM's implicitTransactions: ` +
        `false; MikroORM.init ignores it, so every flush would still run in a transaction. Initialise MikroORM with ` +
        `defineCoasterConfig({ ..., optInTransactions: true }), or pass implicitTransactions: false instead.`,
    );
  }

  /** `em.upsert` of an entity with timestamp columns, on an EntityManager that cannot set them. */
  static upsertNeedsCoasterEntityManager(entityName: string, entityManager: string): CoasterConfigError {
    return new CoasterConfigError(
      `em.upsert() of ${entityName} must set its @CreatedAt/@UpdatedAt columns (and keep createdAt on conflict), which ` +
        `CoasterEntityManager does, but this ORM's EntityManager is a ${entityManager}. Nothing was written. Initialise ` +
        `MikroORM with defineCoasterConfig({...}) or entityManager: CoasterEntityManager.`,
    );
  }
}
