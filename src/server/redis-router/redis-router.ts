import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Command } from '../../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { activeTraceContext } from '../../common/command-trace.js';
import { ErrorReason, unavailable } from '../../common/errors.js';
import type { CommandRouter, DispatchOptions } from '../router.js';
import { backgroundRunner, connectRedis, type Background } from './connection.js';
import { Forwarder } from './forwarder.js';
import { relayKeys, type RelayKeys } from './keys.js';
import { PendingForwards } from './pending-forwards.js';
import { Presence } from './presence.js';
import { decodeRelayMessage, encodeRelayMessage, type RelayMessage } from './protocol.js';
import { RelayServer } from './relay-server.js';

/** What the Redis router needs to know about agent sessions in this process (the AgentRegistry has it). */
export interface LocalSessions {
  /** The open session of `agentId` here, if any (`rotating`: its stream is being replaced, send it nothing new). */
  session(agentId: string): { readonly sessionId: string; readonly rotating?: boolean } | undefined;
  /** Every open session here. */
  sessions(): readonly { readonly agentId: string; readonly sessionId: string }[];
  /**
   * A number that changes whenever a session here opens or closes: the periodic presence sync skips its
   * comparison while it stays the same. @default none (compared every time)
   */
  readonly sessionsVersion?: number;
  /** True while the agent's stream here is being rotated (or just was, and it has not come back). @default never */
  isRotating?(agentId: string): boolean;
  /**
   * Waits (bounded) while the agent's session here is rotating, until it is back here or attached elsewhere.
   * @default none (a rotating session is used as it is)
   */
  waitWhileRotating?(
    agentId: string,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<void>;
}

/** Options for {@link createRedisRouter}. */
export interface RedisRouterOptions {
  /** Redis URL (`redis://host:6379/0`). */
  readonly redisUrl: string;
  /** Extra ioredis options (TLS, password…). @default {} */
  readonly redisOptions?: RedisOptions;
  /** Id of this server instance (Welcome.server_instance); must be unique among live instances. */
  readonly instanceId: string;
  /** The in-process router over this instance's agent streams. */
  readonly local: CommandRouter;
  /** This instance's agent sessions (the AgentRegistry). */
  readonly sessions: LocalSessions;
  /** Logger. */
  readonly log: Logger;
  /** Prefix of every Redis key and channel (several fleets or test runs can share one Redis). @default 'prfleet:' */
  readonly keyPrefix?: string;
  /**
   * Lifetime of an agent's presence key; refreshed every third of it while the stream is open here, so an
   * instance that dies stops owning its agents after at most this long. @default 30000
   */
  readonly presenceTtlMs?: number;
  /** Lifetime of this instance's liveness key (callers waiting on a dead instance give up within it). @default 10000 */
  readonly instanceTtlMs?: number;
  /** How often local sessions are compared with what was published (attach/detach latency). @default 250 */
  readonly syncIntervalMs?: number;
  /** Wait after the device timeout before an unanswered command is UNKNOWN (the owner's own slack). @default 5000 */
  readonly resultSlackMs?: number;
  /** Extra wait for the relay itself on top of the owner's slack. @default 1000 */
  readonly relayMarginMs?: number;
  /** Longest wait for an agent whose stream here is rotating to come back, here or elsewhere. @default 10000 */
  readonly rotationWaitMs?: number;
  /**
   * Called when the agent re-attached to another instance while a session for it is still open here (that
   * session is stale: end it). @default none (the stale session ends by missed heartbeats)
   */
  readonly onEvicted?: (agentId: string, byInstance: string) => void;
}

/** A CommandRouter that reaches agents on any instance sharing the Redis. */
export interface RedisRouter extends CommandRouter {
  /** This instance's id. */
  readonly instanceId: string;
  /** Resolves once subscribed and this instance's agents are published; rejects if Redis is unreachable. */
  readonly ready: Promise<void>;
  /** Instance holding `agentId`'s stream according to Redis, if any. */
  ownerOf(agentId: string): Promise<string | undefined>;
  /** Publishes attach/detach of local sessions now (it also runs every syncIntervalMs). */
  syncPresence(): Promise<void>;
  /** Withdraws this instance's presence, settles forwarded commands still waiting as UNKNOWN, and disconnects. */
  close(): Promise<void>;
}

/**
 * The multi-instance router (grpc-ts-notes §4.3): each instance publishes `agent:<id> → <instance>` with a TTL
 * for the agents whose streams it holds and subscribes to `inbox:<instance>`. A dispatch for a local agent goes
 * to the in-process router; otherwise it is PUBLISHed to the owner's inbox, run there, and the result comes
 * back on the caller's inbox, correlated by request id. An owner that is gone when the request is sent
 * (PUBLISH reaches nobody) → UNAVAILABLE {AGENT_OFFLINE}, nothing sent, unless the agent already re-attached
 * elsewhere (then the request goes there). An owner that dies after taking the request → outcome UNKNOWN.
 *
 * The parts: {@link Presence} (who holds which agent), {@link Forwarder} and {@link PendingForwards} (the caller
 * side), {@link RelayServer} (the owner side); this object wires them to Redis, the timers and the local router.
 */
export function createRedisRouter(options: RedisRouterOptions): RedisRouter {
  return new MultiInstanceRouter(options);
}

class MultiInstanceRouter implements RedisRouter {
  readonly instanceId: string;
  readonly ready: Promise<void>;
  private readonly options: RedisRouterOptions;
  private readonly keys: RelayKeys;
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly presence: Presence;
  private readonly pending: PendingForwards;
  private readonly forwarder: Forwarder;
  private readonly server: RelayServer;
  private readonly background: Background;
  private readonly timers: NodeJS.Timeout[] = [];
  private isDraining = false;
  private closed = false;

  constructor(options: RedisRouterOptions) {
    const { instanceId, log } = options;
    this.options = options;
    this.instanceId = instanceId;
    this.keys = relayKeys(options.keyPrefix ?? 'prfleet:');
    // No resend of unanswered commands after a reconnect: a PUBLISH sent twice would be a PROUT run twice
    // (owners also drop duplicate ids, belt and braces).
    this.pub = connectRedis(
      options.redisUrl,
      { maxRetriesPerRequest: 2, autoResendUnfulfilledCommands: false, ...options.redisOptions },
      log,
      'publisher',
    );
    this.sub = connectRedis(options.redisUrl, { ...options.redisOptions }, log, 'subscriber');
    this.background = backgroundRunner(log, () => this.closed);
    const publish = (target: string, message: RelayMessage) =>
      this.pub.publish(this.keys.inbox(target), encodeRelayMessage(message));
    this.presence = new Presence({
      pub: this.pub,
      keys: this.keys,
      instanceId,
      ttlMs: options.presenceTtlMs ?? 30_000,
      sessions: options.sessions,
      log,
      publish,
    });
    this.pending = new PendingForwards(log);
    this.forwarder = new Forwarder({
      instanceId,
      presence: this.presence,
      pending: this.pending,
      publish,
      background: this.background,
      waitExtraMs: (options.resultSlackMs ?? 5_000) + (options.relayMarginMs ?? 1_000),
    });
    this.server = new RelayServer({
      local: options.local,
      publish,
      background: this.background,
      log,
    });
    this.ready = this.start();
    this.ready.catch(() => undefined); // callers see the failure through dispatch/ready; no unhandled rejection
  }

  get draining(): boolean {
    return this.isDraining;
  }

  get inFlight(): number {
    return this.options.local.inFlight + this.pending.size;
  }

  startDraining(): void {
    this.isDraining = true;
    this.options.local.startDraining();
  }

  async whenIdle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const localIdle = await this.options.local.whenIdle(timeoutMs);
    if (this.pending.size === 0) return localIdle;
    const remoteIdle = await this.pending.whenIdle(Math.max(0, deadline - Date.now()));
    return localIdle && remoteIdle;
  }

  async dispatch(
    agentId: string,
    command: Command,
    dispatchOptions: DispatchOptions,
  ): Promise<CommandResult> {
    const { sessions, local } = this.options;
    if (this.isDraining) {
      throw unavailable(
        ErrorReason.SERVER_DRAINING,
        'server is draining: retry on another instance',
        {
          agent_id: agentId,
        },
      );
    }
    if (dispatchOptions.signal?.aborted) throw dispatchOptions.signal.reason;
    if (sessions.isRotating?.(agentId) === true && sessions.waitWhileRotating !== undefined) {
      // Its stream here is being rotated: wait until the agent is back, here or on another instance.
      await sessions.waitWhileRotating(agentId, {
        timeoutMs: this.options.rotationWaitMs ?? 10_000,
        signal: dispatchOptions.signal,
      });
      await this.syncPresence();
    }
    if (sessions.session(agentId) !== undefined)
      return local.dispatch(agentId, command, dispatchOptions);
    await this.ready;
    return this.forwarder.forward(agentId, withTraceContext(command), dispatchOptions);
  }

  async ownerOf(agentId: string): Promise<string | undefined> {
    return (await this.presence.owner(agentId)) ?? undefined;
  }

  syncPresence(): Promise<void> {
    return this.presence.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    try {
      await this.ready;
      await this.presence.withdrawAll();
      await this.pub.del(this.keys.instance(this.instanceId));
    } catch (err) {
      this.options.log.warn({ err }, 'redis router: could not withdraw presence on close');
    }
    this.pending.settleAllUnknown(() => `server instance ${this.instanceId} closed its router`);
    this.server.abortAll('server instance closing');
    this.sub.disconnect();
    await this.pub.quit().catch(() => this.pub.disconnect());
  }

  /** Subscribes, announces this instance and its agents, then keeps both alive on timers. */
  private async start(): Promise<void> {
    const { instanceId, keys, sub, options } = this;
    const instanceTtlMs = options.instanceTtlMs ?? 10_000;
    const presenceTtlMs = options.presenceTtlMs ?? 30_000;
    sub.on('message', (channel: string, text: string) => this.onMessage(channel, text));
    await sub.subscribe(keys.inbox(instanceId));
    await this.pub.set(keys.instance(instanceId), String(Date.now()), 'PX', instanceTtlMs);
    await this.syncPresence();
    this.every(options.syncIntervalMs ?? 250, () => this.syncPresence(), 'presence sync');
    // Instance liveness (how fast callers notice a dead owner) and agent presence have their own TTLs, so each
    // is refreshed at its own pace: agent presence no faster than its TTL needs.
    this.every(
      Math.max(50, instanceTtlMs / 3),
      () => this.refreshLiveness(),
      'instance liveness refresh',
    );
    this.every(Math.max(50, presenceTtlMs / 3), () => this.presence.refresh(), 'presence refresh');
    options.log.info({ instanceId, inbox: keys.inbox(instanceId) }, 'redis router ready');
  }

  private every(ms: number, task: () => Promise<void>, what: string): void {
    const timer = setInterval(() => this.background(task, what), ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** Refreshes this instance's liveness key (every third of instanceTtlMs) and gives up on dead owners. */
  private async refreshLiveness(): Promise<void> {
    const { pub, keys, instanceId, pending } = this;
    await pub.set(
      keys.instance(instanceId),
      String(Date.now()),
      'PX',
      this.options.instanceTtlMs ?? 10_000,
    );
    // Forwarded commands whose owner stopped refreshing its liveness key: it died holding them.
    for (const owner of pending.owners()) {
      if ((await pub.exists(keys.instance(owner))) === 1) continue;
      pending.settleAllUnknown(
        (entry) => `server instance ${owner} holding agent ${entry.agentId}'s stream went away`,
        owner,
      );
    }
  }

  private onMessage(channel: string, text: string): void {
    if (channel !== this.keys.inbox(this.instanceId)) return;
    let message: RelayMessage;
    try {
      message = decodeRelayMessage(text);
    } catch (err) {
      this.options.log.warn({ err }, 'relay message dropped');
      return;
    }
    switch (message.kind) {
      case 'request':
        this.server.onRequest(message);
        return;
      case 'cancel':
        this.server.onCancel(message);
        return;
      case 'result':
      case 'error':
        this.forwarder.onReply(message);
        return;
      case 'evict':
        this.onEvict(message);
        return;
    }
  }

  /** Another instance took an agent whose session is still open here: that session is stale. */
  private onEvict(message: Extract<RelayMessage, { kind: 'evict' }>): void {
    if (
      message.by === this.instanceId ||
      this.options.sessions.session(message.agentId) === undefined
    )
      return;
    this.options.log.warn(
      { agentId: message.agentId, by: message.by },
      'agent re-attached to another instance: local session is stale',
    );
    this.options.onEvicted?.(message.agentId, message.by);
  }
}

/**
 * The instance holding the agent answers from a Redis subscriber, outside this call's trace: the command takes
 * the trace context along (the one it came with, else this call's).
 */
function withTraceContext(command: Command): Command {
  const traced = command.traceparent === '' ? activeTraceContext() : command;
  return traced === command || traced.traceparent === '' ? command : { ...command, ...traced };
}
