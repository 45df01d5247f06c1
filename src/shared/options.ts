/** The features whose options transformer produced each options object, with those of the options it was given. */
const appliedFeatures = new WeakMap<object, ReadonlySet<string>>();

/**
 * Runs a feature's options transformer (`withRaceSafeInserts`, `withEntityDecorators`, ...) once: options
 * that already went through it (directly, or inside `defineCoasterConfig`) are returned as they are, so
 * composing the transformers in any order, or applying `defineCoasterConfig` to its own result (as
 * `initOrm` does), adds no subscriber, hook or extension twice. The result remembers the features
 * applied to `options` as well as `feature`.
 *
 * @example
 * ```ts
 * export const withRaceSafeInserts = <O extends Options>(options: O): O =>
 *   applyOnce('race-safe inserts', options, given => extendOptions(given, { entityManager: CoasterEntityManager }));
 * ```
 */
export function applyOnce<O extends object>(feature: string, options: O, apply: (options: O) => O): O {
  const applied = appliedFeatures.get(options);
  if (applied?.has(feature)) {
    return options;
  }
  const result = apply(options);
  appliedFeatures.set(result, new Set([...(applied ?? []), feature]));
  return result;
}

/**
 * A copy of `options` with `overrides` set, its accessors copied as accessors: `withPrimaryRelationships`
 * makes `entities` a getter that MikroORM reads at `init`, and an object spread would read it at once.
 *
 * @example
 * ```ts
 * const options = extendOptions(given, { subscribers: [...(given.subscribers ?? []), new TimestampSubscriber()] });
 * ```
 */
export function extendOptions<O extends object>(options: O, overrides: Partial<O>): O {
  const result = Object.defineProperties({}, Object.getOwnPropertyDescriptors(options)) as O;
  for (const [key, value] of Object.entries(overrides)) {
    Object.defineProperty(result, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return result;
}
