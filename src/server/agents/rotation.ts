import type { Logger } from 'pino';
import type { Clock } from '../../common/clock.js';
import type { AgentSession } from './link.js';

/** What rotation needs of the registry. */
export interface RotationHost {
  readonly log: Logger;
  /** Open sessions on this instance. */
  sessions(): AgentSession[];
  /** The open session of `agentId` here, if any. */
  session(agentId: string): AgentSession | undefined;
  /** True when the shared inventory shows `agentId` connected to another instance. */
  connectedElsewhere(agentId: string): boolean;
  /** Ends `session` (its in-flight commands UNKNOWN). */
  close(session: AgentSession, reason: string): void;
}

/**
 * Stream rotation (PRFLEET_MAX_STREAM_AGE_MS): a stream older than its maximum age takes no new commands, is
 * sent Reconnect once nothing is in flight, and is closed when that takes longer than the grace. Long-lived
 * streams pin agents to the instance they first reached; rotation spreads them again after a scale-out.
 */
export class StreamRotation {
  private maxStreamAgeMs = 0;
  /** A session still open this long after rotation began is closed. Default: the longest default command timeout (60 s) plus slack. */
  private graceMs = 70_000;
  /** After a rotation ended its stream, the agent counts as coming back for this long. */
  private waitMs = 10_000;
  /** Agents whose stream here ended by rotation, until when (ms) they are expected back. */
  private readonly rotatedAway = new Map<string, number>();

  constructor(
    private readonly host: RotationHost,
    private readonly clock: Clock,
  ) {}

  /** Current maximum stream age, ms (0 = no rotation). */
  get maxStreamAge(): number {
    return this.maxStreamAgeMs;
  }

  /** Applies rotation settings; fields left out stay. A new maximum age is re-jittered for open sessions. */
  configure(settings: {
    maxStreamAgeMs?: number;
    rotationGraceMs?: number;
    rotationWaitMs?: number;
  }): void {
    if (settings.maxStreamAgeMs !== undefined) {
      if (!(settings.maxStreamAgeMs >= 0))
        throw new Error(`invalid maxStreamAgeMs: ${settings.maxStreamAgeMs}`);
      this.maxStreamAgeMs = settings.maxStreamAgeMs;
      for (const session of this.host.sessions()) this.assignMaxAge(session);
    }
    if (settings.rotationGraceMs !== undefined) this.graceMs = settings.rotationGraceMs;
    if (settings.rotationWaitMs !== undefined) this.waitMs = settings.rotationWaitMs;
  }

  /**
   * Gives a session its own maximum age, jittered (gRPC A9 MAX_CONNECTION_AGE adds ±10 %) so agents that
   * connected together do not all reconnect together; never later than the configured maximum.
   */
  assignMaxAge(session: AgentSession): void {
    const ms =
      this.maxStreamAgeMs <= 0
        ? Number.POSITIVE_INFINITY
        : this.maxStreamAgeMs * (0.9 + Math.random() * 0.1);
    session.setMaxAge(ms);
  }

  /** A session of `agentId` opened here: it is back, whatever rotation sent it away. */
  opened(agentId: string): void {
    this.rotatedAway.delete(agentId);
  }

  /** The agent's current session here ended: when a rotation ended it, expect the agent back for a while. */
  closed(session: AgentSession): void {
    if (session.rotating) this.rotatedAway.set(session.agentId, this.clock.now() + this.waitMs);
  }

  /**
   * True while `agentId`'s stream here is being rotated, or ended by a rotation moments ago and the agent has
   * not come back (here, or elsewhere per the shared inventory): commands for it should wait, not fail.
   */
  isRotating(agentId: string): boolean {
    const session = this.host.session(agentId);
    if (session !== undefined) return session.rotating;
    const until = this.rotatedAway.get(agentId);
    if (until === undefined) return false;
    if (this.clock.now() > until || this.host.connectedElsewhere(agentId)) {
      this.rotatedAway.delete(agentId);
      return false;
    }
    return true;
  }

  /**
   * Waits while `agentId` is rotating (polling every 20 ms): resolves once it is not, or after `timeoutMs`
   * (callers then look again and answer what they find). Rejects with the signal's reason.
   */
  async waitWhileRotating(
    agentId: string,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<void> {
    const deadline = this.clock.now() + options.timeoutMs;
    for (;;) {
      options.signal?.throwIfAborted();
      if (!this.isRotating(agentId) || this.clock.now() >= deadline) return;
      await this.clock.sleep(20, options.signal);
    }
  }

  /**
   * Rotates streams past their maximum age, and closes rotating ones past the grace (their in-flight commands
   * become UNKNOWN). Returns how many rotations began.
   */
  check(): number {
    const nowMs = this.clock.now();
    let started = 0;
    for (const session of this.host.sessions()) {
      if (session.rotatingSinceMs !== undefined)
        this.hurry(session, nowMs - session.rotatingSinceMs);
      else if (this.startIfOld(session, nowMs)) started += 1;
    }
    return started;
  }

  /** A rotation under way for `elapsedMs`: past half the grace, Reconnect anyway; past the grace, close. */
  private hurry(session: AgentSession, elapsedMs: number): void {
    if (elapsedMs > this.graceMs) {
      this.host.log.warn(
        { agentId: session.agentId, sessionId: session.sessionId, inFlight: session.inFlight },
        'stream rotation not finished within its grace: closing the session',
      );
      this.host.close(session, `stream rotation did not finish within ${this.graceMs} ms`);
    } else if (!session.reconnectSent && elapsedMs > this.graceMs / 2) {
      // Commands that keep running: let the agent finish them itself (it drains before it half-closes).
      session.sendReconnect();
    }
  }

  private startIfOld(session: AgentSession, nowMs: number): boolean {
    const ageMs = nowMs - session.connectedAt.getTime();
    if (ageMs < session.maxAgeMs) return false;
    this.host.log.info(
      { agentId: session.agentId, sessionId: session.sessionId, ageMs, inFlight: session.inFlight },
      'stream rotation: maximum age reached',
    );
    session.startRotation();
    return true;
  }
}
