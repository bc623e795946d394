import { randomUUID } from 'node:crypto';
import * as z from '../common/zod-mini.js';
import { booleanFlag, envInt, nonEmpty } from './env-schema.js';
import type { ReconcilerSettings } from './fleet/registration-reconciler.js';
import { takeoverRulesFromEnv, type TakeoverRules } from './fleet/takeover-rules.js';
import { DEFAULT_DATA_DIR, storeOptionsFromEnv, type StoreOptions } from './store/index.js';
import type { WebhookSettings } from './webhooks/dispatcher.js';

const STORE_KINDS: readonly string[] = ['postgres', 'pglite', 'memory'];

const ServerEnv = z.object({
  PORT: envInt(0, 65_535, 50_051),
  PRFLEET_HOST: z._default(nonEmpty(), '0.0.0.0'),
  PRFLEET_LOG_LEVEL: z._default(
    z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']),
    'info',
  ),
  PRFLEET_INSTANCE_ID: z.optional(nonEmpty()),
  PRFLEET_HEARTBEAT_MS: envInt(50, 3_600_000, 10_000),
  PRFLEET_MISSED_HEARTBEATS: envInt(1, 100, 3),
  PRFLEET_AGENT_QUEUE_CAPACITY: envInt(1, 100_000, 256),
  PRFLEET_COMMAND_TIMEOUT_MS: envInt(1, 3_600_000, 60_000),
  PRFLEET_DEADLINE_MARGIN_MS: envInt(0, 60_000, 200),
  PRFLEET_RESULT_SLACK_MS: envInt(0, 600_000, 5_000),
  PRFLEET_DRAIN_GRACE_MS: envInt(0, 600_000, 5_000),
  PRFLEET_SHUTDOWN_TIMEOUT_MS: envInt(0, 600_000, 8_000),
  PRFLEET_SESSION_CONCURRENCY: envInt(1, 10_000, 64),
  PRFLEET_PRINCIPAL_MAX_SESSIONS: envInt(0, 1_000_000, 32),
  PRFLEET_PRINCIPAL_MAX_COMMANDS: envInt(0, 1_000_000, 128),
  PRFLEET_PRINCIPAL_MAX_WATCHES: envInt(0, 1_000_000, 64),
  PRFLEET_REFLECTION: z._default(booleanFlag, true),
  PRFLEET_PROTOSET: z.optional(nonEmpty()),
  PRFLEET_MAX_AGENT_PATHS: envInt(1, 1_000_000, 4096),
  PRFLEET_LONG_POLL_WAIT_MS: envInt(100, 300_000, 20_000),
  PRFLEET_CONNECTION_IDLE_MS: envInt(100, 86_400_000, 300_000),
  PRFLEET_AGENT_POLICY: z.optional(nonEmpty()),
  PRFLEET_EVENTS_RETAIN: envInt(100, 100_000_000, 100_000),
  PRFLEET_EVENTS_RETAIN_MS: envInt(60_000, 31_536_000_000, 604_800_000),
  PRFLEET_EVENTS_MAX_LAG: envInt(1, 10_000_000, 10_000),
  PRFLEET_EVENTS_POLL_MS: envInt(10, 60_000, 250),
  PRFLEET_OBSERVE_INTERVAL_MS: envInt(0, 86_400_000, 300_000),
  PRFLEET_OBSERVE_CONCURRENCY: envInt(1, 10_000, 8),
  PRFLEET_RECONCILER: z._default(z.enum(['off', 'dry-run', 'on']), 'off'),
  PRFLEET_RECONCILER_COOLDOWN_MS: envInt(0, 86_400_000, 60_000),
  PRFLEET_RECONCILER_MAX_PER_MINUTE: envInt(1, 1_000_000, 120),
  // Well under the 4 MiB a gRPC client accepts by default (a page always holds one item).
  PRFLEET_LIST_PAGE_BYTES: envInt(4096, 3_145_728, 1_048_576),
  PRFLEET_WEBHOOKS_ALLOW_HTTP: z._default(booleanFlag, false),
  PRFLEET_WEBHOOKS_TIMEOUT_MS: envInt(100, 300_000, 10_000),
  PRFLEET_WEBHOOKS_MAX_ATTEMPTS: envInt(1, 1_000, 10),
  PRFLEET_WEBHOOKS_MAX_AGE_MS: envInt(1_000, 31_536_000_000, 86_400_000),
  PRFLEET_WEBHOOKS_BACKOFF_MS: envInt(10, 3_600_000, 1_000),
  PRFLEET_WEBHOOKS_BACKOFF_MAX_MS: envInt(10, 86_400_000, 300_000),
  PRFLEET_WEBHOOKS_CONCURRENCY: envInt(1, 10_000, 64),
  PRFLEET_WEBHOOKS_LEASE_MS: envInt(1_000, 3_600_000, 30_000),
  // Empty counts as unset, as for the store's own variables (storeOptionsFromEnv).
  PRFLEET_STORE: z.pipe(
    z.transform((v) => (v === '' ? undefined : v)),
    z.optional(z.enum(['postgres', 'pglite', 'memory'])),
  ),
});

/**
 * Where the server keeps its durable state. `memory`: an in-process idempotency journal and no PROUT history
 * (unit tests, benchmarks; lost on restart). `pglite`: embedded PostgreSQL in a data directory (one server).
 * `postgres`: a PostgreSQL server (several server instances may share it).
 */
export type StoreConfig =
  | { readonly kind: 'memory' }
  | { readonly kind: 'pglite'; readonly dataDir: string; readonly schema?: string }
  | { readonly kind: 'postgres'; readonly databaseUrl: string; readonly schema?: string };

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
  /**
   * Fair share: open CommandSessions, commands in flight (unary and in sessions) and open Watch streams per
   * principal (token name, certificate identity, else client IP); over it, RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA}.
   * 0 = unlimited. @default { maxSessions: 32, maxCommands: 128, maxWatches: 64 }
   */
  readonly principalLimits: {
    readonly maxSessions: number;
    readonly maxCommands: number;
    readonly maxWatches?: number;
  };
  /** Serve grpc.reflection.v1 and v1alpha. @default true */
  readonly reflection: boolean;
  /** Descriptor set for reflection. @default src/gen/protoset.binpb found next to the code */
  readonly protosetPath?: string;
  /** Paths one agent may report; a larger inventory is refused whole (logged). @default 4096 */
  readonly maxAgentPaths: number;
  /**
   * Longest one poll of the HTTP/1.1 long-poll agent link waits for messages (keep it under the proxies' read
   * timeout, nginx 60 s). @default 20000
   */
  readonly longPollWaitMs?: number;
  /**
   * An HTTP/2 connection with no call open for this long is closed (GOAWAY; clients reconnect when they next
   * call), and a plaintext connection that has not shown its protocol by then (or 10 s) too: held-open idle
   * connections cannot exhaust the server's file descriptors. @default 300000
   */
  readonly connectionIdleMs?: number;
  /**
   * PRFLEET_AGENT_POLICY: YAML/JSON file binding agents to the sites, LU ids and loaders they may report
   * (inventory-screen.ts); paths outside it are refused and logged. @default none (no restriction)
   */
  readonly agentPolicyFile?: string;
  /**
   * Byte budget of one page of ListAgents, ListDevices, ListHistory and of one batch of Audit reports: a page
   * stops before it (with a next_page_token). @default 1048576 (env PRFLEET_LIST_PAGE_BYTES, 4096–3145728)
   */
  readonly listPageBytes: number;
  /**
   * Durable state (env PRFLEET_STORE, DATABASE_URL, PRFLEET_DATA_DIR, PRFLEET_DB_SCHEMA). @default postgres
   * when DATABASE_URL is set, else pglite in `.prfleet/data`; defaultServerConfig() uses memory.
   */
  readonly store: StoreConfig;
  /** The fleet event log and the periodic observation (docs/events.md). */
  readonly events: EventsConfig;
  /**
   * What proves a Takeover victim failed or greedy, and the preempt policy (PRFLEET_TAKEOVER_RULES,
   * PRFLEET_TAKEOVER_FAILED_AFTER_MS, PRFLEET_LIVENESS_URL, PRFLEET_LIVENESS_TIMEOUT_MS; docs/fencing.md).
   * @default DEFAULT_TAKEOVER_RULES
   */
  readonly takeoverRules?: TakeoverRules;
  /**
   * The registration reconciler (PRFLEET_RECONCILER off | dry-run | on, PRFLEET_RECONCILER_COOLDOWN_MS,
   * PRFLEET_RECONCILER_MAX_PER_MINUTE; docs/fleet.md). Needs the durable store. @default off
   */
  readonly reconciler?: ReconcilerSettings;
  /** Webhook delivery (PRFLEET_WEBHOOKS_*, docs/events.md). */
  readonly webhooks: WebhookSettings;
}

/** Event log retention and watcher bounds, and the periodic light observation of every LU. */
export interface EventsConfig {
  /** PRFLEET_EVENTS_RETAIN: events kept at most. @default 100000 */
  readonly retainEvents: number;
  /** PRFLEET_EVENTS_RETAIN_MS: events kept at most this long. @default 7 days */
  readonly retainMs: number;
  /** PRFLEET_EVENTS_MAX_LAG: a watcher further behind than this many events is ended. @default 10000 */
  readonly maxLag: number;
  /** PRFLEET_EVENTS_POLL_MS: how often watchers look for events other instances recorded. @default 250 */
  readonly pollMs: number;
  /**
   * PRFLEET_OBSERVE_INTERVAL_MS: one round of light reads over every LU takes this long; 0 = off. @default
   * 300000 (defaultServerConfig: 0, so tests send no reads they did not ask for)
   */
  readonly observeIntervalMs: number;
  /** PRFLEET_OBSERVE_CONCURRENCY: LUs read at once by the observation. @default 8 */
  readonly observeConcurrency: number;
}

/**
 * Every default, for tests that override a few fields: `{ ...defaultServerConfig(), heartbeatMs: 100 }`. The
 * exceptions: the store is memory, so a test opens a database (seconds with PGlite) only when it asks for one,
 * and the periodic observation is off, so no test's devices get reads it did not send.
 */
export function defaultServerConfig(): ServerConfig {
  const config = loadConfig({});
  return {
    ...config,
    store: { kind: 'memory' },
    events: { ...config.events, observeIntervalMs: 0 },
  };
}

/**
 * The store from the environment: PRFLEET_STORE picks the kind explicitly; without it, DATABASE_URL means
 * postgres and otherwise the embedded pglite in PRFLEET_DATA_DIR (default `.prfleet/data`, relative to the
 * working directory). PRFLEET_STORE=postgres without DATABASE_URL is an error.
 */
export function storeConfigFromEnv(env: NodeJS.ProcessEnv = process.env): StoreConfig {
  const kind = env['PRFLEET_STORE'] === '' ? undefined : env['PRFLEET_STORE'];
  if (kind !== undefined && !STORE_KINDS.includes(kind)) {
    throw new Error(
      `invalid server environment\n✖ PRFLEET_STORE=${kind}: must be one of ${STORE_KINDS.join(', ')}`,
    );
  }
  if (kind === 'memory') return { kind: 'memory' };
  const options = storeOptionsFromEnv(env);
  const schema = options.schema === undefined ? {} : { schema: options.schema };
  if (kind === 'postgres' || (kind === undefined && options.databaseUrl !== undefined)) {
    if (options.databaseUrl === undefined) {
      throw new Error(
        'invalid server environment\n✖ PRFLEET_STORE=postgres needs DATABASE_URL (postgres://user@host:5432/db)',
      );
    }
    return { kind: 'postgres', databaseUrl: options.databaseUrl, ...schema };
  }
  return { kind: 'pglite', dataDir: options.dataDir ?? DEFAULT_DATA_DIR, ...schema };
}

/** The StoreOptions for openStore() of a durable StoreConfig. */
export function storeOptionsOf(store: Exclude<StoreConfig, { kind: 'memory' }>): StoreOptions {
  const schema = store.schema === undefined ? {} : { schema: store.schema };
  return store.kind === 'postgres'
    ? { databaseUrl: store.databaseUrl, ...schema }
    : { dataDir: store.dataDir, ...schema };
}

/** Where the store is, for logs: the PostgreSQL URL without credentials, a directory, or 'memory'. */
export function describeStore(store: StoreConfig): string {
  switch (store.kind) {
    case 'memory':
      return 'memory (no durable journal, no history)';
    case 'pglite':
      return `pglite ${store.dataDir}${store.schema === undefined ? '' : ` schema ${store.schema}`}`;
    case 'postgres': {
      let where: string;
      try {
        const url = new URL(store.databaseUrl);
        where = `${url.protocol}//${url.host}${url.pathname}`;
      } catch {
        where = 'postgres (unparsable DATABASE_URL)';
      }
      return `postgres ${where}${store.schema === undefined ? '' : ` schema ${store.schema}`}`;
    }
  }
}

/** The config as it may be logged: the store described, never the DATABASE_URL with its password. */
export function loggableConfig(config: ServerConfig): Record<string, unknown> {
  return { ...config, store: describeStore(config.store) };
}

/**
 * Parses PRFLEET_* (and PORT) from `env` into a ServerConfig. Throws an Error naming each bad variable
 * (zod's prettified message).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const parsed = ServerEnv.safeParse(env);
  if (!parsed.success)
    throw new Error(`invalid server environment\n${z.prettifyError(parsed.error)}`);
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
    principalLimits: {
      maxSessions: e.PRFLEET_PRINCIPAL_MAX_SESSIONS,
      maxCommands: e.PRFLEET_PRINCIPAL_MAX_COMMANDS,
      maxWatches: e.PRFLEET_PRINCIPAL_MAX_WATCHES,
    },
    reflection: e.PRFLEET_REFLECTION,
    ...(e.PRFLEET_PROTOSET === undefined ? {} : { protosetPath: e.PRFLEET_PROTOSET }),
    maxAgentPaths: e.PRFLEET_MAX_AGENT_PATHS,
    longPollWaitMs: e.PRFLEET_LONG_POLL_WAIT_MS,
    connectionIdleMs: e.PRFLEET_CONNECTION_IDLE_MS,
    ...(e.PRFLEET_AGENT_POLICY === undefined ? {} : { agentPolicyFile: e.PRFLEET_AGENT_POLICY }),
    listPageBytes: e.PRFLEET_LIST_PAGE_BYTES,
    store: storeConfigFromEnv(env),
    events: {
      retainEvents: e.PRFLEET_EVENTS_RETAIN,
      retainMs: e.PRFLEET_EVENTS_RETAIN_MS,
      maxLag: e.PRFLEET_EVENTS_MAX_LAG,
      pollMs: e.PRFLEET_EVENTS_POLL_MS,
      observeIntervalMs: e.PRFLEET_OBSERVE_INTERVAL_MS,
      observeConcurrency: e.PRFLEET_OBSERVE_CONCURRENCY,
    },
    takeoverRules: takeoverRulesFromEnv(env),
    reconciler: {
      mode: e.PRFLEET_RECONCILER,
      cooldownMs: e.PRFLEET_RECONCILER_COOLDOWN_MS,
      maxPerMinute: e.PRFLEET_RECONCILER_MAX_PER_MINUTE,
    },
    webhooks: {
      allowHttp: e.PRFLEET_WEBHOOKS_ALLOW_HTTP,
      timeoutMs: e.PRFLEET_WEBHOOKS_TIMEOUT_MS,
      maxAttempts: e.PRFLEET_WEBHOOKS_MAX_ATTEMPTS,
      maxAgeMs: e.PRFLEET_WEBHOOKS_MAX_AGE_MS,
      backoffMs: e.PRFLEET_WEBHOOKS_BACKOFF_MS,
      backoffMaxMs: e.PRFLEET_WEBHOOKS_BACKOFF_MAX_MS,
      concurrency: e.PRFLEET_WEBHOOKS_CONCURRENCY,
      leaseMs: e.PRFLEET_WEBHOOKS_LEASE_MS,
      scanMs: 2_000,
    },
  };
}
