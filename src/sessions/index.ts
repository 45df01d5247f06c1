/**
 * Managed sessions: one ORM per process (`initOrm`), `managedSession`, `onCommit`, `@ManagedSession`, opt-in
 * transactions, and `withManagedSessions`, the options transformer they need. The Express and Fastify
 * integrations are entry points of their own (`mikro-orm-coaster/express`, `mikro-orm-coaster/fastify`).
 * @module
 */
export { initOrm, getOrm, closeOrm, type CoasterOrm, type OrmReference } from './orm.js';
export { managedSession, type ManagedSessionOptions, type SessionCallback } from './managedSession.js';
export { ManagedSession } from './ManagedSessionDecorator.js';
export { onCommit, type OnCommitCallback } from './onCommit.js';
export { type OptInTransactionOptions } from './optInTransactions.js';
export { ManagedSessionError } from './ManagedSessionError.js';
export { CommitOutcomeUnknownError } from './CommitOutcomeUnknownError.js';
export { TransactionRolledBackError } from './TransactionRolledBackError.js';
export { withManagedSessions } from './withManagedSessions.js';
