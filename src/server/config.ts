import { randomUUID } from 'node:crypto';
import { z } from 'zod';

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const ServerEnv = z.object({
  PORT: z.coerce.number().int().min(0).max(65_535).default(50_051),
  PRFLEET_HOST: z.string().min(1).default('0.0.0.0'),
  PRFLEET_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  PRFLEET_INSTANCE_ID: z.string().min(1).optional(),
  PRFLEET_HEARTBEAT_MS: z.coerce.number().int().min(50).max(3_600_000).default(10_000),
  PRFLEET_MISSED_HEARTBEATS: z.coerce.number().int().min(1).max(100).default(3),
  PRFLEET_AGENT_QUEUE_CAPACITY: z.coerce.number().int().min(1).max(100_000).default(256),
  PRFLEET_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(1).max(3_600_000).default(60_000),
  PRFLEET_DEADLINE_MARGIN_MS: z.coerce.number().int().min(0).max(60_000).default(200),
  PRFLEET_RESULT_SLACK_MS: z.coerce.number().int().min(0).max(600_000).default(5_000),
  PRFLEET_DRAIN_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(5_000),
  PRFLEET_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(8_000),
  PRFLEET_SESSION_CONCURRENCY: z.coerce.number().int().min(1).max(10_000).default(64),
  PRFLEET_REFLECTION: booleanFlag.default(true),
  PRFLEET_PROTOSET: z.string().min(1).optional(),
});

/** Typed server configuration (what `loadConfig` returns and `createPrfleetServer` takes). */
export interface ServerConfig {
  /** Listen port; 0 picks a free one. @default 50051 (env PORT) */
  readonly port: number;
  /** Listen host. @default '0.0.0.0' */
  readonly host: string;
  /** pino level. @default 'info' */
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Id of this server instance (Welcome.server_instance). @default random UUID */
  readonly instanceId: string;
  /** Heartbeat interval told to agents. @default 10000 */
  readonly heartbeatMs: number;
  /** An agent silent for more than this many heartbeat intervals is dropped. @default 3 */
  readonly missedHeartbeats: number;
  /** Commands queued or in flight per agent before RESOURCE_EXHAUSTED {AGENT_BUSY}. @default 256 */
  readonly agentQueueCapacity: number;
  /** Device command timeout when the request gives none (sg3_utils DEF_PT_TIMEOUT). @default 60000 */
  readonly commandTimeoutMs: number;
  /** Subtracted from the caller's remaining deadline so the result gets back in time. @default 200 */
  readonly deadlineMarginMs: number;
  /** Extra wait for an agent's answer after the device timeout before the result is UNKNOWN. @default 5000 */
  readonly resultSlackMs: number;
  /** On SIGTERM, how long to wait for in-flight results before ending agent streams. @default 5000 */
  readonly drainGraceMs: number;
  /** After drain, how long graceful gRPC shutdown may take before it is forced. @default 8000 */
  readonly shutdownTimeoutMs: number;
  /** Commands of one CommandSession in flight at once (more are read when some finish). @default 64 */
  readonly sessionConcurrency: number;
  /** Serve grpc.reflection.v1. @default true */
  readonly reflection: boolean;
  /** Descriptor set for reflection. @default src/gen/protoset.binpb found next to the code */
  readonly protosetPath?: string;
}

/** Every default, for tests that override a few fields: `{ ...defaultServerConfig(), heartbeatMs: 100 }`. */
export function defaultServerConfig(): ServerConfig {
  return loadConfig({});
}

/**
 * Parses PRFLEET_* (and PORT) from `env` into a ServerConfig. Throws an Error naming each bad variable
 * (zod's prettified message).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const parsed = ServerEnv.safeParse(env);
  if (!parsed.success) throw new Error(`invalid server environment\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.PRFLEET_HOST,
    logLevel: e.PRFLEET_LOG_LEVEL,
    instanceId: e.PRFLEET_INSTANCE_ID ?? randomUUID(),
    heartbeatMs: e.PRFLEET_HEARTBEAT_MS,
    missedHeartbeats: e.PRFLEET_MISSED_HEARTBEATS,
    agentQueueCapacity: e.PRFLEET_AGENT_QUEUE_CAPACITY,
    commandTimeoutMs: e.PRFLEET_COMMAND_TIMEOUT_MS,
    deadlineMarginMs: e.PRFLEET_DEADLINE_MARGIN_MS,
    resultSlackMs: e.PRFLEET_RESULT_SLACK_MS,
    drainGraceMs: e.PRFLEET_DRAIN_GRACE_MS,
    shutdownTimeoutMs: e.PRFLEET_SHUTDOWN_TIMEOUT_MS,
    sessionConcurrency: e.PRFLEET_SESSION_CONCURRENCY,
    reflection: e.PRFLEET_REFLECTION,
    ...(e.PRFLEET_PROTOSET === undefined ? {} : { protosetPath: e.PRFLEET_PROTOSET }),
  };
}
