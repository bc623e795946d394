import type { ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ServerMiddleware } from 'nice-grpc-common';
import * as z from '../common/zod-mini.js';
import { envInt } from './env-schema.js';
import type { AgentRegistry } from './agents/index.js';
import {
  loadSecurityConfig,
  type AuthCallContextExt,
  type SecurityConfig,
  type TokenStore,
} from './auth/index.js';
import type { MetricsServer, ServerMetrics } from './metrics.js';
import { loadMetricsConfig } from './metrics-config.js';
import { loadRedisRouterConfig, type RedisRouterConfig } from './redis-router/config.js';
import type { CommandRouter } from './router.js';
import type { RedisInventory } from './shared-inventory/index.js';
import type { Store } from './store/index.js';
import type { EventsObserver, FleetEvents } from './events/fleet-events.js';
import type { WebhookObserver } from './webhooks/dispatcher.js';
import type { RpcObserver } from './middleware.js';
import { loadTracingConfig, type TracingOptions } from '../common/tracing-config.js';
import type { Tracing } from './tracing.js';
import { buildClientSecurity, type ClientSecurity } from './scale-out/client-security.js';
import { startDeadInstanceReaper } from './scale-out/dead-instances.js';
import {
  buildScaleOutRouter,
  type RouterSetup,
  type ScaleOutRouting,
} from './scale-out/routing.js';

const ScaleOutEnv = z.object({
  PRFLEET_MAX_STREAM_AGE_MS: envInt(0, 86_400_000, 0),
  PRFLEET_ROTATION_WAIT_MS: envInt(0, 600_000, 10_000),
  PRFLEET_ROTATION_GRACE_MS: envInt(100, 3_600_000, 70_000),
  PRFLEET_INVENTORY_RESYNC_MS: envInt(100, 3_600_000, 30_000),
});

/** Multi-instance, security and operability settings (what {@link createServerExtras} reads from the environment). */
export interface ScaleOutConfig {
  /** Redis routing (PRFLEET_REDIS_URL, …); without a URL the server stays single-instance, in-process. */
  readonly redis: RedisRouterConfig;
  /**
   * PRFLEET_MAX_STREAM_AGE_MS: agent streams older than this are rotated (0 = never). Set it below the
   * platform's request timeout minus the longest command (Cloud Run: 60 min cap → e.g. 55 min). @default 0
   */
  readonly maxStreamAgeMs: number;
  /** PRFLEET_ROTATION_WAIT_MS: how long a command waits for a rotating agent to come back. @default 10000 */
  readonly rotationWaitMs: number;
  /** PRFLEET_ROTATION_GRACE_MS: a rotation not finished within this closes the session. @default 70000 */
  readonly rotationGraceMs: number;
  /** PRFLEET_INVENTORY_RESYNC_MS: full reload of the shared inventory. @default 30000 */
  readonly inventoryResyncMs: number;
  /**
   * TLS, agent certificates and tokens (PRFLEET_TLS_*, PRFLEET_PLAINTEXT, PRFLEET_TOKENS_FILE); always read from
   * the environment by {@link loadScaleOutConfig}; undefined only for in-process callers that build their own
   * credentials.
   */
  readonly security: SecurityConfig | undefined;
  /** PRFLEET_METRICS_PORT/HOST; undefined = no /metrics listener. */
  readonly metrics: { readonly port: number; readonly host: string } | undefined;
  /** OTEL_EXPORTER_OTLP_ENDPOINT…; undefined = no tracing. */
  readonly tracing: TracingOptions | undefined;
}

/** Parses the scale-out environment; throws one Error naming every bad variable it finds first. */
export function loadScaleOutConfig(env: NodeJS.ProcessEnv = process.env): ScaleOutConfig {
  const parsed = ScaleOutEnv.safeParse(env);
  if (!parsed.success)
    throw new Error(`invalid server environment\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  if (env['PRFLEET_SECURITY'] !== undefined) {
    // It once turned TLS, certificates and tokens off without a word; a server must not start thinking so.
    throw new Error(
      'PRFLEET_SECURITY is not supported: security is always configured from PRFLEET_TLS_* / PRFLEET_PLAINTEXT / PRFLEET_TOKENS (docs/security.md); unset it',
    );
  }
  return {
    redis: loadRedisRouterConfig(env),
    maxStreamAgeMs: e.PRFLEET_MAX_STREAM_AGE_MS,
    rotationWaitMs: e.PRFLEET_ROTATION_WAIT_MS,
    rotationGraceMs: e.PRFLEET_ROTATION_GRACE_MS,
    inventoryResyncMs: e.PRFLEET_INVENTORY_RESYNC_MS,
    security: loadSecurityConfig(env),
    metrics: loadMetricsConfig(env),
    tracing: loadTracingConfig(env),
  };
}

/** What the extras need from the server's configuration. */
export interface ServerExtrasDeps {
  /** Logger. */
  readonly log: Logger;
  /** config.instanceId (Redis presence, journal owner, Welcome). */
  readonly instanceId: string;
  /** config.resultSlackMs. */
  readonly resultSlackMs: number;
  /**
   * Tracing set up for config.tracing (`(await import('./tracing.js')).setupTracing(…)`: the SDK loads only when
   * it is configured). @default none
   */
  readonly tracing?: Tracing | undefined;
  /** Test knobs of the Redis router and the shared inventory. @default production values */
  readonly tuning?: {
    readonly syncIntervalMs?: number;
    readonly relayMarginMs?: number;
    readonly heartbeatFlushMs?: number;
  };
}

/** The parts of a built server the extras attach to after createPrfleetServer. */
export interface ServerHandle {
  /** server.agents. */
  readonly agents: AgentRegistry;
  /** server.store (the journal of dead instances' pending PROUTs is settled through it). */
  readonly store: Store | undefined;
  /** server.events (with Redis, other instances are told of this one's events). @default none */
  readonly events?: FleetEvents | undefined;
}

/**
 * Everything issue 7 adds around the server, built from the environment, for a few wiring lines:
 *
 * ```ts
 * const extras = await createServerExtras(loadScaleOutConfig(env), { log, instanceId, resultSlackMs });
 * const server = await createPrfleetServer({ log, config, createRouter: extras.createRouter, …extras middlewares });
 * await server.listen(address, extras.credentials); await extras.start(server);
 * // SIGTERM: await server.drain(); await server.shutdown(); await extras.close();
 * ```
 */
export interface ServerExtras {
  /** The parsed settings. */
  readonly config: ScaleOutConfig;
  /**
   * For ServerDeps.createRouter: configures the registry (shared inventory, stream age, agent certificates)
   * and returns the router: Redis when PRFLEET_REDIS_URL is set, else in-process; counted by the metrics.
   */
  createRouter(registry: AgentRegistry): CommandRouter;
  /** For server.listen(address, credentials): TLS with agent identity, or plaintext when explicitly asked for. */
  readonly credentials: ServerCredentials | undefined;
  /** Server-wide middlewares (tracing when configured), for ServerDeps.middlewares. */
  readonly middlewares: readonly ServerMiddleware[];
  /** Counts every RPC by method and code (Prometheus), for ServerDeps.observeRpc; undefined without /metrics. */
  readonly observeRpc: RpcObserver | undefined;
  /** Counts events and watchers, for ServerDeps.eventsObserver; undefined without /metrics. */
  readonly eventsObserver: EventsObserver | undefined;
  /** Counts webhook deliveries, for ServerDeps.webhookObserver; undefined without /metrics. */
  readonly webhookObserver: WebhookObserver | undefined;
  /** Sets the audit-findings gauge from each audit's summary, for ServerDeps.onAuditFindings. */
  readonly onAuditFindings: ((countsByKind: Readonly<Record<string, number>>) => void) | undefined;
  /**
   * Bearer-token middleware for ControlService and FleetService only (`server.with(m).add(…)`); undefined without
   * client tokens. Its token table (PRFLEET_TOKENS=database) and key registry check wait for {@link useStore}.
   */
  readonly controlMiddleware: ServerMiddleware<AuthCallContextExt> | undefined;
  /** The client tokens (for ControlService's token RPCs); undefined without client tokens. */
  readonly tokens: TokenStore | undefined;
  /** After createPrfleetServer, before listen: `extras.useStore(server.store)` (start() does it too, once). */
  useStore(store: Store | undefined): void;
  /** The Prometheus metrics (registry, gauges, counters); undefined when no /metrics listener is configured. */
  readonly metrics: ServerMetrics | undefined;
  /** The shared inventory (undefined without Redis). */
  readonly inventory: RedisInventory | undefined;
  /** After listen: waits for Redis, starts /metrics and the settling of dead instances' pending PROUTs. */
  start(server: ServerHandle): Promise<void>;
  /** After drain and shutdown: closes the router's and inventory's Redis connections, /metrics and tracing. */
  close(): Promise<void>;
}

/**
 * Builds the extras (see {@link ServerExtras}). Throws when Redis is configured but unreachable only at
 * start(); configuration errors throw here. Prometheus (prom-client) and Redis (ioredis) are loaded only when
 * configured: a server without them does not pay for them at start.
 */
export async function createServerExtras(
  config: ScaleOutConfig,
  deps: ServerExtrasDeps,
): Promise<ServerExtras> {
  const [prometheus, redis] = await Promise.all([
    config.metrics === undefined ? undefined : import('./metrics.js'),
    config.redis.redisUrl === undefined
      ? undefined
      : Promise.all([import('./redis-router/index.js'), import('./shared-inventory/index.js')]),
  ]);
  // Recorded only when something can scrape them: each RPC and command costs the Prometheus client a few µs.
  const prom =
    prometheus === undefined ? undefined : { lib: prometheus, metrics: prometheus.createMetrics() };
  const metrics = prom?.metrics;
  const security = buildClientSecurity(config.security, deps.log);
  const setup: RouterSetup = { config, deps, prom, redis, revoked: security.revoked };
  const running: Running = {};
  return {
    config,
    createRouter(agents) {
      if (running.routing !== undefined)
        throw new Error('createServerExtras: createRouter called twice (one server per extras)');
      running.routing = buildScaleOutRouter(agents, setup);
      return running.routing.router;
    },
    credentials: security.credentials,
    middlewares: deps.tracing === undefined ? [] : [deps.tracing.middleware],
    tokens: security.auth?.tokens,
    observeRpc: prom === undefined ? undefined : prom.lib.rpcObserver(prom.metrics),
    eventsObserver: prom === undefined ? undefined : prom.lib.eventsObserver(prom.metrics),
    webhookObserver: prom === undefined ? undefined : prom.lib.webhookObserver(prom.metrics),
    onAuditFindings:
      metrics === undefined ? undefined : (counts) => metrics.setAuditFindings(counts),
    controlMiddleware: security.controlMiddleware,
    useStore: (store) => security.auth?.bind(store),
    metrics,
    get inventory() {
      return running.routing?.inventory;
    },
    start: (server) => startExtras(server, setup, security, running),
    close: () => closeExtras(setup, security, running),
  };
}

/** What createRouter and start() bring up, for close() to stop. */
interface Running {
  routing?: ScaleOutRouting | undefined;
  metricsServer?: MetricsServer | undefined;
  reaper?: NodeJS.Timeout | undefined;
  eventsWake?: { close(): Promise<void> } | undefined;
}

/** ServerExtras.start. */
async function startExtras(
  server: ServerHandle,
  { config, deps, prom }: RouterSetup,
  security: ClientSecurity,
  running: Running,
): Promise<void> {
  const { log, instanceId } = deps;
  security.auth?.bind(server.store);
  const redisRouter = running.routing?.router as unknown as { ready?: Promise<void> } | undefined;
  await redisRouter?.ready;
  const inventory = running.routing?.inventory;
  await inventory?.ready;
  if (config.metrics !== undefined && prom !== undefined) {
    running.metricsServer = await prom.lib.startMetricsServer(
      prom.metrics.registry,
      config.metrics,
    );
    log.info({ port: running.metricsServer.port, host: config.metrics.host }, 'metrics listening');
  }
  if (config.redis.redisUrl !== undefined && server.events !== undefined) {
    const { startRedisWake } = await import('./events/redis-wake.js');
    const wake = startRedisWake({
      redisUrl: config.redis.redisUrl,
      keyPrefix: config.redis.keyPrefix,
      instanceId,
      events: server.events,
      log,
    });
    running.eventsWake = wake;
    await wake.ready;
  }
  if (inventory !== undefined && server.store !== undefined) {
    running.reaper = startDeadInstanceReaper(server.store, inventory, {
      instanceId,
      log,
      instanceTtlMs: config.redis.instanceTtlMs,
    });
  }
}

/** ServerExtras.close. */
async function closeExtras(
  { deps, redis }: RouterSetup,
  security: ClientSecurity,
  running: Running,
): Promise<void> {
  clearInterval(running.reaper);
  running.routing?.stopObserving?.();
  await running.eventsWake?.close();
  if (running.routing !== undefined && redis !== undefined)
    await redis[0].closeRouter(running.routing.router);
  await running.routing?.inventory?.close();
  await running.metricsServer?.close();
  await deps.tracing?.shutdown();
  security.revoked?.close();
}
