import { hostname } from 'node:os';
import * as z from '../src/common/zod-mini.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const text = () => z.string().check(z.minLength(1));
const integer = (min: number, max: number, fallback: number) =>
  z._default(z.int().check(z.minimum(min), z.maximum(max)), fallback);

/** The agent's configuration: flags override PRFLEET_* variables (agent/cli-options.ts), zod checks both. */
export const AgentConfigSchema = z
  .object({
    // One address, or several comma-separated: the agent tries them in turn (instances without a load balancer).
    server: z
      .string()
      .check(
        z.regex(
          /^(\[[0-9a-fA-F:]+\]|[^:\s/,]+):\d{1,5}(,(\[[0-9a-fA-F:]+\]|[^:\s/,]+):\d{1,5})*$/,
          'expected host:port (or host:port,host:port,…)',
        ),
      ),
    agentId: z._default(
      z
        .string()
        .check(
          z.regex(
            /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
            'letters, digits, ".", "_" or "-" (at most 128)',
          ),
        ),
      () => hostname(),
    ),
    site: z._default(z.string(), ''),
    labels: z._default(z.record(text(), z.string()), {}),
    transport: z._default(z.enum(['sgio', 'emulated']), 'sgio'),
    fabric: z.optional(text()),
    host: z.optional(text()),
    allow: z._default(z.array(text()), []),
    includeDisks: z._default(z.boolean(), false),
    record: z.optional(text()),
    recordMaskKeys: z._default(z.boolean(), false),
    heartbeatMs: integer(100, 3_600_000, 15_000),
    rescanMs: integer(0, 86_400_000, 0),
    plaintext: z._default(z.boolean(), false),
    tlsCa: z.optional(text()),
    tlsCert: z.optional(text()),
    tlsKey: z.optional(text()),
    pathConcurrency: integer(1, 64, 4),
    latencyMs: integer(0, 600_000, 0),
    drainMs: integer(0, 600_000, 10_000),
    link: z._default(z.enum(['stream', 'long-poll']), 'stream'),
    linkFallbackAfter: integer(0, 1_000, 3),
    longPollWaitMs: integer(100, 300_000, 20_000),
    logLevel: z._default(z.enum(LOG_LEVELS), 'info'),
  })
  .check(
    z.superRefine((c, ctx) => {
      if (c.transport === 'emulated' && c.fabric === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['fabric'],
          message: 'the emulated transport needs a fabric file',
        });
      }
      if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: ['tlsCert'],
          message: 'a client certificate needs its key (and vice versa)',
        });
      }
      if (c.plaintext && (c.tlsCa || c.tlsCert)) {
        ctx.addIssue({
          code: 'custom',
          path: ['plaintext'],
          message: 'plaintext excludes TLS files',
        });
      }
    }),
  );

/** Parsed agent configuration. */
export type AgentConfig = z.output<typeof AgentConfigSchema>;

/** Where each config field comes from, for error messages that name the flag and the variable. */
export const CONFIG_SOURCES: Readonly<Record<keyof AgentConfig, { flag: string; env: string }>> = {
  server: { flag: '--server', env: 'PRFLEET_SERVER' },
  agentId: { flag: '--agent-id', env: 'PRFLEET_AGENT_ID' },
  site: { flag: '--site', env: 'PRFLEET_SITE' },
  labels: { flag: '--label', env: 'PRFLEET_LABELS' },
  transport: { flag: '--transport', env: 'PRFLEET_TRANSPORT' },
  fabric: { flag: '--fabric', env: 'PRFLEET_FABRIC' },
  host: { flag: '--host', env: 'PRFLEET_HOST' },
  allow: { flag: '--allow', env: 'PRFLEET_ALLOW' },
  includeDisks: { flag: '--include-disks', env: 'PRFLEET_INCLUDE_DISKS' },
  record: { flag: '--record', env: 'PRFLEET_RECORD' },
  recordMaskKeys: { flag: '--record-mask-keys', env: 'PRFLEET_RECORD_MASK_KEYS' },
  heartbeatMs: { flag: '--heartbeat-ms', env: 'PRFLEET_HEARTBEAT_MS' },
  rescanMs: { flag: '--rescan-ms', env: 'PRFLEET_RESCAN_MS' },
  plaintext: { flag: '--plaintext', env: 'PRFLEET_PLAINTEXT' },
  tlsCa: { flag: '--tls-ca', env: 'PRFLEET_TLS_CA' },
  tlsCert: { flag: '--tls-cert', env: 'PRFLEET_TLS_CERT' },
  tlsKey: { flag: '--tls-key', env: 'PRFLEET_TLS_KEY' },
  pathConcurrency: { flag: '--path-concurrency', env: 'PRFLEET_PATH_CONCURRENCY' },
  latencyMs: { flag: '--latency-ms', env: 'PRFLEET_LATENCY_MS' },
  drainMs: { flag: '--drain-ms', env: 'PRFLEET_DRAIN_MS' },
  link: { flag: '--link', env: 'PRFLEET_LINK' },
  linkFallbackAfter: { flag: '--link-fallback-after', env: 'PRFLEET_LINK_FALLBACK_AFTER' },
  longPollWaitMs: { flag: '--long-poll-wait-ms', env: 'PRFLEET_LONG_POLL_WAIT_MS' },
  logLevel: { flag: '--log-level', env: 'PRFLEET_LOG_LEVEL' },
};

/** Agent configuration that failed validation; the message lists every problem with its flag and variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Validates a config object (flags and env already merged). Throws ConfigError naming flag and variable. */
export function parseAgentConfig(input: Record<string, unknown>): AgentConfig {
  const parsed = AgentConfigSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((issue) => {
    const key = issue.path[0] as keyof AgentConfig | undefined;
    const source = key === undefined ? undefined : CONFIG_SOURCES[key];
    const where = source ? `${source.flag} / ${source.env}` : issue.path.join('.') || '(config)';
    return `✖ ${issue.message} → at ${where}`;
  });
  throw new ConfigError(`invalid agent configuration\n${lines.join('\n')}`);
}

/** "a=b,c=d" → { a: 'b', c: 'd' }; throws ConfigError for an entry without "=". */
export function parseLabels(
  text: string,
  into: Record<string, string> = {},
): Record<string, string> {
  for (const entry of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = entry.indexOf('=');
    if (eq <= 0)
      throw new ConfigError(`invalid label ${JSON.stringify(entry)}: expected key=value`);
    into[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return into;
}
