import { Utils, type EntityData, type FilterQuery } from '@mikro-orm/core';
import { SqlEntityRepository } from '@mikro-orm/knex';
import { CoasterEntityManager, type FindOrCreateResult } from './CoasterEntityManager.js';
import { CoasterUsageError } from './errors.js';
import type { FailsafeAddOptions } from './failsafeAddOptions.js';
import type { ManyOptions } from './batches/manyOptions.js';

/**
 * An `EntityRepository` with the race-safe helpers of {@link CoasterEntityManager}, for code that works
 * through repositories. Set it per entity (`@Entity({ repository: () => TagRepository })`) or for all
 * entities with the `entityRepository` option.
 *
 * @example
 * ```ts
 * class TagRepository extends CoasterEntityRepository<Tag> {}
 *
 * @Entity({ repository: () => TagRepository })
 * class Tag { [EntityRepositoryType]?: TagRepository; ... }
 *
 * const tag = await em.getRepository(Tag).findOrCreate({ name: 'news' });
 * ```
 */
export class CoasterEntityRepository<T extends object> extends SqlEntityRepository<T> {
  /** {@link CoasterEntityManager.failsafeAdd} on this repository's EntityManager. */
  failsafeAdd(entity: T, filters: FilterQuery<T>, options?: FailsafeAddOptions): Promise<T>;
  failsafeAdd(entity: T, filters?: FilterQuery<T>, options?: FailsafeAddOptions): Promise<T | undefined>;
  async failsafeAdd(entity: T, filters?: FilterQuery<T>, options?: FailsafeAddOptions): Promise<T | undefined> {
    return this.getCoasterEntityManager().failsafeAdd(entity, filters, options);
  }

  /** {@link CoasterEntityManager.addAndCommit} on this repository's EntityManager. */
  async addAndCommit(entity: T, filters: FilterQuery<T>, options?: FailsafeAddOptions): Promise<T> {
    return this.getCoasterEntityManager().addAndCommit(entity, filters, options);
  }

  /** {@link CoasterEntityManager.findOrCreate} for this repository's entity. */
  async findOrCreate(where: EntityData<T>, data?: EntityData<T>, options?: FailsafeAddOptions): Promise<T> {
    return this.getCoasterEntityManager().findOrCreate(this.entityName, where, data, options);
  }

  /** {@link CoasterEntityManager.getOrCreate} for this repository's entity. */
  async getOrCreate(where: EntityData<T>, data?: EntityData<T>, options?: FailsafeAddOptions): Promise<FindOrCreateResult<T>> {
    return this.getCoasterEntityManager().getOrCreate(this.entityName, where, data, options);
  }

  /** {@link CoasterEntityManager.updateOrCreate} for this repository's entity. */
  async updateOrCreate(
    where: EntityData<T>,
    update: EntityData<T>,
    create?: EntityData<T>,
    options?: FailsafeAddOptions,
  ): Promise<FindOrCreateResult<T>> {
    return this.getCoasterEntityManager().updateOrCreate(this.entityName, where, update, create, options);
  }

  /** {@link CoasterEntityManager.getOrCreateMany} for this repository's entity. */
  async getOrCreateMany(rows: EntityData<T>[], options?: ManyOptions<T>): Promise<FindOrCreateResult<T>[]> {
    return this.getCoasterEntityManager().getOrCreateMany(this.entityName, rows, options);
  }

  /** {@link CoasterEntityManager.findOrCreateMany} for this repository's entity. */
  async findOrCreateMany(rows: EntityData<T>[], options?: ManyOptions<T>): Promise<T[]> {
    return this.getCoasterEntityManager().findOrCreateMany(this.entityName, rows, options);
  }

  /** {@link CoasterEntityManager.failsafeAddMany} on this repository's EntityManager. */
  async failsafeAddMany(entities: T[], options?: ManyOptions<T>): Promise<(T | undefined)[]> {
    return this.getCoasterEntityManager().failsafeAddMany(entities, options);
  }

  private getCoasterEntityManager(): CoasterEntityManager {
    const em = this.getEntityManager();
    if (!(em instanceof CoasterEntityManager)) {
      throw CoasterUsageError.notCoasterEntityManager(Utils.className(this.entityName));
    }
    return em;
  }
}
