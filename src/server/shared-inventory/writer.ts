import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AgentRecord, AgentSession, RegistryEvent } from '../agents/index.js';
import { encodePaths, openedSessionHash } from './agent-hash.js';
import type { InventoryKeys } from './keys.js';
import { KeyedTurns } from '../../common/keyed-turns.js';

// Updates a record only while it still describes the session that writes (a newer session elsewhere wins).
const UPDATE_IF_SESSION = `
if redis.call('HGET', KEYS[1], 'sessionId') == ARGV[1] then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  return 1
end
return 0`;

// Heartbeat times of many agents in one call: KEYS are agent records, ARGV their session ids and times in pairs.
const HEARTBEATS_IF_SESSION = `
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'sessionId') == ARGV[2 * i - 1] then
    redis.call('HSET', key, 'heartbeatAt', ARGV[2 * i])
  end
end
return #KEYS`;
/** Agents per heartbeat script call. */
const HEARTBEAT_CHUNK = 500;

/**
 * Tasks run one after another per key, in the order given, each after the previous one settled (a failure is
 * logged and does not stop the next): one agent's writes land in event order, different agents' run in parallel.
 */
export class WriteChains {
  private readonly turns = new KeyedTurns();

  constructor(private readonly log: Logger) {}

  enqueue(key: string, task: () => Promise<void>): void {
    void this.turns
      .run(key, task)
      .catch((err: unknown) =>
        this.log.warn({ err, agentId: key }, 'shared inventory write failed'),
      );
  }

  /** Resolves once every task enqueued so far (and any enqueued meanwhile) is done. */
  flushed(): Promise<void> {
    return this.turns.flushed();
  }
}

/** What a {@link SessionWriter} works with. */
export interface WriterDeps {
  readonly pub: Redis;
  readonly keys: InventoryKeys;
  readonly instanceId: string;
  /** This instance's record of an agent (its paths are written with a newly opened session). */
  readonly localRecord: (agentId: string) => AgentRecord | undefined;
  readonly log: Logger;
  /** Awaited before a new session is published (see RedisInventoryOptions.beforePublishOpen). */
  readonly beforePublishOpen?: ((session: AgentSession) => Promise<void>) | undefined;
}

/**
 * Writes this instance's sessions to the shared records and announces each change: opened, new inventory,
 * closed at once (in order per agent); heartbeat times in batches, unannounced. Writes of an old session never
 * overwrite a newer session's record (compare-and-set on the session id).
 */
export class SessionWriter {
  private readonly chains: WriteChains;
  private readonly dirtyHeartbeats = new Map<string, AgentSession>();

  constructor(private readonly deps: WriterDeps) {
    this.chains = new WriteChains(deps.log);
  }

  onEvent(event: RegistryEvent): void {
    const { session } = event;
    switch (event.kind) {
      case 'opened':
        this.publishOpened(session);
        return;
      case 'inventory':
        this.chains.enqueue(session.agentId, () =>
          this.updateIfSession(session, { paths: encodePaths(event.paths) }),
        );
        return;
      case 'heartbeat':
        this.dirtyHeartbeats.set(session.agentId, session);
        return;
      case 'closed':
        this.dirtyHeartbeats.delete(session.agentId);
        if (event.current)
          this.chains.enqueue(session.agentId, () =>
            this.updateIfSession(session, { connected: '0' }),
          );
        return;
    }
  }

  /** Writes `session` as the agent's current one (queued behind the agent's earlier writes). */
  publishOpened(session: AgentSession): void {
    this.chains.enqueue(session.agentId, () => this.publishOpen(session));
  }

  /** Resolves once every write begun so far is done. */
  flushed(): Promise<void> {
    return this.chains.flushed();
  }

  /** Writes the heartbeat times noted since the last flush, a chunk of agents per script call. */
  async flushHeartbeats(): Promise<void> {
    if (this.dirtyHeartbeats.size === 0) return;
    const { pub, keys } = this.deps;
    const sessions = [...this.dirtyHeartbeats.values()];
    this.dirtyHeartbeats.clear();
    const agentKeys: string[] = [];
    const args: string[] = [];
    const send = () => {
      const call = pub.eval(HEARTBEATS_IF_SESSION, agentKeys.length, ...agentKeys, ...args);
      agentKeys.length = 0;
      args.length = 0;
      return call;
    };
    for (const s of sessions) {
      if (s.isEnded || s.lastHeartbeatAt === undefined) continue;
      agentKeys.push(keys.agent(s.agentId));
      args.push(s.sessionId, String(s.lastHeartbeatAt.getTime()));
      if (agentKeys.length >= HEARTBEAT_CHUNK) await send();
    }
    if (agentKeys.length > 0) await send(); // no announcement: a heartbeat time is not worth a fetch on every instance
  }

  private async publishOpen(session: AgentSession): Promise<void> {
    const { pub, keys, instanceId } = this.deps;
    await this.deps.beforePublishOpen?.(session);
    const agentId = session.agentId;
    const record = this.deps.localRecord(agentId);
    const paths = record?.session === session ? record.paths : [];
    await pub
      .multi()
      .hset(keys.agent(agentId), openedSessionHash(session, paths, instanceId))
      .sadd(keys.agents, agentId)
      .publish(keys.changes, agentId)
      .exec();
  }

  private async updateIfSession(
    session: AgentSession,
    fields: Record<string, string>,
  ): Promise<void> {
    const { pub, keys } = this.deps;
    const args = Object.entries(fields).flat();
    const updated = (await pub.eval(
      UPDATE_IF_SESSION,
      1,
      keys.agent(session.agentId),
      session.sessionId,
      ...args,
    )) as number;
    if (updated === 1) await pub.publish(keys.changes, session.agentId);
  }
}
