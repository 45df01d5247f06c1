import { managedSession, type ManagedSessionOptions } from './managedSession.js';

/**
 * Method decorator form of {@link managedSession}: every call of the decorated async method runs in a
 * managed session (a savepoint when one is already running), with `options` as `managedSession` takes them.
 * The method reaches the session through `getOrm().em`.
 *
 * @example
 * ```ts
 * class SignupService {
 *   @ManagedSession({ retries: 3 })
 *   async signUp(email: string): Promise<User> {
 *     const em = getOrm().em;
 *     const user = em.create(User, { email, name: email });
 *     onCommit(() => sendWelcomeMail(email));
 *     return user;
 *   }
 * }
 * ```
 */
export function ManagedSession(options?: ManagedSessionOptions) {
  return function <Args extends unknown[], Result>(
    _target: object,
    _propertyKey: string | symbol,
    descriptor: TypedPropertyDescriptor<(...args: Args) => Promise<Result>>,
  ): TypedPropertyDescriptor<(...args: Args) => Promise<Result>> {
    const method = descriptor.value!;
    descriptor.value = function (this: unknown, ...args: Args): Promise<Result> {
      return managedSession(() => method.apply(this, args), options);
    };
    return descriptor;
  };
}
