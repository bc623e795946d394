// Public surface of the server folder (what other folders and tests import).
export {
  createPrfleetServer,
  findProtoset,
  type PrfleetServer,
  type ServerDeps,
} from './server.js';
export { REFLECTED_SERVICES } from './startup/grpc-services.js';
export {
  loadConfig,
  defaultServerConfig,
  storeConfigFromEnv,
  describeStore,
  loggableConfig,
  type ServerConfig,
  type StoreConfig,
} from './config.js';
export {
  openConfiguredStore,
  recoverPendingOperations,
  maxPendingMs,
  StoreOpenError,
  type RecoveryOptions,
} from './durable.js';
export {
  createProutRecorder,
  createHistoryHandlers,
  historyEntryToProto,
  historyInputOf,
  defaultPrincipalOf,
  ANONYMOUS,
  HISTORY_DISABLED,
  MAX_REASON_LENGTH,
  type ProutRecorder,
  type ProutContext,
  type PrincipalOf,
} from './history.js';
export {
  createInProcessRouter,
  type CommandRouter,
  type DispatchOptions,
  type InProcessRouterDeps,
} from './router.js';
export {
  AgentRegistry,
  AgentSession,
  type AgentRecord,
  type PendingCommand,
} from './agents/index.js';
export {
  createMemoryJournal,
  type CommandJournal,
  type JournalBegin,
  type JournalEntry,
  type JournalRequest,
} from './journal.js';
export {
  exposeDeadline,
  commandBudgetMs,
  remainingDeadlineMs,
  DEADLINE_METADATA_KEY,
} from './deadline.js';
