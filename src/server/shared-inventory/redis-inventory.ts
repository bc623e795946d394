import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { Hello, Inventory } from '../../gen/prfleet/v1/agent.js';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import {
  compactPaths,
  type AgentRecord,
  type AgentRegistry,
  type AgentSession,
  type RegistryEvent,
  type RemoteAgents,
} from '../agent-registry.js';

/** Options for {@link createRedisInventory}. */
export interface RedisInventoryOptions {
  /** Redis URL (`redis://host:6379/0`). */
  readonly redisUrl: string;
  /** Extra ioredis options (TLS, password…). @default {} */
  readonly redisOptions?: RedisOptions;
  /** Prefix of every key and channel (the Redis router's prefix: one fleet, one prefix). @default 'prfleet:' */
  readonly keyPrefix?: string;
  /** This instance's id (config.instanceId). */
  readonly instanceId: string;
  /** This instance's agents: their sessions are published, and the fleet's view is plugged into it. */
  readonly registry: AgentRegistry;
  /** Logger. */
  readonly log: Logger;
  /**
   * An instance that has not refreshed its liveness for this long is dead, and agents it held show as
   * disconnected. Refreshed every third of it. @default 10000
   */
  readonly instanceTtlMs?: number;
  /** Full reload of the fleet's records (repairs a lost change notice; pub/sub is at most once). @default 30000 */
  readonly resyncMs?: number;
  /** Heartbeat times are written in batches this often (a write per heartbeat is not worth it). @default 5000 */
  readonly heartbeatFlushMs?: number;
  /**
   * Awaited before a new session is published, e.g. the Redis router's presence sync: whoever sees the agent
   * attached here in the inventory can then also route to it. @default none
   */
  readonly beforePublishOpen?: (session: AgentSession) => Promise<void>;
}

/** The fleet's agents, shared over Redis; plugged into the registry so every instance sees every agent. */
export interface RedisInventory extends RemoteAgents {
  /** Resolves once subscribed, the fleet's records loaded and this instance announced; rejects if Redis is unreachable. */
  readonly ready: Promise<void>;
  /** Reloads every record now (it also runs every resyncMs). */
  resync(): Promise<void>;
  /** Resolves once every write begun so far (session events) is done. */
  flushed(): Promise<void>;
  /** True when `instanceId` refreshed its liveness within the TTL (this instance always is). */
  isInstanceAlive(instanceId: string): boolean;
  /** Instances alive now, this one included. */
  liveInstances(): string[];
  /** Unplugs from the registry, writes what is pending, withdraws this instance, and disconnects. */
  close(): Promise<void>;
}

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

interface CachedAgent {
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
function encodePaths(paths: readonly Path[]): string {
  return b64(Inventory.encode({ paths: paths as Path[] }).finish());
}

/**
 * A shared inventory over Redis. Each instance writes the agents whose streams it holds to
 * `<prefix>fleet:agent:<id>` (a hash: hello, paths, instance, session, times; kept after disconnect, as the
 * in-process registry keeps records) and announces each change on `<prefix>fleet:changes`; every instance keeps
 * a mirror, updated from the announcements and fully reloaded every resyncMs, and plugs it into its registry
 * (registry.configure({ remote })). Connected means: the record's instance holds the session and is alive
 * (`<prefix>fleet:instances`, refreshed every third of instanceTtlMs). Writes of an old session never overwrite a
 * newer session's record (compare-and-set on the session id).
 */
export function createRedisInventory(options: RedisInventoryOptions): RedisInventory {
  const { instanceId, registry, log } = options;
  const prefix = options.keyPrefix ?? 'prfleet:';
  const instanceTtlMs = options.instanceTtlMs ?? 10_000;
  const resyncMs = options.resyncMs ?? 30_000;
  const heartbeatFlushMs = options.heartbeatFlushMs ?? 5_000;
  const agentKey = (agentId: string) => `${prefix}fleet:agent:${agentId}`;
  const agentsKey = `${prefix}fleet:agents`;
  const instancesKey = `${prefix}fleet:instances`;
  const changes = `${prefix}fleet:changes`;

  const pub = new Redis(options.redisUrl, { maxRetriesPerRequest: 2, ...options.redisOptions });
  const sub = new Redis(options.redisUrl, { ...options.redisOptions });
  for (const [name, connection] of [
    ['inventory writer', pub],
    ['inventory subscriber', sub],
  ] as const) {
    connection.on('error', (err: Error) =>
      log.warn({ err, connection: name }, 'redis connection error'),
    );
  }

  const cache = new Map<string, CachedAgent>();
  const live = new Map<string, number>(); // instance → last refresh (ms)
  const chains = new Map<string, Promise<void>>(); // per agent: its writes in event order
  const dirtyHeartbeats = new Map<string, AgentSession>();
  const toFetch = new Set<string>();
  let fetchScheduled = false;
  let closed = false;
  const timers: NodeJS.Timeout[] = [];

  function isInstanceAlive(id: string): boolean {
    if (id === instanceId) return !closed;
    const seen = live.get(id);
    return seen !== undefined && Date.now() - seen <= instanceTtlMs;
  }

  function fromHash(agentId: string, hash: Record<string, string>): CachedAgent | undefined {
    if (hash['hello'] === undefined || hash['sessionId'] === undefined) return undefined;
    const sessionId = hash['sessionId'];
    const instance = hash['instance'] ?? '';
    const connected = hash['connected'] === '1';
    // A session this instance opened: its record here says the same (it was written from it), so the mirror
    // refers to it instead of holding a second decoded copy of every agent this instance serves.
    const own = instance === instanceId ? registry.localRecord(agentId) : undefined;
    if (own !== undefined && own.lastSessionId === sessionId) {
      return { sessionId, instance, connected, local: true, record: own };
    }
    try {
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
          lastSessionId: hash['sessionId'],
          connectedAt: new Date(Number(hash['connectedAt'] ?? '0')),
          lastHeartbeatAt:
            Number.isFinite(heartbeat) && heartbeat > 0 ? new Date(heartbeat) : undefined,
          paths,
          // Written by instances that know both links; older ones leave it out (shown as unknown).
          link:
            hash['link'] === 'long-poll' || hash['link'] === 'stream' ? hash['link'] : undefined,
        },
      };
    } catch (err) {
      log.warn({ err, agentId }, 'shared inventory: unreadable agent record ignored');
      return undefined;
    }
  }

  /** The record as other code should see it now (remoteInstance follows the holder's liveness). */
  function view(entry: CachedAgent): AgentRecord {
    if (entry.local) return entry.record; // held here, or was: never another instance's
    const holder =
      entry.connected && entry.instance !== instanceId && isInstanceAlive(entry.instance)
        ? entry.instance
        : undefined;
    entry.record.remoteInstance = holder;
    return entry.record;
  }

  async function fetchAgents(agentIds: readonly string[]): Promise<void> {
    for (let i = 0; i < agentIds.length; i += 500) {
      const chunk = agentIds.slice(i, i + 500);
      const batch = pub.pipeline();
      for (const id of chunk) batch.hgetall(agentKey(id));
      const replies = (await batch.exec()) ?? [];
      chunk.forEach((id, j) => {
        const [err, hash] = replies[j] ?? [null, {}];
        if (err !== null) return;
        const entry = fromHash(id, hash as Record<string, string>);
        if (entry === undefined) cache.delete(id);
        else cache.set(id, entry);
      });
    }
  }

  function scheduleFetch(agentId: string): void {
    toFetch.add(agentId);
    if (fetchScheduled) return;
    fetchScheduled = true;
    // Coalesce announcements arriving together (a failover re-attaches hundreds at once) into one pipeline.
    setTimeout(() => {
      fetchScheduled = false;
      const ids = [...toFetch];
      toFetch.clear();
      background(() => fetchAgents(ids), 'inventory fetch');
    }, 5).unref();
  }

  async function resync(): Promise<void> {
    const ids = await pub.smembers(agentsKey);
    await fetchAgents(ids);
    const known = new Set(ids);
    for (const id of cache.keys()) if (!known.has(id)) cache.delete(id);
  }

  async function refreshLiveness(): Promise<void> {
    const now = Date.now();
    await pub.hset(instancesKey, instanceId, String(now));
    const all = await pub.hgetall(instancesKey);
    live.clear();
    for (const [id, text] of Object.entries(all)) {
      const seen = Number(text);
      live.set(id, seen);
      // Instances dead for long are forgotten (their agents' records stay, as disconnected).
      if (now - seen > 100 * instanceTtlMs) await pub.hdel(instancesKey, id);
    }
  }

  function background(task: () => Promise<void>, what: string): void {
    if (closed) return;
    task().catch((err: unknown) => log.warn({ err }, `${what} failed`));
  }

  function enqueue(agentId: string, task: () => Promise<void>): void {
    const previous = chains.get(agentId) ?? Promise.resolve();
    const next = previous
      .then(task)
      .catch((err: unknown) => log.warn({ err, agentId }, 'shared inventory write failed'))
      .finally(() => {
        if (chains.get(agentId) === next) chains.delete(agentId);
      });
    chains.set(agentId, next);
  }

  async function publishOpen(session: AgentSession): Promise<void> {
    await options.beforePublishOpen?.(session);
    const agentId = session.agentId;
    const record = registry.localRecord(agentId);
    await pub
      .multi()
      .hset(agentKey(agentId), {
        sessionId: session.sessionId,
        instance: instanceId,
        connected: '1',
        hello: b64(Hello.encode(session.hello).finish()),
        paths: encodePaths(record?.session === session ? record.paths : []),
        connectedAt: String(session.connectedAt.getTime()),
        heartbeatAt: '',
        link: session.link,
      })
      .sadd(agentsKey, agentId)
      .publish(changes, agentId)
      .exec();
  }

  async function updateIfSession(
    session: AgentSession,
    fields: Record<string, string>,
  ): Promise<void> {
    const args = Object.entries(fields).flat();
    const updated = (await pub.eval(
      UPDATE_IF_SESSION,
      1,
      agentKey(session.agentId),
      session.sessionId,
      ...args,
    )) as number;
    if (updated === 1) await pub.publish(changes, session.agentId);
  }

  function onEvent(event: RegistryEvent): void {
    const { session } = event;
    switch (event.kind) {
      case 'opened':
        enqueue(session.agentId, () => publishOpen(session));
        return;
      case 'inventory':
        enqueue(session.agentId, () =>
          updateIfSession(session, { paths: encodePaths(event.paths) }),
        );
        return;
      case 'heartbeat':
        dirtyHeartbeats.set(session.agentId, session);
        return;
      case 'closed':
        dirtyHeartbeats.delete(session.agentId);
        if (event.current)
          enqueue(session.agentId, () => updateIfSession(session, { connected: '0' }));
        return;
    }
  }

  async function flushHeartbeats(): Promise<void> {
    if (dirtyHeartbeats.size === 0) return;
    const sessions = [...dirtyHeartbeats.values()];
    dirtyHeartbeats.clear();
    const keys: string[] = [];
    const args: string[] = [];
    const send = () => {
      const call = pub.eval(HEARTBEATS_IF_SESSION, keys.length, ...keys, ...args);
      keys.length = 0;
      args.length = 0;
      return call;
    };
    for (const s of sessions) {
      if (s.isEnded || s.lastHeartbeatAt === undefined) continue;
      keys.push(agentKey(s.agentId));
      args.push(s.sessionId, String(s.lastHeartbeatAt.getTime()));
      if (keys.length >= HEARTBEAT_CHUNK) await send();
    }
    if (keys.length > 0) await send(); // no announcement: a heartbeat time is not worth a fetch on every instance
  }

  const unsubscribe = registry.onChange(onEvent);

  const ready = (async () => {
    sub.on('message', (channel: string, agentId: string) => {
      if (channel === changes && agentId !== '') scheduleFetch(agentId);
    });
    await sub.subscribe(changes);
    await refreshLiveness();
    await resync();
    // Sessions opened before Redis answered.
    for (const session of registry.sessions()) enqueue(session.agentId, () => publishOpen(session));
    const every = (ms: number, task: () => Promise<void>, what: string) => {
      const timer = setInterval(() => background(task, what), ms);
      timer.unref();
      timers.push(timer);
    };
    every(Math.max(50, instanceTtlMs / 3), refreshLiveness, 'instance liveness refresh');
    every(resyncMs, resync, 'inventory resync');
    every(heartbeatFlushMs, flushHeartbeats, 'heartbeat flush');
    log.info({ instanceId, agents: cache.size, instances: live.size }, 'shared inventory ready');
  })();
  ready.catch(() => undefined); // seen through `ready` by whoever awaits it

  const inventory: RedisInventory = {
    ready,
    resync,
    isInstanceAlive,
    liveInstances: () => [...live.keys()].filter(isInstanceAlive),
    async flushed() {
      while (chains.size > 0) await Promise.all([...chains.values()]);
    },
    list() {
      return [...cache.values()].map(view);
    },
    get(agentId) {
      const entry = cache.get(agentId);
      return entry === undefined ? undefined : view(entry);
    },
    async close() {
      if (closed) return;
      unsubscribe();
      for (const t of timers) clearInterval(t);
      try {
        await ready;
        await inventory.flushed();
        await flushHeartbeats();
        await pub.hdel(instancesKey, instanceId);
      } catch (err) {
        log.warn({ err }, 'shared inventory: could not finish writes on close');
      }
      closed = true;
      sub.disconnect();
      await pub.quit().catch(() => pub.disconnect());
    },
  };
  return inventory;
}
