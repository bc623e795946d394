import type { Hello } from '../../gen/prfleet/v1/agent.js';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import type { AgentLinkKind, AgentSession } from './link.js';

/** What the server knows about one agent, connected or not. */
export interface AgentRecord {
  /** Latest Hello. */
  hello: Hello;
  /** The open session, if connected. */
  session: AgentSession | undefined;
  /** Id of the latest session (open or not). */
  lastSessionId: string;
  /** When the latest session started. */
  connectedAt: Date;
  /** Last heartbeat of the latest session. */
  lastHeartbeatAt: Date | undefined;
  /** Latest inventory (kept after disconnect so devices stay listed, as offline paths). */
  paths: Path[];
  /** What carries its latest session (from the shared inventory for other instances; undefined when unknown). */
  link?: AgentLinkKind | undefined;
  /**
   * Instance holding the agent's stream when that is ANOTHER instance (records from the shared inventory);
   * undefined for records of this instance, and for agents not connected anywhere.
   */
  remoteInstance?: string | undefined;
}

/** True when the agent has an open stream on this instance or, per the shared inventory, on another one. */
export function isConnected(record: AgentRecord): boolean {
  return record.session !== undefined || record.remoteInstance !== undefined;
}

/**
 * Agents as other server instances see them (the shared inventory): records with `session` undefined and
 * `remoteInstance` set while another instance holds the stream. Reads are synchronous (a local mirror).
 */
export interface RemoteAgents {
  /** Every agent known to the fleet, any instance, connected or not. */
  list(): readonly AgentRecord[];
  /** The fleet's record of `agentId`, if any. */
  get(agentId: string): AgentRecord | undefined;
}

/** The record to show: a local one holding the stream, else a remote one holding it, else the newer one. */
export function pick(
  local: AgentRecord | undefined,
  remote: AgentRecord | undefined,
): AgentRecord | undefined {
  if (local?.session !== undefined) return local;
  if (remote?.remoteInstance !== undefined) return remote;
  if (local === undefined) return remote;
  if (remote === undefined) return local;
  return remote.connectedAt.getTime() > local.connectedAt.getTime() ? remote : local;
}

/** Plain string order (not locale): ids sort the same everywhere. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `records` sorted by agent id. */
export function byAgentId(records: Iterable<AgentRecord>): AgentRecord[] {
  return [...records].sort((a, b) => compare(a.hello.agentId, b.hello.agentId));
}
