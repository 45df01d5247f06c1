import { CoasterError } from '../shared/errors.js';

/**
 * The COMMIT of a managed session failed in a way that does not say whether the transaction committed: the
 * connection to the database was lost while the COMMIT was on its way or being answered (a server restart, a
 * terminated backend, a network failure). The database may have committed the work, or rolled it back.
 * The session is never retried (`retries` does not apply) and its `onCommit` callbacks do not run; the
 * driver's error is the `cause`. Before doing the work again, check whether it landed, for example by
 * looking up a row keyed by an idempotency key that the work wrote.
 *
 * Only a COMMIT without an answer from the server has an unknown outcome: a failed connection (no SQLSTATE:
 * ECONNRESET, "Connection terminated unexpectedly", "Client has encountered a connection error and is not
 * queryable", mysql2's PROTOCOL_CONNECTION_LOST), or an error of class 08 (connection exception, such as the
 * mariadb connector's 08S01 for a closed socket) or 57 (operator intervention, such as 57P01 when an
 * administrator or a shutdown terminates the backend). A COMMIT the server refused with any other
 * error (a deferred constraint's 23xxx, a serialization failure's 40001) rolled the transaction back, and
 * the session rejects with that error (retrying a 40001 when `retries` allows it). On SQLite the COMMIT
 * runs in the process, so its outcome is always known.
 *
 * @example
 * ```ts
 * try {
 *   await managedSession(em => placeOrder(em, order));
 * } catch (e) {
 *   if (e instanceof CommitOutcomeUnknownError) {
 *     const placed = await managedSession(em => em.count(Order, { idempotencyKey: order.idempotencyKey }));
 *     if (placed === 0) await managedSession(em => placeOrder(em, order));
 *   }
 * }
 * ```
 */
export class CommitOutcomeUnknownError extends CoasterError {
  /** The COMMIT of a managed session failed with `cause`, a lost connection, without the server's answer. */
  static duringCommit(cause: unknown): CommitOutcomeUnknownError {
    const reason = cause instanceof Error ? cause.message : String(cause);
    return new CommitOutcomeUnknownError(
      `The connection to the database failed during the COMMIT of a managed session (${reason}), so whether the ` +
        `transaction committed is unknown: the database may have committed it before the connection was lost. It ` +
        `was not retried, and its onCommit callbacks did not run. Check whether its work landed (for example by ` +
        `looking up a row by an idempotency key that the work wrote) before doing it again.`,
      { cause },
    );
  }
}
