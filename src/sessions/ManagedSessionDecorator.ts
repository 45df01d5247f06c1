import { managedSession, type ManagedSessionOptions } from './managedSession.js';

/**
 * The metadata half of the `Reflect` API that reflect-metadata (or core-js) installs; frameworks such as
 * NestJS keep a route's path and HTTP method there, on the method itself.
 */
interface ReflectMetadataApi {
  getOwnMetadataKeys(target: object): unknown[];
  getOwnMetadata(key: unknown, target: object): unknown;
  defineMetadata(key: unknown, value: unknown, target: object): void;
}

/**
 * Makes `wrapper` look like `method` to reflection: the same `name` and `length`, and, when the
 * reflect-metadata API is installed, a copy of the metadata that decorators applied before this one
 * (those below it in the source) defined on `method`.
 */
function keepReflection(method: Function, wrapper: Function): void {
  Object.defineProperty(wrapper, 'name', { value: method.name, configurable: true });
  Object.defineProperty(wrapper, 'length', { value: method.length, configurable: true });
  const reflect: Partial<ReflectMetadataApi> = Reflect;
  if (!reflect.getOwnMetadataKeys || !reflect.getOwnMetadata || !reflect.defineMetadata) {
    return;
  }
  for (const key of reflect.getOwnMetadataKeys(method)) {
    reflect.defineMetadata(key, reflect.getOwnMetadata(key, method), wrapper);
  }
}

/**
 * Method decorator form of {@link managedSession}: every call of the decorated async method runs in a
 * managed session (a savepoint when one is already running), with `options` as `managedSession` takes them.
 * The method reaches the session through `getOrm().em`.
 *
 * It may sit above or below a framework's decorators on the same method (NestJS `@Get()`, `@Post()`...):
 * the wrapper keeps the method's `name`, `length` and reflect-metadata, so a route decorated before it is
 * still found.
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
 *
 * @Controller('users')
 * class UsersController {
 *   @ManagedSession()
 *   @Get(':id')
 *   async show(@Param('id') id: string) { ... }
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
    const wrapper = function (this: unknown, ...args: Args): Promise<Result> {
      return managedSession(() => method.apply(this, args), options);
    };
    keepReflection(method, wrapper);
    descriptor.value = wrapper;
    return descriptor;
  };
}
