import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status } from 'nice-grpc-common';
import type { Command } from '../../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { activeTraceContext } from '../../common/command-trace.js';
import { unknownResult } from '../../common/result.js';
import { ErrorReason, unavailable } from '../../common/errors.js';
import type { CommandRouter, DispatchOptions } from '../router.js';
import {
  decodeRelayMessage,
  encodeRelayMessage,
  errorFromMessage,
  errorMessageOf,
  type RelayMessage,
} from './protocol.js';

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

// Refresh only a presence that is ours, or claim one that expired: never take an agent that re-attached to
// another instance (a newer session wins; see attach, which overwrites unconditionally). One call refreshes
// many agents (KEYS): a thousand idle agents cost a couple of commands per refresh, not a thousand.
const REFRESH_PRESENCE = `
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2])
  elseif not v then redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
end
return #KEYS`;
/** Agents refreshed per script call (bounds how long one call holds Redis). */
const REFRESH_CHUNK = 500;
const DELETE_IF_OWNER = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** Request ids an owner remembers to drop a PUBLISH delivered twice (ioredis resends after a reconnect). */
const SEEN_REQUESTS_CAPACITY = 10_000;

interface PendingForward {
  readonly agentId: string;
  readonly command: Command;
  readonly options: DispatchOptions;
  owner: string;
  rerouted: boolean;
  abandoned: boolean;
  timer: NodeJS.Timeout | undefined;
  resolve(result: CommandResult): void;
  reject(error: unknown): void;
}

/**
 * The multi-instance router (grpc-ts-notes §4.3): each instance publishes `agent:<id> → <instance>` with a TTL
 * for the agents whose streams it holds and subscribes to `inbox:<instance>`. A dispatch for a local agent goes
 * to the in-process router; otherwise it is PUBLISHed to the owner's inbox, run there, and the result comes
 * back on the caller's inbox, correlated by request id. An owner that is gone when the request is sent
 * (PUBLISH reaches nobody) → UNAVAILABLE {AGENT_OFFLINE}, nothing sent, unless the agent already re-attached
 * elsewhere (then the request goes there). An owner that dies after taking the request → outcome UNKNOWN.
 */
export function createRedisRouter(options: RedisRouterOptions): RedisRouter {
  const { instanceId, local, sessions, log } = options;
  const prefix = options.keyPrefix ?? 'prfleet:';
  const presenceTtlMs = options.presenceTtlMs ?? 30_000;
  const instanceTtlMs = options.instanceTtlMs ?? 10_000;
  const syncIntervalMs = options.syncIntervalMs ?? 250;
  const waitExtraMs = (options.resultSlackMs ?? 5_000) + (options.relayMarginMs ?? 1_000);
  const rotationWaitMs = options.rotationWaitMs ?? 10_000;

  const presenceKey = (agentId: string) => `${prefix}agent:${agentId}`;
  const instanceKey = (id: string) => `${prefix}instance:${id}`;
  const inbox = (id: string) => `${prefix}inbox:${id}`;

  // No resend of unanswered commands after a reconnect: a PUBLISH sent twice would be a PROUT run twice
  // (owners also drop duplicate ids, belt and braces).
  const pub = new Redis(options.redisUrl, {
    maxRetriesPerRequest: 2,
    autoResendUnfulfilledCommands: false,
    ...options.redisOptions,
  });
  const sub = new Redis(options.redisUrl, { ...options.redisOptions });
  for (const [name, connection] of [
    ['publisher', pub],
    ['subscriber', sub],
  ] as const) {
    connection.on('error', (err: Error) =>
      log.warn({ err, connection: name }, 'redis connection error'),
    );
  }

  const published = new Map<string, string>(); // agentId → sessionId announced by this instance
  const pending = new Map<string, PendingForward>(); // forwarded by us, awaiting the owner's reply
  const serving = new Map<string, AbortController>(); // run by us for another instance
  const seenRequests = new Set<string>();
  let idleWaiters: (() => void)[] = [];
  let sequence = 0;
  let draining = false;
  let closed = false;
  let syncing: Promise<void> | undefined;
  let syncAgain: Promise<void> | undefined;
  let syncTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let presenceTimer: NodeJS.Timeout | undefined;
  let syncedVersion: number | undefined; // sessions.sessionsVersion at the last complete sync

  function publish(target: string, message: RelayMessage): Promise<number> {
    return pub.publish(inbox(target), encodeRelayMessage(message));
  }

  function maybeIdle(): void {
    if (pending.size > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const w of waiters) w();
  }

  // ---- presence ----------------------------------------------------------------------------------------------

  async function attach(agentId: string): Promise<void> {
    const previous = (await pub.call(
      'SET',
      presenceKey(agentId),
      instanceId,
      'PX',
      String(presenceTtlMs),
      'GET',
    )) as string | null;
    log.debug({ agentId, previous }, 'agent presence published');
    if (previous !== null && previous !== instanceId) {
      await publish(previous, { kind: 'evict', agentId, by: instanceId });
    }
  }

  async function detach(agentId: string): Promise<void> {
    await pub.eval(DELETE_IF_OWNER, 1, presenceKey(agentId), instanceId);
    log.debug({ agentId }, 'agent presence withdrawn');
  }

  async function syncOnce(): Promise<void> {
    const version = sessions.sessionsVersion;
    if (version !== undefined && version === syncedVersion) return; // no session opened or closed since
    const current = new Map(sessions.sessions().map((s) => [s.agentId, s.sessionId]));
    // Concurrent commands share the connection (one round trip for a batch): a failover attaches hundreds at once.
    const changes: Promise<void>[] = [];
    for (const [agentId, sessionId] of current) {
      if (published.get(agentId) === sessionId) continue;
      published.set(agentId, sessionId);
      changes.push(attach(agentId));
    }
    for (const agentId of [...published.keys()]) {
      if (current.has(agentId)) continue;
      published.delete(agentId);
      changes.push(detach(agentId));
    }
    await Promise.all(changes);
    syncedVersion = version; // not reached when a change failed: the next sync compares again
  }

  function syncPresence(): Promise<void> {
    if (syncing !== undefined) {
      // A sync in progress may have read the sessions before the caller's change: run once more after it.
      syncAgain ??= syncing.then(() => {
        syncAgain = undefined;
        return syncPresence();
      });
      return syncAgain;
    }
    syncing = syncOnce().finally(() => {
      syncing = undefined;
    });
    return syncing;
  }

  /** Extends the TTL of every presence this instance published (every third of presenceTtlMs). */
  async function refreshPresence(): Promise<void> {
    const keys = [...published.keys()].map(presenceKey);
    for (let i = 0; i < keys.length; i += REFRESH_CHUNK) {
      const chunk = keys.slice(i, i + REFRESH_CHUNK);
      await pub.eval(REFRESH_PRESENCE, chunk.length, ...chunk, instanceId, presenceTtlMs);
    }
  }

  /** Refreshes this instance's liveness key (every third of instanceTtlMs) and gives up on dead owners. */
  async function refresh(): Promise<void> {
    await pub.set(instanceKey(instanceId), String(Date.now()), 'PX', instanceTtlMs);
    // Forwarded commands whose owner stopped refreshing its liveness key: it died holding them.
    const owners = new Set([...pending.values()].map((p) => p.owner));
    for (const owner of owners) {
      if ((await pub.exists(instanceKey(owner))) === 1) continue;
      for (const [id, entry] of pending) {
        if (entry.owner !== owner) continue;
        settleUnknown(
          id,
          entry,
          `server instance ${owner} holding agent ${entry.agentId}'s stream went away`,
        );
      }
    }
  }

  function background(task: () => Promise<void>, what: string): void {
    if (closed) return;
    task().catch((err: unknown) => log.warn({ err }, `${what} failed`));
  }

  // ---- caller side --------------------------------------------------------------------------------------------

  function settle(id: string, entry: PendingForward, result: CommandResult): void {
    if (pending.get(id) !== entry) return;
    pending.delete(id);
    clearTimeout(entry.timer);
    try {
      entry.options.onResult?.(result);
    } catch (err) {
      log.error({ err, requestId: id }, 'onResult hook failed');
    }
    entry.resolve(result); // no-op when the caller already got its abort
    maybeIdle();
  }

  function settleUnknown(id: string, entry: PendingForward, why: string): void {
    log.warn(
      { requestId: id, agentId: entry.agentId, owner: entry.owner },
      'forwarded command unanswered: UNKNOWN',
    );
    settle(
      id,
      entry,
      unknownResult(
        entry.command,
        entry.agentId,
        `${why}; the command may or may not have run: read the logical unit before retrying`,
      ),
    );
  }

  function fail(id: string, entry: PendingForward, error: unknown): void {
    if (pending.get(id) !== entry) return;
    pending.delete(id);
    clearTimeout(entry.timer);
    entry.reject(error);
    maybeIdle();
  }

  /** Sends the request to the instance holding the agent; throws UNAVAILABLE when nobody holds it. */
  async function send(id: string, entry: PendingForward): Promise<void> {
    for (;;) {
      const owner = await pub.get(presenceKey(entry.agentId));
      if (owner === null) {
        throw unavailable(
          ErrorReason.AGENT_OFFLINE,
          `agent ${entry.agentId} is not connected to any server instance; nothing was sent`,
          { agent_id: entry.agentId },
        );
      }
      if (owner === instanceId) {
        // Presence says here but the session is gone (it just ended): the local router answers AGENT_OFFLINE.
        throw unavailable(
          ErrorReason.AGENT_OFFLINE,
          `agent ${entry.agentId} is not connected; nothing was sent`,
          {
            agent_id: entry.agentId,
          },
        );
      }
      entry.owner = owner;
      const receivers = await publish(owner, {
        kind: 'request',
        id,
        from: instanceId,
        agentId: entry.agentId,
        command: entry.command,
        timeoutMs: entry.options.timeoutMs,
        ...(entry.options.luId === undefined ? {} : { luId: entry.options.luId }),
        ...(entry.options.actor === undefined ? {} : { actor: entry.options.actor }),
      });
      if (receivers > 0) return;
      // The owner's subscriber is gone: the instance died. Forget its claim unless the agent moved on already.
      await pub.eval(DELETE_IF_OWNER, 1, presenceKey(entry.agentId), owner);
      const now = await pub.get(presenceKey(entry.agentId));
      if (now === null || now === owner || entry.rerouted) {
        throw unavailable(
          ErrorReason.AGENT_OFFLINE,
          `server instance ${owner} holding agent ${entry.agentId} is gone and the agent has not re-attached elsewhere yet; nothing was sent`,
          { agent_id: entry.agentId, instance: owner },
        );
      }
      entry.rerouted = true;
    }
  }

  function forward(
    agentId: string,
    command: Command,
    dispatchOptions: DispatchOptions,
  ): Promise<CommandResult> {
    sequence += 1;
    const id = `${instanceId}/${sequence}`;
    return new Promise<CommandResult>((resolve, reject) => {
      const entry: PendingForward = {
        agentId,
        command,
        options: dispatchOptions,
        owner: '',
        rerouted: false,
        abandoned: false,
        timer: undefined,
        resolve,
        reject,
      };
      pending.set(id, entry);
      const signal = dispatchOptions.signal;
      const onAbort = () => {
        entry.abandoned = true;
        if (entry.owner !== '')
          background(
            () =>
              publish(entry.owner, { kind: 'cancel', id, from: instanceId }).then(() => undefined),
            'cancel relay',
          );
        reject(signal?.reason); // the entry stays: the result still comes back for onResult
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = () => signal?.removeEventListener('abort', onAbort);
      const originalResolve = entry.resolve;
      const originalReject = entry.reject;
      entry.resolve = (r) => {
        cleanup();
        originalResolve(r);
      };
      entry.reject = (e) => {
        cleanup();
        originalReject(e);
      };
      send(id, entry).then(
        () => {
          if (entry.abandoned)
            background(
              () =>
                publish(entry.owner, { kind: 'cancel', id, from: instanceId }).then(
                  () => undefined,
                ),
              'cancel relay',
            );
          entry.timer = setTimeout(
            () =>
              settleUnknown(
                id,
                entry,
                `no reply from server instance ${entry.owner} within ${dispatchOptions.timeoutMs + waitExtraMs} ms`,
              ),
            dispatchOptions.timeoutMs + waitExtraMs,
          );
          entry.timer.unref();
        },
        (error: unknown) => {
          fail(
            id,
            entry,
            error instanceof ServerError
              ? error
              : unavailable(
                  ErrorReason.AGENT_OFFLINE,
                  `cannot route to agent ${agentId}: Redis unreachable (${error instanceof Error ? error.message : String(error)}); nothing was sent`,
                  { agent_id: agentId },
                ),
          );
        },
      );
    });
  }

  function onReply(message: Extract<RelayMessage, { kind: 'result' | 'error' }>): void {
    const entry = pending.get(message.id);
    if (entry === undefined) return; // duplicate, or settled as UNKNOWN already
    if (message.kind === 'result') {
      settle(message.id, entry, message.result);
      return;
    }
    // The owner lost the agent between our GET and its dispatch: if it re-attached elsewhere, follow it once.
    if (message.reason === ErrorReason.AGENT_OFFLINE && !entry.rerouted && !entry.abandoned) {
      entry.rerouted = true;
      const staleOwner = entry.owner;
      clearTimeout(entry.timer);
      void pub.get(presenceKey(entry.agentId)).then(
        (now) => {
          if (now === null || now === staleOwner) {
            fail(message.id, entry, errorFromMessage(message));
            return;
          }
          send(message.id, entry).then(
            () => {
              entry.timer = setTimeout(
                () =>
                  settleUnknown(message.id, entry, `no reply from server instance ${entry.owner}`),
                entry.options.timeoutMs + waitExtraMs,
              );
              entry.timer.unref();
            },
            (error: unknown) => fail(message.id, entry, error),
          );
        },
        () => fail(message.id, entry, errorFromMessage(message)),
      );
      return;
    }
    fail(message.id, entry, errorFromMessage(message));
  }

  // ---- owner side ----------------------------------------------------------------------------------------------

  function onRequest(message: Extract<RelayMessage, { kind: 'request' }>): void {
    if (seenRequests.has(message.id)) return;
    seenRequests.add(message.id);
    if (seenRequests.size > SEEN_REQUESTS_CAPACITY) {
      seenRequests.delete(seenRequests.values().next().value as string);
    }
    let replied = false;
    const reply = (answer: RelayMessage) => {
      if (replied) return;
      replied = true;
      background(() => publish(message.from, answer).then(() => undefined), 'reply relay');
    };
    const controller = new AbortController();
    serving.set(message.id, controller);
    local
      .dispatch(message.agentId, message.command, {
        signal: controller.signal,
        timeoutMs: message.timeoutMs,
        ...(message.luId === undefined ? {} : { luId: message.luId }),
        ...(message.actor === undefined ? {} : { actor: message.actor }),
        onResult: (result) => reply({ kind: 'result', id: message.id, result }),
      })
      .then(
        (result) => reply({ kind: 'result', id: message.id, result }),
        (error: unknown) => {
          if (isAbortError(error) || controller.signal.aborted) return; // the result follows through onResult
          const answer = errorMessageOf(message.id, error);
          if (answer === undefined)
            log.error({ err: error, requestId: message.id }, 'forwarded dispatch failed');
          reply(
            answer ?? {
              kind: 'error',
              id: message.id,
              code: Status.INTERNAL,
              details: 'internal error (logged on the owning instance)',
            },
          );
        },
      )
      .finally(() => serving.delete(message.id));
  }

  function onMessage(channel: string, text: string): void {
    if (channel !== inbox(instanceId)) return;
    let message: RelayMessage;
    try {
      message = decodeRelayMessage(text);
    } catch (err) {
      log.warn({ err }, 'relay message dropped');
      return;
    }
    switch (message.kind) {
      case 'request':
        onRequest(message);
        return;
      case 'cancel':
        serving
          .get(message.id)
          ?.abort(new ServerError(Status.CANCELLED, `caller on instance ${message.from} gave up`));
        return;
      case 'result':
      case 'error':
        onReply(message);
        return;
      case 'evict':
        if (message.by !== instanceId && sessions.session(message.agentId) !== undefined) {
          log.warn(
            { agentId: message.agentId, by: message.by },
            'agent re-attached to another instance: local session is stale',
          );
          options.onEvicted?.(message.agentId, message.by);
        }
        return;
    }
  }

  const ready = (async () => {
    sub.on('message', onMessage);
    await sub.subscribe(inbox(instanceId));
    await pub.set(instanceKey(instanceId), String(Date.now()), 'PX', instanceTtlMs);
    await syncPresence();
    syncTimer = setInterval(() => background(syncPresence, 'presence sync'), syncIntervalMs);
    // Instance liveness (how fast callers notice a dead owner) and agent presence have their own TTLs, so each
    // is refreshed at its own pace: agent presence no faster than its TTL needs.
    refreshTimer = setInterval(
      () => background(refresh, 'instance liveness refresh'),
      Math.max(50, instanceTtlMs / 3),
    );
    presenceTimer = setInterval(
      () => background(refreshPresence, 'presence refresh'),
      Math.max(50, presenceTtlMs / 3),
    );
    syncTimer.unref();
    refreshTimer.unref();
    presenceTimer.unref();
    log.info({ instanceId, inbox: inbox(instanceId) }, 'redis router ready');
  })();
  ready.catch(() => undefined); // callers see the failure through dispatch/ready; no unhandled rejection

  return {
    instanceId,
    ready,
    get draining() {
      return draining;
    },
    get inFlight() {
      return local.inFlight + pending.size;
    },
    startDraining() {
      draining = true;
      local.startDraining();
    },
    async whenIdle(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      const localIdle = await local.whenIdle(timeoutMs);
      if (pending.size === 0) return localIdle;
      const remoteIdle = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
        idleWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      return localIdle && remoteIdle;
    },
    async dispatch(agentId, command, dispatchOptions) {
      if (draining) {
        throw unavailable(
          ErrorReason.SERVER_DRAINING,
          'server is draining: retry on another instance',
          { agent_id: agentId },
        );
      }
      if (dispatchOptions.signal?.aborted) throw dispatchOptions.signal.reason;
      if (sessions.isRotating?.(agentId) === true && sessions.waitWhileRotating !== undefined) {
        // Its stream here is being rotated: wait until the agent is back, here or on another instance.
        await sessions.waitWhileRotating(agentId, {
          timeoutMs: rotationWaitMs,
          signal: dispatchOptions.signal,
        });
        await syncPresence();
      }
      if (sessions.session(agentId) !== undefined)
        return local.dispatch(agentId, command, dispatchOptions);
      await ready;
      // The instance holding the agent answers from a Redis subscriber, outside this call's trace: the command
      // takes the trace context along.
      const traced = command.traceparent === '' ? activeTraceContext() : command;
      return forward(
        agentId,
        traced === command || traced.traceparent === '' ? command : { ...command, ...traced },
        dispatchOptions,
      );
    },
    async ownerOf(agentId) {
      return (await pub.get(presenceKey(agentId))) ?? undefined;
    },
    syncPresence,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(syncTimer);
      clearInterval(refreshTimer);
      clearInterval(presenceTimer);
      try {
        await ready;
        for (const agentId of published.keys()) await detach(agentId);
        published.clear();
        await pub.del(instanceKey(instanceId));
      } catch (err) {
        log.warn({ err }, 'redis router: could not withdraw presence on close');
      }
      for (const [id, entry] of pending)
        settleUnknown(id, entry, `server instance ${instanceId} closed its router`);
      for (const controller of serving.values())
        controller.abort(new ServerError(Status.UNAVAILABLE, 'server instance closing'));
      sub.disconnect();
      await pub.quit().catch(() => pub.disconnect());
    },
  };
}
