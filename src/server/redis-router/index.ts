import type { Logger } from 'pino';
import { z } from 'zod';
import type { AgentRegistry } from '../agent-registry.js';
import { createInProcessRouter, type CommandRouter } from '../router.js';
import { createRedisRouter, type RedisRouter, type RedisRouterOptions } from './redis-router.js';

export * from './redis-router.js';
export * from './protocol.js';

const RedisEnv = z.object({
  PRFLEET_REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'expected redis://… or rediss://…')
    .optional(),
  PRFLEET_REDIS_PREFIX: z.string().min(1).default('prfleet:'),
  PRFLEET_PRESENCE_TTL_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  PRFLEET_INSTANCE_TTL_MS: z.coerce.number().int().min(100).max(3_600_000).default(10_000),
});

/** Multi-instance routing settings (env PRFLEET_REDIS_*); `redisUrl` absent = single instance. */
export interface RedisRouterConfig {
  /** Redis URL; absent = the in-process router. */
  readonly redisUrl?: string;
  /** Key and channel prefix. @default 'prfleet:' */
  readonly keyPrefix: string;
  /** Agent presence TTL. @default 30000 */
  readonly presenceTtlMs: number;
  /** Instance liveness TTL. @default 10000 */
  readonly instanceTtlMs: number;
}

/** Parses PRFLEET_REDIS_URL, PRFLEET_REDIS_PREFIX, PRFLEET_PRESENCE_TTL_MS, PRFLEET_INSTANCE_TTL_MS; errors name the variable. */
export function loadRedisRouterConfig(env: NodeJS.ProcessEnv = process.env): RedisRouterConfig {
  const parsed = RedisEnv.safeParse(env);
  if (!parsed.success)
    throw new Error(`invalid redis router environment\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  return {
    ...(e.PRFLEET_REDIS_URL === undefined ? {} : { redisUrl: e.PRFLEET_REDIS_URL }),
    keyPrefix: e.PRFLEET_REDIS_PREFIX,
    presenceTtlMs: e.PRFLEET_PRESENCE_TTL_MS,
    instanceTtlMs: e.PRFLEET_INSTANCE_TTL_MS,
  };
}

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
