/** The Redis routing settings, apart from index.ts so reading them does not load ioredis. */
import * as z from '../../common/zod-mini.js';
import { envInt, nonEmpty } from '../env-schema.js';

const RedisEnv = z.object({
  PRFLEET_REDIS_URL: z.optional(
    z.string().check(z.regex(/^rediss?:\/\//, 'expected redis://… or rediss://…')),
  ),
  PRFLEET_REDIS_PREFIX: z._default(nonEmpty(), 'prfleet:'),
  PRFLEET_PRESENCE_TTL_MS: envInt(100, 3_600_000, 30_000),
  PRFLEET_INSTANCE_TTL_MS: envInt(100, 3_600_000, 10_000),
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
