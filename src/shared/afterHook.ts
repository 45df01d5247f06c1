import type { MaybePromise } from '@mikro-orm/core';

/**
 * Runs `next` once `first` (the result of a hook the application passed, e.g. its own
 * `discovery.onMetadata`) has settled: at once when it returned nothing, after it when it returned a
 * promise. Lets this library's hooks run after the application's without making sync hooks async.
 */
export function afterHook(first: MaybePromise<void> | undefined, next: () => void): MaybePromise<void> {
  return first instanceof Promise ? first.then(next) : next();
}
