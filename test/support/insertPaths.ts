import type { EventSubscriber } from '@mikro-orm/core';
import type { CoasterOptions } from '../../src/index.js';

/**
 * A subscriber with a flush hook. `failsafeAdd` sends no flush on its fast path, so an ORM with such a
 * subscriber inserts every entity on the savepoint path: how the suites run that path on purpose.
 */
export class FlushWatcher implements EventSubscriber {
  flushes = 0;

  afterFlush(): void {
    this.flushes++;
  }
}

/** One of the two ways `failsafeAdd` inserts; the race-safe insert suites run on both. */
export interface InsertPath {
  name: 'fast' | 'savepoint';
  /** ORM options that make `failsafeAdd` take this path for the suites' entities. */
  options(): Partial<CoasterOptions>;
}

export const fastPath: InsertPath = { name: 'fast', options: () => ({}) };
export const savepointPath: InsertPath = { name: 'savepoint', options: () => ({ subscribers: [new FlushWatcher()] }) };

/** Both paths: `describe.each(insertPaths)('... on the $name path', path => ...)`. */
export const insertPaths: InsertPath[] = [fastPath, savepointPath];
