import type { Logger } from 'pino';
import type { Clock } from '../src/common/clock.js';
import type { AgentLinkKind } from './agent.js';
import type { AgentLinkClient } from './long-poll.js';
import type { ServerLinks } from './server-links.js';
import type { Session, SessionEnd } from './session.js';

/** Reconnect backoff: full jitter over min(maxMs, initialMs · 2^attempt) (grpc-ts-notes §2.9). */
export interface BackoffOptions {
  /** First delay bound, ms. @default 250 */
  readonly initialMs?: number;
  /** Largest delay bound, ms. @default 30000 */
  readonly maxMs?: number;
  /** A welcomed session that lasted this long resets the attempt count, ms. @default 30000 */
  readonly healthyMs?: number;
}

/** Delay before reconnect attempt `attempt` (0-based): uniform in [0, min(maxMs, initialMs · 2^attempt)). */
export function backoffDelayMs(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const initialMs = options.initialMs ?? 250;
  const maxMs = options.maxMs ?? 30_000;
  const bound = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * bound);
}

/** What to do after a session ended. */
export interface Reconnect {
  /** Wait this long before dialling again, ms. */
  readonly waitMs: number;
  /** Reconnect attempts since the last reset, this one counted. */
  readonly attempt: number;
  /** Stream sessions failed in a row before any Welcome, when they call for the long-poll link now. */
  readonly fallBackAfter?: number;
}

/**
 * Decides how long to wait after each session end: jittered exponential backoff that resets after a healthy
 * session or a Reconnect, and when a stream link keeps failing before any Welcome (an HTTP/1.1-only proxy may
 * block it), the switch to long polling.
 */
export class ReconnectPolicy {
  private attempt = 0;
  private streamFailures = 0;

  constructor(
    private readonly options: {
      readonly backoff?: BackoffOptions | undefined;
      /** Stream failures before the long-poll fallback; 0 = never. */
      readonly fallbackAfter: number;
      readonly random: () => number;
    },
  ) {}

  /** Counts `end` (of a session over `link`) and says how to go on. */
  afterEnd(end: SessionEnd, link: AgentLinkKind): Reconnect {
    const stream = link === 'stream';
    this.streamFailures =
      stream && end.reason === 'error' && !end.welcomed ? this.streamFailures + 1 : 0;
    const fallBack =
      stream && this.options.fallbackAfter > 0 && this.streamFailures >= this.options.fallbackAfter;
    if (fallBack) this.attempt = 0;
    const healthy = end.welcomed && end.durationMs >= (this.options.backoff?.healthyMs ?? 30_000);
    if (healthy || end.reason === 'reconnect') this.attempt = 0;
    const waitMs = backoffDelayMs(this.attempt, this.options.backoff, this.options.random);
    this.attempt++;
    return fallBack
      ? { waitMs, attempt: this.attempt, fallBackAfter: this.streamFailures }
      : { waitMs, attempt: this.attempt };
  }
}

/** What the reconnect loop drives. */
export interface ReconnectLoopDeps {
  readonly links: ServerLinks;
  /** Waits out the backoff. */
  readonly clock: Clock;
  readonly policy: ReconnectPolicy;
  readonly log: Logger;
  /** A new session over `client`, not yet run. */
  openSession(client: AgentLinkClient): Session;
  /** Called before each dial (the agent is 'connecting'). */
  onConnecting(): void;
  /** Called with the session that runs now, and with undefined when it ended. */
  onSession(session: Session | undefined): void;
}

/**
 * Keeps one session open until `signal` aborts: when a session ends for ANY reason, OK included, the next one
 * dials the next address after the policy's backoff (style.md §5).
 */
export async function runReconnectLoop(
  deps: ReconnectLoopDeps,
  signal: AbortSignal,
): Promise<void> {
  const { links, log } = deps;
  while (!signal.aborted) {
    deps.onConnecting();
    const address = links.address;
    const session = deps.openSession(await links.client(address));
    deps.onSession(session);
    const end = await session.run(signal);
    deps.onSession(undefined);
    if (signal.aborted) break;
    links.advance();
    const next = deps.policy.afterEnd(end, links.kind);
    if (next.fallBackAfter !== undefined) {
      links.kind = 'long-poll';
      log.warn(
        { failures: next.fallBackAfter, err: end.error },
        'the gRPC stream failed repeatedly before any Welcome: falling back to the HTTP/1.1 long-poll link',
      );
    }
    log.warn(
      {
        reason: end.reason,
        ...(end.error === undefined ? {} : { err: end.error }),
        sessionMs: end.durationMs,
        server: address,
        attempt: next.attempt,
        waitMs: next.waitMs,
      },
      'session ended; reconnecting',
    );
    await deps.clock.sleep(next.waitMs, signal);
  }
}
