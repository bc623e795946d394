// Public surface of the server folder (what other folders and tests import).
export { createPrfleetServer, findProtoset, REFLECTED_SERVICES, type PrfleetServer, type ServerDeps } from './server.js';
export { loadConfig, defaultServerConfig, type ServerConfig } from './config.js';
export { createInProcessRouter, type CommandRouter, type DispatchOptions, type InProcessRouterDeps } from './router.js';
export { AgentRegistry, AgentSession, type AgentRecord, type PendingCommand } from './agent-registry.js';
export {
  createMemoryJournal,
  type CommandJournal,
  type JournalBegin,
  type JournalEntry,
  type JournalRequest,
} from './journal.js';
export { exposeDeadline, commandBudgetMs, remainingDeadlineMs, DEADLINE_METADATA_KEY } from './deadline.js';
