// The agent side of the server, for the rest of it: lookup and events (registry), the per-agent link the router
// sends through (link), and what is known of agents anywhere in the fleet (records).
export { AgentRegistry, type AgentRegistryOptions, type RegistrySettings } from './registry.js';
export { AgentSession, type AgentLinkKind, type Outbox, type PendingCommand } from './link.js';
export { compare, isConnected, type AgentRecord, type RemoteAgents } from './records.js';
export type { RegistryEvent } from './events.js';
export { compactPaths } from './compact-paths.js';
