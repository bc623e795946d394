import type { Logger } from 'pino';
import { ServerError, Status } from 'nice-grpc-common';
import type { Clock } from '../../common/clock.js';
import type { AgentSession } from './link.js';

/** What the liveness check needs of the registry. */
export interface LivenessHost {
  readonly log: Logger;
  /** Open sessions on this instance. */
  sessions(): AgentSession[];
  /** Ends `session` with `streamError` for its transport (in-flight commands UNKNOWN). */
  close(session: AgentSession, reason: string, streamError?: unknown): void;
}

/**
 * Drops sessions silent for more than `limitMs` (heartbeat interval × missed heartbeats): a link that died
 * without a FIN (a cut cable, a frozen VM) would otherwise hold its commands until their timeouts. Returns how
 * many were dropped.
 */
export function dropSilentSessions(host: LivenessHost, limitMs: number, nowMs: number): number {
  let dropped = 0;
  for (const session of host.sessions()) {
    const silentMs = nowMs - session.lastSeenMs;
    if (silentMs <= limitMs) continue;
    dropped += 1;
    host.log.warn(
      {
        agentId: session.agentId,
        sessionId: session.sessionId,
        silentMs,
        inFlight: session.inFlight,
      },
      'agent silent too long: dropping its session',
    );
    host.close(
      session,
      `agent sent nothing for ${silentMs} ms`,
      new ServerError(Status.UNAVAILABLE, `no heartbeat for ${silentMs} ms (limit ${limitMs} ms)`),
    );
  }
  return dropped;
}

/**
 * A periodic check on the clock's timers (they do not hold the process). `intervalMs` is read at each start, so
 * a restart picks up a changed setting.
 */
export class PeriodicCheck {
  private cancel: (() => void) | undefined;

  constructor(
    private readonly run: () => void,
    private readonly intervalMs: () => number,
    private readonly clock: Clock,
  ) {}

  get running(): boolean {
    return this.cancel !== undefined;
  }

  start(): void {
    if (this.cancel !== undefined) return;
    this.schedule(this.intervalMs());
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }

  /** Restarts a running check (its interval may have changed); a stopped one stays stopped. */
  restart(): void {
    if (this.cancel === undefined) return;
    this.stop();
    this.start();
  }

  // Armed again before each run, as setInterval does: the next run does not wait for this one's length.
  private schedule(intervalMs: number): void {
    this.cancel = this.clock.timeout(() => {
      this.schedule(intervalMs);
      this.run();
    }, intervalMs);
  }
}
