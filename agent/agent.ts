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
import type { AgentLinkClient } from './long-poll.js';
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
  return new HostAgent(options, deps);
}

/** The agent's parts put together: lifecycle, inventory and discovery, executor, links, the reconnect loop. */
class HostAgent implements Agent {
  readonly id: string;
  readonly executor: Executor;
  private readonly log: Logger;
  private readonly allow: RegExp[];
  private readonly stopController = new AbortController();
  private readonly lifecycle: AgentLifecycle;
  private readonly paths = new PathInventory();
  private readonly links: ServerLinks;
  private welcomedSessions = 0;
  private current: Session | undefined;
  private loop: Promise<void> | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(
    private readonly options: AgentOptions,
    private readonly deps: AgentDeps,
  ) {
    this.id = options.agentId;
    this.log = deps.log.child({ agentId: options.agentId });
    this.allow = (options.allow ?? []).map(globToRegExp);
    this.lifecycle = new AgentLifecycle(options.agentId, this.log);
    this.links = new ServerLinks(options, this.log, deps.client);
    this.executor = createExecutor({
      agentId: options.agentId,
      transport: deps.source.transport,
      log: this.log,
      ...(options.pathConcurrency === undefined
        ? {}
        : { pathConcurrency: options.pathConcurrency }),
      keepCallerContext: deps.traceCommand !== undefined,
      onPathError: (path, error) => {
        const changed = this.paths.markOffline(path);
        this.log.warn(
          { path, errno: error.errno, code: error.code },
          'path failed; marked offline',
        );
        if (changed) this.current?.sendInventory(this.paths.current);
      },
      onPathAnswer: (path) => {
        if (!this.paths.markOnline(path)) return;
        this.log.info({ path }, 'path answered again; marked online');
        this.current?.sendInventory(this.paths.current);
      },
    });
  }

  get state(): AgentState {
    return this.lifecycle.state;
  }

  get sessions(): number {
    return this.welcomedSessions;
  }

  get link(): AgentLinkKind {
    return this.links.kind;
  }

  inventory(): readonly Path[] {
    return this.paths.current;
  }

  async rescan(): Promise<readonly Path[]> {
    const found = await this.discover();
    this.current?.sendInventory(found);
    return found;
  }

  onStateChange(listener: (state: AgentState) => void): () => void {
    return this.lifecycle.onChange(listener);
  }

  waitForState(state: AgentState, signal?: AbortSignal): Promise<void> {
    return this.lifecycle.waitFor(state, signal);
  }

  async start(): Promise<void> {
    if (this.started) throw new Error(`agent ${this.id} already started`);
    this.started = true;
    this.log.info(
      {
        server: this.options.server,
        transport: this.deps.source.transport.kind,
        version: AGENT_VERSION,
        link: this.links.kind,
      },
      'agent starting',
    );
    await this.discover();
    const rescanMs = this.options.rescanMs;
    if (rescanMs && rescanMs > 0) {
      this.rescanTimer = setInterval(() => {
        this.rescan().catch((e: unknown) => this.log.warn({ err: e }, 'periodic rescan failed'));
      }, rescanMs);
      this.rescanTimer.unref();
    }
    this.loop = this.runLoop().catch((e: unknown) => {
      this.log.error({ err: e }, 'agent loop failed');
    });
  }

  async stop(): Promise<void> {
    if (this.lifecycle.state === 'stopped') return;
    clearInterval(this.rescanTimer);
    this.lifecycle.set('draining');
    this.stopController.abort();
    await this.loop;
    await this.executor.close();
    await this.deps.source.close?.();
    this.links.close();
    this.lifecycle.set('stopped');
  }

  private async discover(): Promise<readonly Path[]> {
    // Normalized paths only, whatever the allow-list: a `..` or `//` path is never a device the operator named.
    const allowed = (path: string): boolean => allowedPath(this.allow, path);
    // Paths are described in parallel, as many at once as commands may run (the semaphore's bound).
    const concurrency = this.options.pathConcurrency ?? 4;
    const found = await discoverPaths(this.deps.source, allowed, concurrency, this.log);
    this.paths.replace(found);
    this.executor.setPaths(found.map((p) => ({ path: p.path, luId: p.luId })));
    this.log.info(
      { paths: found.length, online: found.filter((p) => p.online).length },
      'inventory',
    );
    return found;
  }

  private runLoop(): Promise<void> {
    const { options, deps } = this;
    const hello = helloOf(options, deps.source.transport.kind);
    const clock = deps.clock ?? systemClock;
    const openSession = (client: AgentLinkClient): Session =>
      createSession({
        client,
        hello,
        executor: this.executor,
        inventory: async () => this.paths.current,
        rescan: () => this.discover(),
        log: this.log,
        heartbeatMs: options.heartbeatMs ?? 15_000,
        drainMs: options.drainMs ?? 10_000,
        traceCommand: deps.traceCommand,
        clock,
        onWelcome: () => {
          this.welcomedSessions++;
          this.lifecycle.set('connected');
        },
      });
    const policy = new ReconnectPolicy({
      backoff: options.backoff,
      fallbackAfter: options.linkFallbackAfter ?? 3,
      random: deps.random ?? Math.random,
    });
    return runReconnectLoop(
      {
        links: this.links,
        clock,
        policy,
        log: this.log,
        openSession,
        onConnecting: () => this.lifecycle.set('connecting'),
        onSession: (session) => (this.current = session),
      },
      this.stopController.signal,
    );
  }
}
