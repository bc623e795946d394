/** The server's durable state: PostgreSQL or embedded PGlite, one schema, one query layer. */
export {
  openStore,
  createStore,
  storeOptionsFromEnv,
  DEFAULT_DATA_DIR,
  type Store,
  type StoreOptions,
} from './store.js';
export type { Db, QueryResult } from './db.js';
export { isUniqueViolation } from './db.js';
// The drivers (pg-db.js, pglite-db.js) are imported from their own modules: openStore loads only the one it uses.
export { migrate, schemaVersion, MIGRATIONS, type Migration } from './migrations.js';
export * from './errors.js';
export type { JsonValue } from './canonical-json.js';
export { canonicalJson, canonicalHash } from './canonical-json.js';
export type {
  KeyRegistry,
  KeyRecord,
  KeyReading,
  AllocateKeyRequest,
  AdoptKeyRequest,
  ListKeysFilter,
  SiteRecord,
} from './key-registry.js';
export type {
  OperationJournal,
  OperationEntry,
  OperationState,
  BeginOutcome,
  BeginRequest,
} from './journal.js';
export {
  appendHistory,
  checkHistoryEntry,
  MAX_HISTORY_PATH_LENGTH,
  verifyHistory,
  type PRoutHistory,
  type HistoryEntry,
  type HistoryEntryInput,
  type HistoryFilter,
  type HistoryProblem,
  type HistoryVerification,
  type UnrecordedOperation,
} from './history.js';
export type { DesiredStateStore, DesiredStateRecord, DesiredScope } from './desired-state.js';
export { createStoreCommandJournal, type StoreCommandJournalOptions } from './command-journal.js';
