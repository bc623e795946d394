import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { AgentRegistry, AgentSession, RemoteAgents } from '../agents/index.js';
import { backgroundRunner, connectRedis, type Background } from '../redis-router/connection.js';
import { inventoryKeys, type InventoryKeys } from './keys.js';
import { InstanceLiveness } from './liveness.js';
import { FleetMirror } from './mirror.js';
import { SessionWriter } from './writer.js';

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

/** The parts of one shared inventory, and what they share. */
interface InventoryParts {
  readonly options: RedisInventoryOptions;
  readonly keys: InventoryKeys;
  readonly pub: Redis;
  readonly sub: Redis;
  readonly liveness: InstanceLiveness;
  readonly mirror: FleetMirror;
  readonly writer: SessionWriter;
  readonly background: Background;
  readonly timers: NodeJS.Timeout[];
}

/**
 * A shared inventory over Redis. Each instance writes the agents whose streams it holds to
 * `<prefix>fleet:agent:<id>` (a hash: hello, paths, instance, session, times; kept after disconnect, as the
 * in-process registry keeps records) and announces each change on `<prefix>fleet:changes`; every instance keeps
 * a mirror, updated from the announcements and fully reloaded every resyncMs, and plugs it into its registry
 * (registry.configure({ remote })). Connected means: the record's instance holds the session and is alive
 * (`<prefix>fleet:instances`, refreshed every third of instanceTtlMs). Writes of an old session never overwrite a
 * newer session's record (compare-and-set on the session id).
 *
 * The parts: {@link SessionWriter} (this instance's sessions → Redis), {@link FleetMirror} (Redis → the fleet's
 * records here), {@link InstanceLiveness} (which instances are alive).
 */
export function createRedisInventory(options: RedisInventoryOptions): RedisInventory {
  let closed = false;
  const parts = inventoryParts(options, () => closed);
  const { mirror, writer, liveness } = parts;
  const unsubscribe = options.registry.onChange((event) => writer.onEvent(event));
  const ready = start(parts);
  ready.catch(() => undefined); // seen through `ready` by whoever awaits it

  const inventory: RedisInventory = {
    ready,
    resync: () => mirror.resync(),
    isInstanceAlive: (id) => liveness.isAlive(id),
    liveInstances: () => liveness.liveInstances(),
    flushed: () => writer.flushed(),
    list: () => mirror.list(),
    get: (agentId) => mirror.get(agentId),
    async close() {
      if (closed) return;
      unsubscribe();
      for (const t of parts.timers) clearInterval(t);
      try {
        await ready;
        await writer.flushed();
        await writer.flushHeartbeats();
        await liveness.withdraw();
      } catch (err) {
        options.log.warn({ err }, 'shared inventory: could not finish writes on close');
      }
      closed = true;
      parts.sub.disconnect();
      await parts.pub.quit().catch(() => parts.pub.disconnect());
    },
  };
  return inventory;
}

function inventoryParts(options: RedisInventoryOptions, isClosed: () => boolean): InventoryParts {
  const { instanceId, registry, log } = options;
  const keys = inventoryKeys(options.keyPrefix ?? 'prfleet:');
  const redisOptions = options.redisOptions;
  const pub = connectRedis(
    options.redisUrl,
    { maxRetriesPerRequest: 2, ...redisOptions },
    log,
    'inventory writer',
  );
  const sub = connectRedis(options.redisUrl, { ...redisOptions }, log, 'inventory subscriber');
  const background = backgroundRunner(log, isClosed);
  const localRecord = (agentId: string) => registry.localRecord(agentId);
  const liveness = new InstanceLiveness({
    pub,
    keys,
    instanceId,
    ttlMs: options.instanceTtlMs ?? 10_000,
    isClosed,
  });
  const mirror = new FleetMirror({ pub, keys, instanceId, localRecord, liveness, background, log });
  const writer = new SessionWriter({
    pub,
    keys,
    instanceId,
    localRecord,
    log,
    beforePublishOpen: options.beforePublishOpen,
  });
  return { options, keys, pub, sub, liveness, mirror, writer, background, timers: [] };
}

/** Subscribes to the change notices, loads the fleet, publishes the sessions already open, starts the timers. */
async function start(parts: InventoryParts): Promise<void> {
  const { options, keys, sub, liveness, mirror, writer } = parts;
  const instanceTtlMs = options.instanceTtlMs ?? 10_000;
  sub.on('message', (channel: string, agentId: string) => {
    if (channel === keys.changes && agentId !== '') mirror.scheduleFetch(agentId);
  });
  await sub.subscribe(keys.changes);
  await liveness.refresh();
  await mirror.resync();
  // Sessions opened before Redis answered.
  for (const session of options.registry.sessions()) writer.publishOpened(session);
  const every = (ms: number, task: () => Promise<void>, what: string) => {
    const timer = setInterval(() => parts.background(task, what), ms);
    timer.unref();
    parts.timers.push(timer);
  };
  every(Math.max(50, instanceTtlMs / 3), () => liveness.refresh(), 'instance liveness refresh');
  every(options.resyncMs ?? 30_000, () => mirror.resync(), 'inventory resync');
  every(options.heartbeatFlushMs ?? 5_000, () => writer.flushHeartbeats(), 'heartbeat flush');
  options.log.info(
    { instanceId: options.instanceId, agents: mirror.size, instances: liveness.size },
    'shared inventory ready',
  );
}
