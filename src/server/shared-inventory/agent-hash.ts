import { Hello, Inventory } from '../../gen/prfleet/v1/agent.js';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import { compactPaths, type AgentRecord, type AgentSession } from '../agents/index.js';

/** One agent as the mirror holds it: its record and who wrote it. */
export interface CachedAgent {
  readonly record: AgentRecord;
  readonly sessionId: string;
  readonly instance: string;
  readonly connected: boolean;
  /** `record` is this instance's own record of that session (shared, not a decoded copy): never modified here. */
  readonly local: boolean;
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

// The registry's paths are complete messages (decoded, then compacted field by field): encoded as they are,
// without fromPartial's deep copy (~0.1 ms a path, paid a thousand times over in a failover).
export function encodePaths(paths: readonly Path[]): string {
  return b64(Inventory.encode({ paths: paths as Path[] }).finish());
}

/** The hash a newly opened session writes: everything about it, connected, no heartbeat yet. */
export function openedSessionHash(
  session: AgentSession,
  paths: readonly Path[],
  instanceId: string,
): Record<string, string> {
  return {
    sessionId: session.sessionId,
    instance: instanceId,
    connected: '1',
    hello: b64(Hello.encode(session.hello).finish()),
    paths: encodePaths(paths),
    connectedAt: String(session.connectedAt.getTime()),
    heartbeatAt: '',
    link: session.link,
  };
}

/**
 * Reads an agent's hash: undefined when it is not a complete record; throws when its protobuf fields do not
 * decode. `ownRecord` is this instance's record of the agent: when the hash was written from that very session,
 * the mirror refers to it instead of holding a second decoded copy of every agent this instance serves.
 */
export function agentFromHash(
  hash: Record<string, string>,
  instanceId: string,
  ownRecord: () => AgentRecord | undefined,
): CachedAgent | undefined {
  if (hash['hello'] === undefined || hash['sessionId'] === undefined) return undefined;
  const sessionId = hash['sessionId'];
  const instance = hash['instance'] ?? '';
  const connected = hash['connected'] === '1';
  const own = instance === instanceId ? ownRecord() : undefined;
  if (own !== undefined && own.lastSessionId === sessionId) {
    // The record's and this instance's own strings, not the copies just read from Redis: kept per agent.
    return {
      sessionId: own.lastSessionId,
      instance: instanceId,
      connected,
      local: true,
      record: own,
    };
  }
  const hello = Hello.decode(Buffer.from(hash['hello'], 'base64'));
  const paths = hash['paths']
    ? compactPaths(Inventory.decode(Buffer.from(hash['paths'], 'base64')).paths)
    : [];
  const heartbeat = Number(hash['heartbeatAt'] ?? '');
  return {
    sessionId,
    instance,
    connected,
    local: false,
    record: {
      hello,
      session: undefined,
      lastSessionId: sessionId,
      connectedAt: new Date(Number(hash['connectedAt'] ?? '0')),
      lastHeartbeatAt:
        Number.isFinite(heartbeat) && heartbeat > 0 ? new Date(heartbeat) : undefined,
      paths,
      // Written by instances that know both links; older ones leave it out (shown as unknown).
      link: hash['link'] === 'long-poll' || hash['link'] === 'stream' ? hash['link'] : undefined,
    },
  };
}
