import { randomUUID } from 'node:crypto';
import type { Command, ConnectResponse, Hello } from '../../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { unknownResult } from '../../common/result.js';
import { AsyncQueue } from '../../common/async-queue.js';
import { systemClock, type Clock } from '../../common/clock.js';
import type { CertificateNames } from '../auth/revocation.js';

/** A command handed to an agent whose result has not come back yet. */
export interface PendingCommand {
  /** The command as sent (with its command_id and timeout). */
  readonly command: Command;
  /** Logical unit behind the command's path, copied into the result when the agent leaves it empty. */
  readonly luId: string;
  /** Called exactly once with the final result (device answer, or UNKNOWN when the session ends first). */
  settle(result: CommandResult): void;
}

/**
 * The outbox as a transport sees it: it takes messages and learns of the end, never adds a message (only the
 * link does, so the capacity bound and the end hold).
 */
export type Outbox = Pick<
  AsyncQueue<ConnectResponse>,
  | 'take'
  | 'takeIf'
  | 'whenReadable'
  | 'callWhenReadable'
  | 'isClosed'
  | 'closeReason'
  | 'size'
  | 'onClose'
>;

/** What carries a session's messages: the gRPC stream, or HTTP/1.1 long polling (docs/http.md). */
export type AgentLinkKind = 'stream' | 'long-poll';

const ROTATION_REASON = 'stream rotation: maximum stream age reached, reconnect to any instance';

/**
 * One session of one agent, whatever link carries it (the Connect stream, or long polls): its outbox (server →
 * agent) and the commands awaiting results. The router talks to an agent only through this object (`send`,
 * `cancel`, `end`); the transports read the outbox; every field that changes is changed by a method here, so
 * the invariants (one settle per command, Reconnect once per rotation, nothing queued after the end) hold in
 * one file.
 */
export class AgentSession {
  /** Id of this session (Welcome.session_id). */
  readonly sessionId = randomUUID();
  /** When the session opened. */
  readonly connectedAt: Date;
  private readonly queue: AsyncQueue<ConnectResponse>;
  // Allocated with the first command: an idle agent (most of a fleet, most of the time) carries no map.
  private pendingMap: Map<string, PendingCommand> | undefined;
  private heartbeatAt: Date | undefined;
  private seenMs: number;
  // Age (ms) at which the stream is rotated; Infinity = never (see rotation.ts).
  private maxAge = Number.POSITIVE_INFINITY;
  private rotationStartMs: number | undefined;
  private reconnected = false;
  private ended = false;
  private reasonEnded: string | undefined;

  constructor(
    /** Who the agent said it is. */
    readonly hello: Hello,
    outboxCapacity: number,
    /** What carries the session. */
    readonly link: AgentLinkKind = 'stream',
    /** The client certificate the agent connected with (TLS), named for revocation. */
    readonly certificate: CertificateNames | undefined = undefined,
    /** Time of the session's messages, heartbeats and rotation (liveness and rotation read them). */
    private readonly clock: Clock = systemClock,
  ) {
    this.queue = new AsyncQueue(outboxCapacity);
    this.seenMs = clock.now();
    this.connectedAt = new Date(this.seenMs);
  }

  /** Messages for the agent; the transport takes from it (the stream's writer, or the polls). */
  get outbox(): Outbox {
    return this.queue;
  }

  /** Agent id from Hello. */
  get agentId(): string {
    return this.hello.agentId;
  }

  /** In-flight commands by command_id (read-only: `send` adds, settling removes). */
  get pending(): ReadonlyMap<string, PendingCommand> {
    return (this.pendingMap ??= new Map());
  }

  /** Commands in flight (without allocating the map of an idle session). */
  get inFlight(): number {
    return this.pendingMap?.size ?? 0;
  }

  /** Messages queued for the agent and not yet taken by the transport. */
  get queued(): number {
    return this.queue.size;
  }

  /** Commands queued or in flight before the agent counts as busy (the outbox bound). */
  get capacity(): number {
    return this.queue.capacity;
  }

  /** The in-flight command `commandId`, if any (a result for anything else is stray). */
  pendingCommand(commandId: string): PendingCommand | undefined {
    return this.pendingMap?.get(commandId);
  }

  /**
   * Queues `command` for the agent and keeps `settle` for its result. False (nothing queued, nothing kept)
   * when the agent already has `capacity` commands queued or in flight, or the session is over: the bound
   * covers commands in flight too, since a slow agent fills it even while the transport drains.
   */
  send(command: Command, luId: string, settle: (result: CommandResult) => void): boolean {
    if (this.inFlight >= this.capacity) return false;
    if (!this.queue.push({ message: { $case: 'command', value: command } })) return false;
    (this.pendingMap ??= new Map()).set(command.commandId, { command, luId, settle });
    return true;
  }

  /** Asks the agent to drop `commandId` (queued even when the outbox is full); a result may still come and is recorded. */
  cancel(commandId: string): void {
    this.queue.pushUrgent({ message: { $case: 'cancel', value: { commandId } } });
  }

  /** Forgets a settled command; sends the rotation's Reconnect when it was the last one in flight. */
  forget(commandId: string): void {
    this.pendingMap?.delete(commandId);
    this.sendReconnectWhenIdle();
  }

  /** Queues the Welcome (right after open, so it is the first message the agent reads; never refused as full). */
  welcome(value: Extract<ConnectResponse['message'], { $case: 'welcome' }>['value']): void {
    this.queue.pushUrgent({ message: { $case: 'welcome', value } });
  }

  /** Records that the agent said something (any message: liveness counts silence, not heartbeats only). */
  touch(): void {
    this.seenMs = this.clock.now();
  }

  /** When (epoch ms, on the session's clock) the agent last sent a message of any kind (liveness). */
  get lastSeenMs(): number {
    return this.seenMs;
  }

  /** Records a Heartbeat; returns its time. */
  heartbeat(): Date {
    const at = new Date(this.clock.now());
    this.heartbeatAt = at;
    return at;
  }

  /** Last Heartbeat received. */
  get lastHeartbeatAt(): Date | undefined {
    return this.heartbeatAt;
  }

  // ---- rotation (the policy is in rotation.ts; the per-session state is here) -----------------------------------

  /** Age (ms) at which the stream is rotated; Infinity = never. */
  get maxAgeMs(): number {
    return this.maxAge;
  }

  /** Sets the age at which the stream is rotated (rotation.ts jitters it per session). */
  setMaxAge(ms: number): void {
    this.maxAge = ms;
  }

  /** When (epoch ms, on the session's clock) rotation began (no new commands since), or undefined. */
  get rotatingSinceMs(): number | undefined {
    return this.rotationStartMs;
  }

  /** True while the stream is being rotated: the router sends it no new commands and waits for the next one. */
  get rotating(): boolean {
    return this.rotationStartMs !== undefined;
  }

  /** True once Reconnect was sent for the rotation. */
  get reconnectSent(): boolean {
    return this.reconnected;
  }

  /**
   * Starts rotating the stream: no new commands from now on; Reconnect goes out as soon as nothing is in flight,
   * so the agent never has to refuse a command nor leave one behind.
   */
  startRotation(): void {
    if (this.ended || this.rotating) return;
    this.rotationStartMs = this.clock.now();
    this.sendReconnectWhenIdle();
  }

  /** Sends the rotation's Reconnect now even with commands in flight (the agent finishes them before it half-closes). */
  sendReconnect(reason = ROTATION_REASON): void {
    if (this.ended || this.reconnected) return;
    this.reconnected = true;
    this.queue.pushUrgent({ message: { $case: 'reconnect', value: { reason } } });
  }

  /**
   * Asks the agent to reconnect (elsewhere) for a reason of the server's own, such as shutting down: sent every
   * time, unlike the rotation's Reconnect, and without marking a rotation.
   */
  askToReconnect(reason: string): void {
    this.queue.pushUrgent({ message: { $case: 'reconnect', value: { reason } } });
  }

  private sendReconnectWhenIdle(): void {
    if (this.rotating && this.inFlight === 0) this.sendReconnect();
  }

  // ---- end ----------------------------------------------------------------------------------------------------

  /** True once end() ran. */
  get isEnded(): boolean {
    return this.ended;
  }

  /** Why the session ended (the `reason` end() was given), for the AGENT_DISCONNECTED event. */
  get endReason(): string | undefined {
    return this.reasonEnded;
  }

  /**
   * Ends the session: the outbox closes (the transport ends OK after what is queued, or with `streamError`), and
   * every in-flight command settles as OUTCOME_UNKNOWN with `reason` (it may or may not have run).
   */
  end(reason: string, streamError?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.reasonEnded = reason;
    this.queue.close(streamError);
    if (this.pendingMap === undefined) return;
    const pending = [...this.pendingMap.values()];
    this.pendingMap.clear();
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
