import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status } from 'nice-grpc-common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Command } from '../gen/prfleet/v1/agent.js';
import {
  outcomeToJSON,
  prinActionToJSON,
  proutActionToJSON,
  type CommandResult,
} from '../gen/prfleet/v1/scsi.js';
import type { RpcObserver } from './middleware.js';
import { withDispatch, type CommandRouter } from './router.js';

/** Latency buckets in seconds: SCSI PR commands take ms; a loader busy with a move can take tens of seconds. */
const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** The server's Prometheus metrics, on a registry of their own (not prom-client's global one). */
export interface ServerMetrics {
  /** The registry to expose (startMetricsServer) or merge. */
  readonly registry: Registry;
  /** Agents with an open stream on this instance. */
  readonly agentsConnected: Gauge;
  /** Logical units reported by connected agents (distinct LU ids). */
  readonly devices: Gauge;
  /** Paths reported by connected agents. */
  readonly paths: Gauge;
  /** Results by command kind (`prout_reserve`, `prin_read_keys`, …) and outcome (`good`, `reservation_conflict`, `unknown`, …). */
  readonly commands: Counter<'kind' | 'outcome'>;
  /** Commands not sent or given up by the caller, by kind and gRPC code (`UNAVAILABLE`, `CANCELLED`, …). */
  readonly commandErrors: Counter<'kind' | 'code'>;
  /** Time from dispatch to result, by kind, seconds. */
  readonly commandSeconds: Histogram<'kind'>;
  /** New sessions of agents that had one before (reconnects, including to this instance after another). */
  readonly agentReconnects: Counter;
  /** Findings of the latest audit, by kind. */
  readonly auditFindings: Gauge<'kind'>;
  /** Finished RPCs by method and status code. */
  readonly rpcs: Counter<'method' | 'code'>;
  /** RPC duration by method and code, seconds (streams: whole stream). */
  readonly rpcSeconds: Histogram<'method' | 'code'>;
  /** Counts one command's result. */
  recordCommand(command: Command, result: CommandResult, seconds: number): void;
  /** Replaces the audit findings gauge with the latest audit's counts (kinds absent now drop to 0). */
  setAuditFindings(countsByKind: Readonly<Record<string, number>>): void;
  /** Fleet events recorded by this instance, by kind (`agent_connected`, `prout`, …). */
  readonly events: Counter<'kind'>;
  /** Watch streams open on this instance. */
  readonly watchers: Gauge;
  /** Watch streams ended because they fell too far behind. */
  readonly watchersEndedSlow: Counter;
  /** Webhook delivery attempts by outcome (`ok`, `failed`; `dead_lettered` counts events given up on). */
  readonly webhookDeliveries: Counter<'outcome'>;
  /** From an event's recording to its delivery (2xx), seconds. */
  readonly webhookDeliverySeconds: Histogram;
}

/** The webhook counters as the dispatcher reports to them (src/server/webhooks). */
export function webhookObserver(metrics: ServerMetrics): {
  delivery(outcome: 'ok' | 'failed' | 'dead_lettered', seconds: number): void;
} {
  return {
    delivery(outcome, seconds) {
      metrics.webhookDeliveries.inc({ outcome });
      if (outcome === 'ok') metrics.webhookDeliverySeconds.observe(seconds);
    },
  };
}

/** The events' counters as the event machinery reports to them (src/server/events). */
export function eventsObserver(metrics: ServerMetrics): {
  recorded(kind: string, count: number): void;
  watchers(delta: number): void;
  endedSlow(): void;
} {
  return {
    recorded: (kind, count) => metrics.events.inc({ kind }, count),
    watchers: (delta) => metrics.watchers.inc(delta),
    endedSlow: () => metrics.watchersEndedSlow.inc(),
  };
}

/** Options for {@link createMetrics}. */
export interface MetricsOptions {
  /** Prefix of every metric name. @default 'prfleet_' */
  readonly prefix?: string;
  /** Also collect Node process metrics (CPU, memory, event loop lag, GC). @default true */
  readonly processMetrics?: boolean;
}

/** `prout_reserve`, `prin_read_keys`, `inquiry`, … (bounded label values: one per SPC service action). */
export function commandKindOf(command: Command): string {
  const kind = command.kind;
  switch (kind?.$case) {
    case 'prin':
      return `prin_${prinActionToJSON(kind.value.action)
        .replace(/^PRIN_ACTION_/, '')
        .toLowerCase()}`;
    case 'prout':
      return `prout_${proutActionToJSON(kind.value.action)
        .replace(/^PROUT_ACTION_/, '')
        .toLowerCase()}`;
    case 'inquiry':
      return 'inquiry';
    case 'testUnitReady':
      return 'test_unit_ready';
    case 'requestSense':
      return 'request_sense';
    case 'reportLuns':
      return 'report_luns';
    case 'readElementStatus':
      return 'read_element_status';
    case 'luReset':
      return 'lu_reset';
    case undefined:
      return 'none';
  }
}

/** Creates the metrics on a new registry. */
export function createMetrics(options: MetricsOptions = {}): ServerMetrics {
  const prefix = options.prefix ?? 'prfleet_';
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix });
  const registers = [registry];
  const on: MetricSite = { prefix, registers };
  // Registered in the order /metrics lists them.
  const agents = agentGauges(on);
  const commands = commandMetrics(on);
  const agentReconnects = new Counter({
    name: `${prefix}agent_reconnects_total`,
    help: 'New sessions of agents seen before',
    registers,
  });
  const auditFindings = new Gauge({
    name: `${prefix}audit_findings`,
    help: 'Findings of the latest audit by kind',
    labelNames: ['kind'] as const,
    registers,
  });
  return {
    registry,
    ...agents,
    ...commands,
    agentReconnects,
    auditFindings,
    ...rpcMetrics(on),
    ...eventMetrics(on),
    ...webhookMetrics(on),
    recordCommand: commandRecorder(commands),
    setAuditFindings(countsByKind) {
      auditFindings.reset();
      for (const [kind, count] of Object.entries(countsByKind)) auditFindings.set({ kind }, count);
    },
  };
}

/** Where a metric goes: its name prefix and registry. */
interface MetricSite {
  readonly prefix: string;
  readonly registers: Registry[];
}

function agentGauges({
  prefix,
  registers,
}: MetricSite): Pick<ServerMetrics, 'agentsConnected' | 'devices' | 'paths'> {
  return {
    agentsConnected: new Gauge({
      name: `${prefix}agents_connected`,
      help: 'Agents with an open stream on this instance',
      registers,
    }),
    devices: new Gauge({
      name: `${prefix}devices`,
      help: 'Logical units reported by connected agents',
      registers,
    }),
    paths: new Gauge({
      name: `${prefix}paths`,
      help: 'Paths (device nodes) reported by connected agents',
      registers,
    }),
  };
}

type CommandMetrics = Pick<ServerMetrics, 'commands' | 'commandErrors' | 'commandSeconds'>;

function commandMetrics({ prefix, registers }: MetricSite): CommandMetrics {
  return {
    commands: new Counter({
      name: `${prefix}commands_total`,
      help: 'Command results by kind and outcome (a reservation conflict is an outcome, not an error)',
      labelNames: ['kind', 'outcome'] as const,
      registers,
    }),
    commandErrors: new Counter({
      name: `${prefix}command_errors_total`,
      help: 'Commands refused before sending (agent offline, busy, draining) or abandoned by the caller, by gRPC code',
      labelNames: ['kind', 'code'] as const,
      registers,
    }),
    commandSeconds: new Histogram({
      name: `${prefix}command_duration_seconds`,
      help: 'Time from dispatch to result',
      labelNames: ['kind'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
}

/** ServerMetrics.recordCommand over the command counters. */
function commandRecorder({
  commands,
  commandSeconds,
}: CommandMetrics): ServerMetrics['recordCommand'] {
  // Label children by label values: prom-client hashes the label object on every inc/observe otherwise, which
  // is a visible part of each command's cost. The label sets are few (kinds × outcomes).
  const commandCounters = new Map<string, ReturnType<typeof commands.labels>>();
  const commandTimers = new Map<string, ReturnType<typeof commandSeconds.labels>>();
  return (command, result, seconds) => {
    const kind = commandKindOf(command);
    const key = `${kind}\0${result.outcome}`;
    let counter = commandCounters.get(key);
    if (counter === undefined) {
      const outcome = outcomeToJSON(result.outcome)
        .replace(/^OUTCOME_/, '')
        .toLowerCase();
      commandCounters.set(key, (counter = commands.labels({ kind, outcome })));
    }
    counter.inc();
    let timer = commandTimers.get(kind);
    if (timer === undefined) commandTimers.set(kind, (timer = commandSeconds.labels({ kind })));
    timer.observe(seconds);
  };
}

function rpcMetrics({ prefix, registers }: MetricSite): Pick<ServerMetrics, 'rpcs' | 'rpcSeconds'> {
  return {
    rpcs: new Counter({
      name: `${prefix}grpc_server_handled_total`,
      help: 'Finished RPCs by method and status code',
      labelNames: ['method', 'code'] as const,
      registers,
    }),
    rpcSeconds: new Histogram({
      name: `${prefix}grpc_server_handling_seconds`,
      help: 'RPC duration (streams: whole stream)',
      labelNames: ['method', 'code'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
}

function eventMetrics({
  prefix,
  registers,
}: MetricSite): Pick<ServerMetrics, 'events' | 'watchers' | 'watchersEndedSlow'> {
  return {
    events: new Counter({
      name: `${prefix}events_total`,
      help: 'Fleet events recorded by this instance, by kind',
      labelNames: ['kind'] as const,
      registers,
    }),
    watchers: new Gauge({
      name: `${prefix}watchers`,
      help: 'FleetService.Watch streams open on this instance',
      registers,
    }),
    watchersEndedSlow: new Counter({
      name: `${prefix}watchers_ended_slow_total`,
      help: 'Watch streams ended with RESOURCE_EXHAUSTED because they fell too far behind',
      registers,
    }),
  };
}

function webhookMetrics({
  prefix,
  registers,
}: MetricSite): Pick<ServerMetrics, 'webhookDeliveries' | 'webhookDeliverySeconds'> {
  return {
    webhookDeliveries: new Counter({
      name: `${prefix}webhook_deliveries_total`,
      help: 'Webhook delivery attempts by outcome (ok, failed); dead_lettered: events given up on',
      labelNames: ['outcome'] as const,
      registers,
    }),
    webhookDeliverySeconds: new Histogram({
      name: `${prefix}webhook_delivery_seconds`,
      help: 'From a fleet event being recorded to its webhook delivery being accepted (2xx), seconds',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
      registers,
    }),
  };
}

/** gRPC status name of an error leaving a handler (what the client will see). */
function codeOf(error: unknown): string {
  if (error instanceof ServerError) return Status[error.code];
  if (isAbortError(error)) return 'CANCELLED';
  return 'UNKNOWN';
}

/**
 * Counts RPCs and their duration by method and code: the observer prfleet's one RPC middleware calls
 * (src/server/middleware.ts rpcMiddleware), so the codes are the ones the client sees.
 */
export function rpcObserver(metrics: ServerMetrics): RpcObserver {
  // Label children by (method, code), so each RPC does not hash its label object twice (prom-client).
  const children = new Map<
    string,
    {
      count: ReturnType<ServerMetrics['rpcs']['labels']>;
      time: ReturnType<ServerMetrics['rpcSeconds']['labels']>;
    }
  >();
  return (method, code, seconds) => {
    const key = `${method}\0${code}`;
    let child = children.get(key);
    if (child === undefined) {
      child = {
        count: metrics.rpcs.labels({ method, code }),
        time: metrics.rpcSeconds.labels({ method, code }),
      };
      children.set(key, child);
    }
    child.count.inc();
    child.time.observe(seconds);
  };
}

/**
 * Wraps a router so every dispatch is counted: results (also late ones, through onResult) by kind and outcome
 * with their latency; refusals and caller aborts by code. The wrapped router behaves exactly like `router`.
 */
export function instrumentRouter<R extends CommandRouter>(router: R, metrics: ServerMetrics): R {
  const dispatch: CommandRouter['dispatch'] = async (agentId, command, options) => {
    const started = performance.now();
    const kind = commandKindOf(command);
    try {
      return await router.dispatch(agentId, command, {
        ...options,
        onResult: (result) => {
          metrics.recordCommand(command, result, (performance.now() - started) / 1000);
          options.onResult?.(result);
        },
      });
    } catch (error) {
      metrics.commandErrors.inc({ kind, code: codeOf(error) });
      throw error;
    }
  };
  return withDispatch(router, dispatch);
}

/** What {@link observeAgents} reads: the AgentRegistry's sessions and their inventories. */
export interface AgentSource {
  /** Open sessions on this instance. */
  sessions(): readonly { readonly agentId: string; readonly sessionId: string }[];
  /** The record of an agent, with its last inventory. */
  get(agentId: string): { readonly paths: readonly { readonly luId: string }[] } | undefined;
}

/**
 * Keeps the agent and device gauges current at every scrape, and counts reconnects (a new session id for an
 * agent seen before) by looking at the sessions every `pollMs`. Returns a stop function.
 */
export function observeAgents(
  metrics: ServerMetrics,
  source: AgentSource,
  options: { pollMs?: number } = {},
): () => void {
  const lastSession = new Map<string, string>();
  const poll = () => {
    for (const { agentId, sessionId } of source.sessions()) {
      const previous = lastSession.get(agentId);
      if (previous !== undefined && previous !== sessionId) metrics.agentReconnects.inc();
      lastSession.set(agentId, sessionId);
    }
  };
  const update = () => {
    poll();
    const open = source.sessions();
    const luIds = new Set<string>();
    let pathCount = 0;
    for (const { agentId } of open) {
      for (const path of source.get(agentId)?.paths ?? []) {
        pathCount += 1;
        if (path.luId !== '') luIds.add(path.luId);
      }
    }
    metrics.agentsConnected.set(open.length);
    metrics.devices.set(luIds.size);
    metrics.paths.set(pathCount);
  };
  // prom-client calls collect() on scrape; a gauge has one collect, so hang the update on agentsConnected.
  const gauge = metrics.agentsConnected as unknown as { collect: (() => void) | undefined };
  gauge.collect = update;
  poll();
  const timer = setInterval(poll, options.pollMs ?? 1_000);
  timer.unref();
  return () => {
    clearInterval(timer);
    gauge.collect = undefined;
  };
}

/** A running /metrics endpoint. */
export interface MetricsServer {
  /** Bound port. */
  readonly port: number;
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text format) on `host:port` with node:http (port 0 picks one); any other
 * path is 404. Keep it off the public gRPC port: bind it to an internal interface or firewall it.
 */
export async function startMetricsServer(
  registry: Registry,
  options: { port: number; host?: string },
): Promise<MetricsServer> {
  const server: HttpServer = createHttpServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response
        .writeHead(404, { 'content-type': 'text/plain' })
        .end('not found: try GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) =>
        response
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`metrics failed: ${String(error)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        server.closeAllConnections();
      }),
  };
}
