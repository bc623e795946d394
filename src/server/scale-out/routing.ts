import type { AgentRegistry } from '../agents/index.js';
import type { CertificateNames, RevokedCertificates } from '../auth/index.js';
import type * as MetricsModule from '../metrics.js';
import type { ServerMetrics } from '../metrics.js';
import type * as RedisRouterModule from '../redis-router/index.js';
import type * as SharedInventoryModule from '../shared-inventory/index.js';
import { createInProcessRouter, type CommandRouter } from '../router.js';
import type { ScaleOutConfig, ServerExtrasDeps } from '../scale-out.js';
import type { RedisInventory } from '../shared-inventory/index.js';
import { endRevokedAgentStreams } from './client-security.js';

/**
 * prom-client and the metrics over it, loaded only when /metrics is configured (the modules here are types
 * only: createServerExtras imports them dynamically).
 */
export interface Prometheus {
  readonly lib: typeof MetricsModule;
  readonly metrics: ServerMetrics;
}

/** The Redis router and shared inventory modules, loaded only when PRFLEET_REDIS_URL is set. */
export type RedisModules = readonly [typeof RedisRouterModule, typeof SharedInventoryModule];

/** What the scale-out router is built from. */
export interface RouterSetup {
  readonly config: ScaleOutConfig;
  readonly deps: ServerExtrasDeps;
  readonly prom: Prometheus | undefined;
  readonly redis: RedisModules | undefined;
  readonly revoked: RevokedCertificates | undefined;
}

/** The router createServerExtras hands the server, and what runs beside it until close(). */
export interface ScaleOutRouting {
  /** Redis when PRFLEET_REDIS_URL is set, else in-process; counted by the metrics when they are on. */
  readonly router: CommandRouter;
  /** The shared inventory (undefined without Redis). */
  readonly inventory: RedisInventory | undefined;
  /** Stops the agent gauges' polling; undefined without metrics. */
  readonly stopObserving: (() => void) | undefined;
}

/**
 * Builds the router and configures the registry for it (shared inventory, stream age, agent certificates);
 * agents whose certificate gets revoked lose their stream.
 */
export function buildScaleOutRouter(agents: AgentRegistry, setup: RouterSetup): ScaleOutRouting {
  const { config, deps, prom, redis, revoked } = setup;
  const inner = innerRouter(agents, setup);
  const inventory =
    config.redis.redisUrl !== undefined && redis !== undefined
      ? createInventory(agents, inner, setup, config.redis.redisUrl, redis)
      : undefined;
  agents.configure({
    remote: inventory,
    maxStreamAgeMs: config.maxStreamAgeMs,
    rotationGraceMs: config.rotationGraceMs,
    requireAgentCertificate: config.security?.requireAgentCertificate ?? false,
    ...(revoked === undefined
      ? {}
      : { isCertificateRevoked: (names: CertificateNames) => revoked.has(names) }),
  });
  const stopObserving =
    prom === undefined ? undefined : prom.lib.observeAgents(prom.metrics, agents);
  if (revoked !== undefined) endRevokedAgentStreams(agents, revoked, deps.log);
  const router = prom === undefined ? inner : prom.lib.instrumentRouter(inner, prom.metrics);
  return { router, inventory, stopObserving };
}

/** The Redis router when it is loaded, else the in-process one. */
function innerRouter(agents: AgentRegistry, { config, deps, redis }: RouterSetup): CommandRouter {
  const { log, instanceId, tuning } = deps;
  const redisFactory = redis?.[0].redisRouterFactory(config.redis, {
    log,
    instanceId,
    resultSlackMs: deps.resultSlackMs,
    tuning: {
      ...(tuning?.syncIntervalMs === undefined ? {} : { syncIntervalMs: tuning.syncIntervalMs }),
      ...(tuning?.relayMarginMs === undefined ? {} : { relayMarginMs: tuning.relayMarginMs }),
    },
  });
  return (
    redisFactory?.(agents) ??
    createInProcessRouter({
      registry: agents,
      log,
      instanceId,
      resultSlackMs: deps.resultSlackMs,
      rotationWaitMs: config.rotationWaitMs,
    })
  );
}

/** The shared inventory: other instances' agents, and this instance's published for them. */
function createInventory(
  agents: AgentRegistry,
  router: CommandRouter,
  { config, deps }: RouterSetup,
  redisUrl: string,
  redis: RedisModules,
): RedisInventory {
  const presence = router as unknown as { syncPresence(): Promise<void> };
  return redis[1].createRedisInventory({
    redisUrl,
    keyPrefix: config.redis.keyPrefix,
    instanceId: deps.instanceId,
    registry: agents,
    log: deps.log.child({ component: 'shared-inventory' }),
    instanceTtlMs: config.redis.instanceTtlMs,
    resyncMs: config.inventoryResyncMs,
    ...(deps.tuning?.heartbeatFlushMs === undefined
      ? {}
      : { heartbeatFlushMs: deps.tuning.heartbeatFlushMs }),
    // Presence first: an instance that sees the agent here in the inventory can then route to it.
    beforePublishOpen: () => presence.syncPresence(),
  });
}
