import type { Logger } from 'pino';
import type { AgentRegistry } from '../agents/index.js';
import { createInProcessRouter, type CommandRouter } from '../router.js';
import type { RedisRouterConfig } from './config.js';
import { createRedisRouter, type RedisRouter, type RedisRouterOptions } from './redis-router.js';

export * from './redis-router.js';
export * from './protocol.js';
export * from './config.js';

/** What {@link redisRouterFactory} needs besides the Redis settings. */
export interface RedisRouterFactoryDeps {
  /** Logger. */
  readonly log: Logger;
  /** This instance's id (config.instanceId). */
  readonly instanceId: string;
  /** config.resultSlackMs. */
  readonly resultSlackMs: number;
  /** Test knobs passed through (sync interval, relay margin). @default {} */
  readonly tuning?: Pick<RedisRouterOptions, 'syncIntervalMs' | 'relayMarginMs'>;
}

/**
 * The value for `createPrfleetServer({ createRouter })`: undefined without a Redis URL (the server keeps its
 * in-process router, unchanged), else a factory building the Redis router over the in-process one. A stale
 * local session of an agent that re-attached elsewhere is ended at once.
 */
export function redisRouterFactory(
  config: RedisRouterConfig,
  deps: RedisRouterFactoryDeps,
): ((registry: AgentRegistry) => CommandRouter) | undefined {
  const { redisUrl } = config;
  if (redisUrl === undefined) return undefined;
  return (registry) =>
    createRedisRouter({
      redisUrl,
      instanceId: deps.instanceId,
      keyPrefix: config.keyPrefix,
      presenceTtlMs: config.presenceTtlMs,
      instanceTtlMs: config.instanceTtlMs,
      resultSlackMs: deps.resultSlackMs,
      log: deps.log.child({ component: 'redis-router' }),
      sessions: registry,
      local: createInProcessRouter({
        registry,
        log: deps.log,
        instanceId: deps.instanceId,
        resultSlackMs: deps.resultSlackMs,
      }),
      onEvicted: (agentId, by) => {
        const session = registry.session(agentId);
        if (session !== undefined)
          registry.close(session, `agent re-attached to server instance ${by}`);
      },
      ...deps.tuning,
    });
}

/** True when `router` is a Redis router (it needs `close()` at shutdown). */
export function isRedisRouter(router: CommandRouter): router is RedisRouter {
  return 'close' in router && 'ownerOf' in router;
}

/** Closes the router if it holds Redis connections (after drain); a no-op for the in-process router. */
export async function closeRouter(router: CommandRouter): Promise<void> {
  if (isRedisRouter(router)) await router.close();
}
