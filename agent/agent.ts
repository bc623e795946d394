import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { Hello, type AgentServiceClient } from '../src/gen/prfleet/v1/agent.js';
import type { Path } from '../src/gen/prfleet/v1/scsi.js';
import { allowedPath, globToRegExp } from '../src/common/device-glob.js';
import type { DiscoveryTarget } from './discovery.js';
import { createExecutor, type Executor } from './executor.js';
import { discoverPaths, PathInventory } from './inventory.js';
import { AgentLifecycle } from './lifecycle.js';
import { ReconnectPolicy, runReconnectLoop, type BackoffOptions } from './reconnect.js';
import { ServerLinks } from './server-links.js';
import { createSession, type CommandTracer, type Session } from './session.js';
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

/** The Hello every session of the agent starts with. */
function helloOf(options: AgentOptions, transport: ScsiTransport['kind']): Hello {
  return Hello.fromPartial({
    agentId: options.agentId,
    hostname: options.hostname ?? hostname(),
    version: AGENT_VERSION,
    site: options.site ?? '',
    labels: { ...options.labels },
    transport,
  });
}

/**
 * Creates a host agent: it dials OUT to the server over one channel and holds one AgentService.Connect stream
 * (Hello, Inventory, heartbeats, commands); when the stream ends for ANY reason, OK included, it reconnects with
 * jittered exponential backoff that resets after a healthy session (style.md §5).
 */
export function createAgent(options: AgentOptions, deps: AgentDeps): Agent {
  const log = deps.log.child({ agentId: options.agentId });
  const allow = (options.allow ?? []).map(globToRegExp);
  const stopController = new AbortController();
  const lifecycle = new AgentLifecycle(options.agentId, log);
  const inventory = new PathInventory();
  const links = new ServerLinks(options, log, deps.client);
  let sessions = 0;
  let current: Session | undefined;
  let loop: Promise<void> | undefined;
  let rescanTimer: NodeJS.Timeout | undefined;
  let started = false;

  const executor = createExecutor({
    agentId: options.agentId,
    transport: deps.source.transport,
    log,
    ...(options.pathConcurrency === undefined ? {} : { pathConcurrency: options.pathConcurrency }),
    keepCallerContext: deps.traceCommand !== undefined,
    onPathError(path, error) {
      const changed = inventory.markOffline(path);
      log.warn({ path, errno: error.errno, code: error.code }, 'path failed; marked offline');
      if (changed) current?.sendInventory(inventory.current);
    },
    onPathAnswer(path) {
      if (!inventory.markOnline(path)) return;
      log.info({ path }, 'path answered again; marked online');
      current?.sendInventory(inventory.current);
    },
  });

  async function discover(): Promise<readonly Path[]> {
    // Normalized paths only, whatever the allow-list: a `..` or `//` path is never a device the operator named.
    const allowed = (path: string): boolean => allowedPath(allow, path);
    // Paths are described in parallel, as many at once as commands may run (the semaphore's bound).
    const found = await discoverPaths(deps.source, allowed, options.pathConcurrency ?? 4, log);
    inventory.replace(found);
    executor.setPaths(found.map((p) => ({ path: p.path, luId: p.luId })));
    log.info({ paths: found.length, online: found.filter((p) => p.online).length }, 'inventory');
    return found;
  }

  function runLoop(): Promise<void> {
    const hello = helloOf(options, deps.source.transport.kind);
    const clock = deps.clock ?? systemClock;
    return runReconnectLoop(
      {
        links,
        clock,
        policy: new ReconnectPolicy({
          backoff: options.backoff,
          fallbackAfter: options.linkFallbackAfter ?? 3,
          random: deps.random ?? Math.random,
        }),
        log,
        openSession: (client) =>
          createSession({
            client,
            hello,
            executor,
            inventory: async () => inventory.current,
            rescan: discover,
            log,
            heartbeatMs: options.heartbeatMs ?? 15_000,
            drainMs: options.drainMs ?? 10_000,
            traceCommand: deps.traceCommand,
            clock,
            onWelcome: () => {
              sessions++;
              lifecycle.set('connected');
            },
          }),
        onConnecting: () => lifecycle.set('connecting'),
        onSession: (session) => (current = session),
      },
      stopController.signal,
    );
  }

  const agent: Agent = {
    id: options.agentId,
    executor,
    get state() {
      return lifecycle.state;
    },
    get sessions() {
      return sessions;
    },
    get link() {
      return links.kind;
    },
    inventory: () => inventory.current,
    async rescan() {
      const found = await discover();
      current?.sendInventory(found);
      return found;
    },
    onStateChange: (listener) => lifecycle.onChange(listener),
    waitForState: (target, signal) => lifecycle.waitFor(target, signal),
    async start() {
      if (started) throw new Error(`agent ${options.agentId} already started`);
      started = true;
      log.info(
        {
          server: options.server,
          transport: deps.source.transport.kind,
          version: AGENT_VERSION,
          link: links.kind,
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
      if (lifecycle.state === 'stopped') return;
      clearInterval(rescanTimer);
      lifecycle.set('draining');
      stopController.abort();
      await loop;
      await executor.close();
      await deps.source.close?.();
      links.close();
      lifecycle.set('stopped');
    },
  };
  return agent;
}
