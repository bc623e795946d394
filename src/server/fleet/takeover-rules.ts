/**
 * The rules that prove a Takeover victim failed or greedy, and the preempt policy (docs/fencing.md,
 * "Proven before preempted"): read from PRFLEET_TAKEOVER_RULES (YAML or JSON), with a few env overrides.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import * as z from '../../common/zod-mini.js';
import { nonEmpty, optionalEnvInt } from '../env-schema.js';

/** Which hosts a policy side matches: every given field must match. */
export interface HostMatcher {
  /** Agent ids. */
  readonly agents?: readonly string[] | undefined;
  /** The agent's site. */
  readonly site?: string | undefined;
  /** Labels ("key=value") the agent must all carry: a host group. */
  readonly labels?: readonly string[] | undefined;
}

/** One preempt policy rule: `taker` may preempt `victim` when the verdict is one of `verdicts`. */
export interface PolicyRule {
  /** Name shown in the verdict and recorded with the PREEMPT. */
  readonly name: string;
  readonly taker?: HostMatcher | undefined;
  readonly victim?: HostMatcher | undefined;
  /** Verdicts this rule accepts. @default both */
  readonly verdicts?: readonly ('failed' | 'greedy')[] | undefined;
  /** Taker and victim must share a site. */
  readonly sameSite?: boolean | undefined;
  /** The taker's priority must be above every victim's. */
  readonly higherPriority?: boolean | undefined;
}

/** The external "is host X down?" check. */
export interface LivenessWebhook {
  /** URL; GET gets `?host=<agent>&site=<site>` appended, POST a JSON body. */
  readonly url: string;
  readonly method: 'GET' | 'POST';
  /** Longest wait for the answer, ms; no answer in time counts as "not down". */
  readonly timeoutMs: number;
  /** Extra request headers (e.g. Authorization). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Everything the takeover proof needs. */
export interface TakeoverRules {
  /** The victim's hosts must have sent no heartbeat for this long (ms); 0 turns the failed rule off. */
  readonly failedAfterMs: number;
  /** Where configured, the failed rule also needs this check to say "down". */
  readonly liveness?: LivenessWebhook;
  /** Whether the greedy rule (desired holder, lease) is used. */
  readonly greedy: boolean;
  /** Who may preempt whom; none: any taker may preempt a proven victim. */
  readonly policy: readonly PolicyRule[];
  /** Priorities by agent id (else the agent's `priority=N` label, else 0). */
  readonly priorities: Readonly<Record<string, number>>;
}

/** Defaults: 5 minutes without a heartbeat, greedy on, no webhook, no policy. */
export const DEFAULT_TAKEOVER_RULES: TakeoverRules = {
  failedAfterMs: 300_000,
  greedy: true,
  policy: [],
  priorities: {},
};

const Matcher = z.strictObject({
  agents: z.optional(z.array(nonEmpty())),
  site: z.optional(nonEmpty()),
  labels: z.optional(z.array(z.string().check(z.regex(/^[^=]+=.*$/, 'key=value')))),
});

const RulesFile = z.strictObject({
  failedAfterSeconds: z.optional(z.number().check(z.minimum(0), z.maximum(86_400 * 365))),
  greedy: z.optional(z.boolean()),
  liveness: z.optional(
    z.strictObject({
      url: z.url({ protocol: /^https?$/ }),
      method: z._default(z.enum(['GET', 'POST']), 'POST'),
      timeoutMs: z._default(z.int().check(z.minimum(1), z.maximum(60_000)), 3_000),
      headers: z.optional(z.record(z.string(), z.string())),
    }),
  ),
  policy: z.optional(
    z.array(
      z.strictObject({
        name: nonEmpty().check(z.maxLength(100)),
        taker: z.optional(Matcher),
        victim: z.optional(Matcher),
        verdicts: z.optional(z.array(z.enum(['failed', 'greedy'])).check(z.minLength(1))),
        sameSite: z.optional(z.boolean()),
        higherPriority: z.optional(z.boolean()),
      }),
    ),
  ),
  priorities: z.optional(z.record(z.string(), z.int())),
});

/** Parses a rules document (YAML or JSON text); throws naming `source` and every bad field. */
export function parseTakeoverRules(text: string, source: string): TakeoverRules {
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`, { cause: e });
  }
  const r = RulesFile.safeParse(parsed ?? {});
  if (!r.success) throw new Error(`${source}: ${z.prettifyError(r.error)}`);
  const d = r.data;
  return {
    failedAfterMs:
      d.failedAfterSeconds === undefined
        ? DEFAULT_TAKEOVER_RULES.failedAfterMs
        : Math.round(d.failedAfterSeconds * 1000),
    greedy: d.greedy ?? true,
    ...(d.liveness === undefined
      ? {}
      : {
          liveness: {
            url: d.liveness.url,
            method: d.liveness.method,
            timeoutMs: d.liveness.timeoutMs,
            ...(d.liveness.headers === undefined ? {} : { headers: d.liveness.headers }),
          },
        }),
    policy: d.policy ?? [],
    priorities: d.priorities ?? {},
  };
}

const Env = z.object({
  PRFLEET_TAKEOVER_RULES: z.optional(nonEmpty()),
  PRFLEET_TAKEOVER_FAILED_AFTER_MS: optionalEnvInt(0, 86_400_000 * 365),
  PRFLEET_LIVENESS_URL: z.optional(z.url({ protocol: /^https?$/ })),
  PRFLEET_LIVENESS_TIMEOUT_MS: optionalEnvInt(1, 60_000),
});

/**
 * The rules from `env`: the PRFLEET_TAKEOVER_RULES file (or the defaults), then PRFLEET_TAKEOVER_FAILED_AFTER_MS,
 * PRFLEET_LIVENESS_URL (a POST webhook) and PRFLEET_LIVENESS_TIMEOUT_MS override it. Throws on bad values.
 */
export function takeoverRulesFromEnv(env: NodeJS.ProcessEnv = process.env): TakeoverRules {
  const r = Env.safeParse(env);
  if (!r.success) throw new Error(`invalid takeover settings\n${z.prettifyError(r.error)}`);
  const e = r.data;
  let rules = DEFAULT_TAKEOVER_RULES;
  if (e.PRFLEET_TAKEOVER_RULES !== undefined) {
    const file = e.PRFLEET_TAKEOVER_RULES;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`PRFLEET_TAKEOVER_RULES ${file}: ${(err as Error).message}`, { cause: err });
    }
    rules = parseTakeoverRules(text, `PRFLEET_TAKEOVER_RULES ${file}`);
  }
  if (e.PRFLEET_TAKEOVER_FAILED_AFTER_MS !== undefined)
    rules = { ...rules, failedAfterMs: e.PRFLEET_TAKEOVER_FAILED_AFTER_MS };
  if (e.PRFLEET_LIVENESS_URL !== undefined)
    rules = {
      ...rules,
      liveness: {
        method: 'POST',
        timeoutMs: 3_000,
        ...rules.liveness,
        url: e.PRFLEET_LIVENESS_URL,
      },
    };
  if (e.PRFLEET_LIVENESS_TIMEOUT_MS !== undefined && rules.liveness !== undefined)
    rules = { ...rules, liveness: { ...rules.liveness, timeoutMs: e.PRFLEET_LIVENESS_TIMEOUT_MS } };
  return rules;
}

/** Longest liveness answer read, bytes: a longer one is not read further, and proves nothing. */
const MAX_LIVENESS_ANSWER = 4096;

/** The body as text, or undefined (and the rest left unread) once it passes `max` bytes. */
async function readCapped(response: Response, max: number): Promise<string | undefined> {
  const reader = (response.body as ReadableStream<Uint8Array> | null)?.getReader();
  if (reader === undefined) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * `text` with control and formatting characters (escapes, newlines, bidi overrides) shown as `\u{…}`: it goes into
 * the history's evidence, which people read in terminals.
 */
function printable(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}]/gu, (c) => `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`);
}

/** What the liveness webhook answered. */
export interface LivenessAnswer {
  /** True only when it answered in time, 2xx, with `{"down": true}`. */
  readonly down: boolean;
  /** The answer (or why there was none), for the evidence. */
  readonly detail: string;
}

/** What the webhook is told about the host. */
export interface LivenessQuestion {
  readonly host: string;
  readonly site: string;
  /** Last heartbeat the server saw (ISO), or ''. */
  readonly lastHeartbeat: string;
}

/**
 * Asks the webhook whether `q.host` is down. It must answer 2xx with a JSON object `{"down": bool, "detail"?:
 * string}`; anything else (timeout, error status, other body) counts as NOT down: a takeover is never proven by a
 * check that did not answer.
 */
export async function askLiveness(
  hook: LivenessWebhook,
  q: LivenessQuestion,
  signal?: AbortSignal,
): Promise<LivenessAnswer> {
  const timeout = AbortSignal.timeout(hook.timeoutMs);
  const both = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
  const url = new URL(hook.url);
  // A redirect is not followed: only the service the operator configured may prove a host down.
  const init: RequestInit = {
    method: hook.method,
    signal: both,
    headers: { ...hook.headers },
    redirect: 'manual',
  };
  if (hook.method === 'GET') {
    url.searchParams.set('host', q.host);
    url.searchParams.set('site', q.site);
  } else {
    init.body = JSON.stringify(q);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const where = `${hook.method} ${url.origin}${url.pathname}`;
  try {
    const response = await fetch(url, init);
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      return {
        down: false,
        detail: `${where} answered a redirect (HTTP ${response.status}), not followed: not proven`,
      };
    }
    const text = await readCapped(response, MAX_LIVENESS_ANSWER);
    if (text === undefined)
      return {
        down: false,
        detail: `${where} answered over ${MAX_LIVENESS_ANSWER} bytes: not proven`,
      };
    if (!response.ok)
      return { down: false, detail: `${where} answered HTTP ${response.status}: not proven` };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { down: false, detail: `${where} answered no JSON: not proven` };
    }
    const down = (body as { down?: unknown } | null)?.down;
    const said = (body as { detail?: unknown } | null)?.detail;
    const extra =
      typeof said === 'string' && said !== '' ? ` (${printable(said.slice(0, 200))})` : '';
    if (typeof down !== 'boolean')
      return { down: false, detail: `${where} answered without "down": not proven` };
    return { down, detail: `${where} says ${q.host} is ${down ? 'down' : 'up'}${extra}` };
  } catch (e) {
    const why = timeout.aborted ? `no answer within ${hook.timeoutMs} ms` : (e as Error).message;
    return { down: false, detail: `${where}: ${why}: not proven` };
  }
}
