import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

/** The logger type every prfleet module takes as `deps.log`. */
export type { Logger } from 'pino';

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Minimum level. @default 'info' */
  readonly level?: LevelWithSilent;
  /** Value of the `name` field on every line (e.g. 'prfleet-server'). @default none */
  readonly name?: string;
  /** Where JSON lines go. @default stdout */
  readonly destination?: DestinationStream;
  /** Fields on every line. @default {} */
  readonly base?: Record<string, unknown>;
  /** Adds fields to every line at write time (e.g. the current trace and span ids). @default none */
  readonly mixin?: () => Record<string, unknown>;
}

/**
 * JSON replacer that turns bigints (uint64 keys, Duration seconds) into decimal strings: pino would otherwise
 * print them as number literals that JSON readers round (grpc-ts-notes §6). Buffers become hex, as logs are
 * read by people.
 */
function safeValue(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  // formatters.log runs before pino's serializers, and JSON.stringify(error) is {}.
  if (value instanceof Error) return pino.stdSerializers.err(value);
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (value !== null && typeof value === 'object' && 'type' in value && 'data' in value) {
    // Buffer.toJSON() ran before the replacer saw it.
    const candidate = value;
    if (candidate.type === 'Buffer' && Array.isArray(candidate.data)) {
      return Buffer.from(candidate.data as number[]).toString('hex');
    }
  }
  return value;
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/**
 * pino's time field as pino.stdTimeFunctions.isoTime writes it (`,"time":"2026-12-07T21:25:36.927Z"`, years
 * 0–9999), built from the UTC fields: the first call of Date.prototype.toISOString grows a process's RSS by
 * ~1.1 MiB, the UTC getters by ~0.1 (measured: bench/README.md, "Agent weight, fourth pass"), and an idle agent
 * logs at start.
 */
export function isoTime(): string {
  const d = new Date();
  const ms = d.getUTCMilliseconds();
  const year = String(d.getUTCFullYear()).padStart(4, '0');
  return (
    `,"time":"${year}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}` +
    `T${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}` +
    `.${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`
  );
}

/** Returns `object` with every bigint (at any depth) as a decimal string; leaves other values alone. */
export function bigintSafe(object: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(object, safeValue)) as Record<string, unknown>;
}

/**
 * Creates the pino logger used by server, agent and CLI: JSON lines on stdout, `level` as a label, bigint-safe
 * (keys should still be logged through `formatKey()` so they read as 16 hex digits).
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const config = {
    level: options.level ?? 'info',
    base: { ...(options.name === undefined ? {} : { name: options.name }), ...options.base },
    timestamp: isoTime,
    formatters: {
      level: (label: string) => ({ level: label }),
      log: bigintSafe,
    },
    serializers: { err: pino.stdSerializers.err },
    ...(options.mixin === undefined ? {} : { mixin: options.mixin }),
  };
  return options.destination === undefined ? pino(config) : pino(config, options.destination);
}
