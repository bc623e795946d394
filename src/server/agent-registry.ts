import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { ServerError, Status } from 'nice-grpc-common';
import type { ConnectResponse, Heartbeat, Hello } from '../gen/prfleet/v1/agent.js';
import type { Command } from '../gen/prfleet/v1/agent.js';
import type { CommandResult, Path } from '../gen/prfleet/v1/scsi.js';
import { unknownResult } from '../common/result.js';
import { AsyncQueue } from './async-queue.js';

/** A command handed to an agent whose result has not come back yet. */
export interface PendingCommand {
  /** The command as sent (with its command_id and timeout). */
  readonly command: Command;
  /** Logical unit behind the command's path, copied into the result when the agent leaves it empty. */
  readonly luId: string;
  /** Called exactly once with the final result (device answer, or UNKNOWN when the session ends first). */
  settle(result: CommandResult): void;
}

/** One open AgentService.Connect stream: its outbox (server → agent) and the commands awaiting results. */
export class AgentSession {
  /** Id of this session (Welcome.session_id). */
  readonly sessionId = randomUUID();
  /** When the stream opened. */
  readonly connectedAt = new Date();
  /** Messages for the agent; the Connect handler yields from it (backpressured by HTTP/2). */
  readonly outbox: AsyncQueue<ConnectResponse>;
  /** In-flight commands by command_id. */
  readonly pending = new Map<string, PendingCommand>();
  /** Last Heartbeat received. */
  lastHeartbeatAt: Date | undefined;
  /** Date.now() of the last message of any kind (liveness). */
  lastSeenMs = Date.now();
  private ended = false;

  constructor(
    /** Who the agent said it is. */
    readonly hello: Hello,
    outboxCapacity: number,
  ) {
    this.outbox = new AsyncQueue(outboxCapacity);
  }

  /** Agent id from Hello. */
  get agentId(): string {
    return this.hello.agentId;
  }

  /** True once end() ran. */
  get isEnded(): boolean {
    return this.ended;
  }

  /**
   * Ends the session: the outbox closes (the stream ends OK after what is queued, or with `streamError`), and
   * every in-flight command settles as OUTCOME_UNKNOWN with `reason` (it may or may not have run).
   */
  end(reason: string, streamError?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.outbox.close(streamError);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      p.settle(
        unknownResult(
          p.command,
          this.agentId,
          `${reason}; the command may or may not have run: read the logical unit before retrying`,
        ),
      );
    }
  }
}

/** What the server knows about one agent, connected or not. */
export interface AgentRecord {
  /** Latest Hello. */
  hello: Hello;
  /** The open session, if connected. */
  session: AgentSession | undefined;
  /** Id of the latest session (open or not). */
  lastSessionId: string;
  /** When the latest session started. */
  connectedAt: Date;
  /** Last heartbeat of the latest session. */
  lastHeartbeatAt: Date | undefined;
  /** Latest inventory (kept after disconnect so devices stay listed, as offline paths). */
  paths: Path[];
}

/** Options for {@link AgentRegistry}. */
export interface AgentRegistryOptions {
  /** Heartbeat interval agents are told to keep. */
  readonly heartbeatMs: number;
  /** Sessions silent for more than heartbeatMs × this are dropped. */
  readonly missedHeartbeats: number;
  /** Commands queued or in flight per agent before AGENT_BUSY (also the outbox bound). */
  readonly outboxCapacity: number;
  /** Logger. */
  readonly log: Logger;
}

/**
 * Agents and their sessions, in this process. A new session for an agent id replaces the old one (old stream
 * ended, its in-flight commands UNKNOWN); a session silent for too long is dropped by the liveness check.
 */
export class AgentRegistry {
  private readonly records = new Map<string, AgentRecord>();
  private livenessTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: AgentRegistryOptions) {}

  /** Heartbeat interval told to agents (ms). */
  get heartbeatMs(): number {
    return this.options.heartbeatMs;
  }

  /** Opens a session for `hello.agent_id`, replacing (and ending) any current one. */
  open(hello: Hello): AgentSession {
    const session = new AgentSession(hello, this.options.outboxCapacity);
    const record = this.records.get(hello.agentId);
    const previous = record?.session;
    if (record === undefined) {
      this.records.set(hello.agentId, {
        hello,
        session,
        lastSessionId: session.sessionId,
        connectedAt: session.connectedAt,
        lastHeartbeatAt: undefined,
        paths: [],
      });
    } else {
      record.hello = hello;
      record.session = session;
      record.lastSessionId = session.sessionId;
      record.connectedAt = session.connectedAt;
      record.lastHeartbeatAt = undefined;
    }
    if (previous !== undefined) {
      this.options.log.warn(
        { agentId: hello.agentId, oldSessionId: previous.sessionId, sessionId: session.sessionId,
          inFlight: previous.pending.size },
        'agent reconnected: replacing its old session',
      );
      previous.end(
        'agent session replaced by a newer one',
        new ServerError(Status.ABORTED, 'replaced by a newer session of the same agent'),
      );
    }
    return session;
  }

  /** Ends `session` (if still open) and marks its agent disconnected when it is the current one. */
  close(session: AgentSession, reason: string, streamError?: unknown): void {
    const record = this.records.get(session.agentId);
    if (record?.session === session) record.session = undefined;
    session.end(reason, streamError);
  }

  /** Replaces the agent's paths with `paths` when `session` is current. */
  setInventory(session: AgentSession, paths: Path[]): void {
    const record = this.records.get(session.agentId);
    if (record?.session !== session) return;
    record.paths = paths;
  }

  /** Records a heartbeat (and liveness) for `session`. */
  heartbeat(session: AgentSession, _heartbeat: Heartbeat): void {
    session.lastHeartbeatAt = new Date();
    const record = this.records.get(session.agentId);
    if (record?.session === session) record.lastHeartbeatAt = session.lastHeartbeatAt;
  }

  /** The open session of `agentId`, if any. */
  session(agentId: string): AgentSession | undefined {
    return this.records.get(agentId)?.session;
  }

  /** What is known about `agentId`, connected or not. */
  get(agentId: string): AgentRecord | undefined {
    return this.records.get(agentId);
  }

  /** Every known agent, sorted by id. */
  list(): AgentRecord[] {
    return [...this.records.values()].sort((a, b) => compare(a.hello.agentId, b.hello.agentId));
  }

  /** Open sessions. */
  sessions(): AgentSession[] {
    return this.list().flatMap((r) => (r.session === undefined ? [] : [r.session]));
  }

  /** Drops sessions silent for more than heartbeatMs × missedHeartbeats; returns how many were dropped. */
  checkLiveness(nowMs = Date.now()): number {
    const limitMs = this.options.heartbeatMs * this.options.missedHeartbeats;
    let dropped = 0;
    for (const session of this.sessions()) {
      const silentMs = nowMs - session.lastSeenMs;
      if (silentMs <= limitMs) continue;
      dropped += 1;
      this.options.log.warn(
        { agentId: session.agentId, sessionId: session.sessionId, silentMs, inFlight: session.pending.size },
        'agent silent too long: dropping its session',
      );
      this.close(
        session,
        `agent sent nothing for ${silentMs} ms`,
        new ServerError(Status.UNAVAILABLE, `no heartbeat for ${silentMs} ms (limit ${limitMs} ms)`),
      );
    }
    return dropped;
  }

  /** Starts the periodic liveness check (every half heartbeat interval; the timer does not hold the process). */
  startLivenessChecks(): void {
    if (this.livenessTimer !== undefined) return;
    this.livenessTimer = setInterval(() => this.checkLiveness(), Math.max(25, this.options.heartbeatMs / 2));
    this.livenessTimer.unref();
  }

  /** Stops the liveness check. */
  stopLivenessChecks(): void {
    clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
  }
}

/** Plain string order (not locale): ids sort the same everywhere. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
