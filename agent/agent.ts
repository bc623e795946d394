import { hostname } from 'node:os';
import { ChannelCredentials, createChannel, createClient, type Channel } from 'nice-grpc';
import type { Logger } from 'pino';
import {
  AgentServiceDefinition,
  Hello,
  type AgentServiceClient,
} from '../src/gen/prfleet/v1/agent.js';
import type { Path } from '../src/gen/prfleet/v1/scsi.js';
import { directServiceDefinition } from '../src/common/service-definition.js';
import { allowedPath, globToRegExp } from '../src/common/device-glob.js';
import { discoverPath, offlinePath, type DiscoveryTarget } from './discovery.js';
import { createExecutor, type Executor } from './executor.js';
import { createSession, type CommandTracer, type Session } from './session.js';
import { createLongPollClient, type AgentLinkClient, type LongPollClient } from './long-poll.js';
import type { ScsiTransport } from './transport/transport.js';
import { AGENT_VERSION } from './version.js';
import { systemClock, type Clock } from '../src/common/clock.js';

/**
 * Agent lifecycle: 'connecting' (dialling, or waiting out a backoff), 'connected' (Welcome received),
 * 'draining' (stop() called: finishing in-flight commands), 'stopped'.
 */
export type AgentState = 'connecting' | 'connected' | 'draining' | 'stopped';

/** Where an agent finds its device nodes and how it reaches them (SG_IO, or one host of an emulated fabric). */
export interface DeviceSource {
  /** Transport commands go through. */
  readonly transport: ScsiTransport;
  /** Device nodes present now, with what the host knows of each (initiator port, loader). */
  listTargets(): Promise<readonly DiscoveryTarget[]>;
  /** Releases the source (closes an emulated fabric view). */
  close?(): Promise<void> | void;
}

/** Reconnect backoff: full jitter over min(maxMs, initialMs · 2^attempt) (grpc-ts-notes §2.9). */
export interface BackoffOptions {
  /** First delay bound, ms. @default 250 */
  readonly initialMs?: number;
  /** Largest delay bound, ms. @default 30000 */
  readonly maxMs?: number;
  /** A welcomed session that lasted this long resets the attempt count, ms. @default 30000 */
  readonly healthyMs?: number;
}

/** What createAgent needs to know (the parsed subset of AgentConfig; tests pass their own). */
export interface AgentOptions {
  /**
   * Server address, host:port; or several, comma-separated: each new session (after any end, a Reconnect
   * included) dials the next one, so agents fail over between instances without a load balancer.
   */
  readonly server: string;
  /** Stable agent id (one per host). */
  readonly agentId: string;
  /** Site of the host. @default '' */
  readonly site?: string;
  /** Free-form labels sent in Hello. @default {} */
  readonly labels?: Readonly<Record<string, string>>;
  /** Connect without TLS. @default false */
  readonly plaintext?: boolean;
  /** TLS material (PEM): CA to trust instead of the system roots, and the agent's client certificate for mTLS. */
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  /** Globs of device nodes the agent may touch; empty allows every discovered node. @default [] */
  readonly allow?: readonly string[];
  /** Heartbeat interval until the server's Welcome sets one, ms. @default 15000 */
  readonly heartbeatMs?: number;
  /** Re-discover devices this often (0 = only on Rescan), ms. @default 0 */
  readonly rescanMs?: number;
  /** Paths worked on at once. @default 4 */
  readonly pathConcurrency?: number;
  /** Reconnect backoff. */
  readonly backoff?: BackoffOptions;
  /** Longest wait for in-flight commands at Reconnect or stop, ms. @default 10000 */
  readonly drainMs?: number;
  /** Host name in Hello. @default os.hostname() */
  readonly hostname?: string;
  /**
   * How sessions reach the server: the gRPC stream, or HTTP/1.1 long polling (docs/http.md) for hosts behind
   * proxies that pass no HTTP/2. @default 'stream'
   */
  readonly link?: AgentLinkKind;
  /**
   * With link 'stream': after this many stream sessions in a row failed before any Welcome, switch to long
   * polling (kept until the agent restarts); 0 = never. @default 3
   */
  readonly linkFallbackAfter?: number;
  /** How long each long poll asks the server to wait for commands, ms. @default 20000 */
  readonly longPollWaitMs?: number;
}

/** What carries the agent's sessions. */
export type AgentLinkKind = 'stream' | 'long-poll';

/** Injected collaborators. */
export interface AgentDeps {
  /** pino logger. */
  readonly log: Logger;
  /** Device nodes and transport. */
  readonly source: DeviceSource;
  /** A ready AgentService client (tests); otherwise one channel to `server` is created. */
  readonly client?: AgentServiceClient;
  /** Random source for jitter, [0, 1). @default Math.random */
  readonly random?: () => number;
  /** Times sessions (a healthy one resets the backoff) and waits out the reconnect backoff. @default systemClock */
  readonly clock?: Clock;
  /**
   * Continues the trace a command carries (agent.proto `Command.traceparent`) in a span per command.
   * @default none: commands run without spans
   */
  readonly traceCommand?: CommandTracer | undefined;
}

/** A running (or startable) host agent. */
export interface Agent {
  /** The agent id. */
  readonly id: string;
  /** Current lifecycle state. */
  readonly state: AgentState;
  /** Sessions welcomed so far (a reconnect adds one). */
  readonly sessions: number;
  /** The link the next (or current) session uses: 'long-poll' after a fallback. */
  readonly link: AgentLinkKind;
  /** Discovers devices, then keeps a session open (reconnecting on any end) until stop(). Resolves once started. */
  start(): Promise<void>;
  /** Drains (in-flight commands finish, results are sent), ends the stream, closes devices; state 'stopped'. */
  stop(): Promise<void>;
  /** Calls `listener` on every state change; returns an unsubscribe function. */
  onStateChange(listener: (state: AgentState) => void): () => void;
  /** Resolves when the agent reaches `state` (now or later); rejects if it stops first or `signal` aborts. */
  waitForState(state: AgentState, signal?: AbortSignal): Promise<void>;
  /** The last inventory. */
  inventory(): readonly Path[];
  /** Re-discovers now and sends the new inventory on the open session. */
  rescan(): Promise<readonly Path[]>;
  /** The command executor (exposed for tests and the sim). */
  readonly executor: Executor;
}

/** Delay before reconnect attempt `attempt` (0-based): uniform in [0, min(maxMs, initialMs · 2^attempt)). */
export function backoffDelayMs(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const initialMs = options.initialMs ?? 250;
  const maxMs = options.maxMs ?? 30_000;
  const bound = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * bound);
}

/** Node options for the agent's one channel: keepalive per grpc-ts-notes §2.9, its own TCP connection. */
export const AGENT_CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 1_000,
  'grpc.max_reconnect_backoff_ms': 30_000,
  // One connection per agent even when several agents share a process (the sim): grpc-ts-notes pitfall 10.
  'grpc.use_local_subchannel_pool': 1,
  // The agent re-dials and says Hello itself after any failure; grpc-js's retry layer would only add a wrapper
  // and a retry buffer to every message of the one long-lived stream.
  'grpc.enable_retries': 0,
} as const;

/**
 * Creates a host agent: it dials OUT to the server over one channel and holds one AgentService.Connect stream
 * (Hello, Inventory, heartbeats, commands); when the stream ends for ANY reason, OK included, it reconnects with
 * jittered exponential backoff that resets after a healthy session (style.md §5).
 */
export function createAgent(options: AgentOptions, deps: AgentDeps): Agent {
  const log = deps.log.child({ agentId: options.agentId });
  const random = deps.random ?? Math.random;
  const clock = deps.clock ?? systemClock;
  const allow = (options.allow ?? []).map(globToRegExp);
  const stopController = new AbortController();
  const listeners = new Set<(state: AgentState) => void>();
  let state: AgentState = 'connecting';
  let sessions = 0;
  let paths: Path[] = [];
  /** Paths marked offline now: every answer checks it, so the common case (none) costs nothing per command. */
  let offlinePaths = 0;
  const setPaths = (next: Path[]): void => {
    paths = next;
    offlinePaths = next.reduce((n, p) => (p.online ? n : n + 1), 0);
  };
  let current: Session | undefined;
  const addresses = options.server
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  const channels = new Map<string, Channel>();
  let addressIndex = 0;
  let loop: Promise<void> | undefined;
  let rescanTimer: NodeJS.Timeout | undefined;
  let started = false;

  const setState = (next: AgentState): void => {
    if (state === next) return;
    state = next;
    log.info({ state }, 'agent state');
    for (const l of [...listeners]) l(next);
  };

  const executor = createExecutor({
    agentId: options.agentId,
    transport: deps.source.transport,
    log,
    ...(options.pathConcurrency === undefined ? {} : { pathConcurrency: options.pathConcurrency }),
    keepCallerContext: deps.traceCommand !== undefined,
    onPathError(path, error) {
      let changed = false;
      setPaths(
        paths.map((p) => {
          if (p.path !== path || !p.online) return p;
          changed = true;
          return { ...p, online: false };
        }),
      );
      log.warn({ path, errno: error.errno, code: error.code }, 'path failed; marked offline');
      if (changed) current?.sendInventory(paths);
    },
    onPathAnswer(path) {
      if (offlinePaths === 0) return;
      const offline = paths.find((p) => p.path === path && !p.online);
      if (!offline) return;
      setPaths(paths.map((p) => (p === offline ? { ...p, online: true } : p)));
      log.info({ path }, 'path answered again; marked online');
      current?.sendInventory(paths);
    },
  });

  // Normalized paths only, whatever the allow-list: a `..` or `//` path is never a device the operator named.
  const allowed = (path: string): boolean => allowedPath(allow, path);

  async function discover(): Promise<readonly Path[]> {
    const targets = (await deps.source.listTargets()).filter((t) => allowed(t.path));
    const found: Path[] = new Array<Path>(targets.length);
    const describe = async (index: number): Promise<void> => {
      const target = targets[index] as DiscoveryTarget;
      try {
        const device = await deps.source.transport.open(target.path, { readOnly: true });
        try {
          found[index] = await discoverPath(device, target, { log });
        } finally {
          await device.close();
        }
      } catch (e) {
        log.warn({ path: target.path, err: e }, 'path not discovered; reported offline');
        found[index] = offlinePath(target);
      }
    };
    // Paths are described in parallel, as many at once as commands may run (the semaphore's bound).
    let next = 0;
    const workers = Array.from(
      { length: Math.min(targets.length, options.pathConcurrency ?? 4) },
      async () => {
        while (next < targets.length) await describe(next++);
      },
    );
    await Promise.all(workers);
    setPaths(found);
    executor.setPaths(found.map((p) => ({ path: p.path, luId: p.luId })));
    log.info({ paths: found.length, online: found.filter((p) => p.online).length }, 'inventory');
    return found;
  }

  let link: AgentLinkKind = options.link ?? 'stream';
  const longPollClients = new Map<string, LongPollClient>();
  const longPollClient = (address: string): LongPollClient => {
    let existing = longPollClients.get(address);
    if (existing === undefined) {
      existing = createLongPollClient({
        server: address,
        plaintext: options.plaintext ?? false,
        ...(options.tls === undefined ? {} : { tls: options.tls }),
        ...(options.longPollWaitMs === undefined ? {} : { waitMs: options.longPollWaitMs }),
        log,
      });
      longPollClients.set(address, existing);
    }
    return existing;
  };
  const clients = new Map<string, AgentServiceClient>();
  const client = (address: string): AgentLinkClient => {
    if (link === 'long-poll') return longPollClient(address);
    if (deps.client) return deps.client;
    let existing = clients.get(address);
    if (existing === undefined) {
      const channel = createChannel(
        address,
        options.plaintext
          ? ChannelCredentials.createInsecure()
          : ChannelCredentials.createSsl(
              options.tls?.ca ?? null,
              options.tls?.key ?? null,
              options.tls?.cert ?? null,
            ),
        AGENT_CHANNEL_OPTIONS,
      );
      channels.set(address, channel);
      // Results are complete messages: encode them without nice-grpc's fromPartial copy.
      existing = createClient(directServiceDefinition(AgentServiceDefinition), channel);
      clients.set(address, existing);
    }
    return existing;
  };

  async function runLoop(): Promise<void> {
    const signal = stopController.signal;
    const hello = Hello.fromPartial({
      agentId: options.agentId,
      hostname: options.hostname ?? hostname(),
      version: AGENT_VERSION,
      site: options.site ?? '',
      labels: { ...options.labels },
      transport: deps.source.transport.kind,
    });
    let attempt = 0;
    let streamFailures = 0;
    const fallbackAfter = options.linkFallbackAfter ?? 3;
    while (!signal.aborted) {
      setState('connecting');
      const address = addresses[addressIndex % addresses.length] as string;
      const session = createSession({
        client: client(address),
        hello,
        executor,
        inventory: async () => paths,
        rescan: discover,
        log,
        heartbeatMs: options.heartbeatMs ?? 15_000,
        drainMs: options.drainMs ?? 10_000,
        traceCommand: deps.traceCommand,
        clock,
        onWelcome: () => {
          sessions++;
          setState('connected');
        },
      });
      current = session;
      const end = await session.run(signal);
      current = undefined;
      if (signal.aborted) break;
      // Next session, next address: a dead or draining instance is left behind (one address: the same one).
      addressIndex += 1;
      // A stream that never gets a Welcome again and again may be blocked by an HTTP/1.1-only proxy.
      streamFailures =
        link === 'stream' && end.reason === 'error' && !end.welcomed ? streamFailures + 1 : 0;
      if (link === 'stream' && fallbackAfter > 0 && streamFailures >= fallbackAfter) {
        link = 'long-poll';
        attempt = 0;
        log.warn(
          { failures: streamFailures, err: end.error },
          'the gRPC stream failed repeatedly before any Welcome: falling back to the HTTP/1.1 long-poll link',
        );
      }
      const healthy = end.welcomed && end.durationMs >= (options.backoff?.healthyMs ?? 30_000);
      if (healthy || end.reason === 'reconnect') attempt = 0;
      const waitMs = backoffDelayMs(attempt, options.backoff, random);
      attempt++;
      log.warn(
        {
          reason: end.reason,
          ...(end.error === undefined ? {} : { err: end.error }),
          sessionMs: end.durationMs,
          server: address,
          attempt,
          waitMs,
        },
        'session ended; reconnecting',
      );
      await clock.sleep(waitMs, signal);
    }
  }

  const agent: Agent = {
    id: options.agentId,
    executor,
    get state() {
      return state;
    },
    get sessions() {
      return sessions;
    },
    get link() {
      return link;
    },
    inventory: () => paths,
    async rescan() {
      const found = await discover();
      current?.sendInventory(found);
      return found;
    },
    onStateChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    waitForState(target, signal) {
      if (state === target) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const cleanup = (): void => {
          unsubscribe();
          signal?.removeEventListener('abort', onAbort);
        };
        const onAbort = (): void => {
          cleanup();
          reject(
            signal?.reason instanceof Error
              ? signal.reason
              : new Error(`agent ${options.agentId}: wait aborted`),
          );
        };
        const unsubscribe = agent.onStateChange((s) => {
          if (s === target) {
            cleanup();
            resolve();
          } else if (s === 'stopped') {
            cleanup();
            reject(new Error(`agent ${options.agentId} stopped before reaching ${target}`));
          }
        });
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    async start() {
      if (started) throw new Error(`agent ${options.agentId} already started`);
      started = true;
      log.info(
        {
          server: options.server,
          transport: deps.source.transport.kind,
          version: AGENT_VERSION,
          link,
        },
        'agent starting',
      );
      await discover();
      if (options.rescanMs && options.rescanMs > 0) {
        rescanTimer = setInterval(() => {
          agent.rescan().catch((e: unknown) => log.warn({ err: e }, 'periodic rescan failed'));
        }, options.rescanMs);
        rescanTimer.unref();
      }
      loop = runLoop().catch((e: unknown) => {
        log.error({ err: e }, 'agent loop failed');
      });
    },
    async stop() {
      if (state === 'stopped') return;
      clearInterval(rescanTimer);
      setState('draining');
      stopController.abort();
      await loop;
      await executor.close();
      await deps.source.close?.();
      for (const channel of channels.values()) channel.close();
      for (const poller of longPollClients.values()) poller.close();
      setState('stopped');
    },
  };
  return agent;
}
