import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { ServerError, Status } from 'nice-grpc-common';
import type { ConnectResponse, Heartbeat, Hello } from '../gen/prfleet/v1/agent.js';
import type { Command } from '../gen/prfleet/v1/agent.js';
import type {
  CommandResult,
  Designator,
  DeviceCapabilities,
  Path,
  TransportId,
} from '../gen/prfleet/v1/scsi.js';
import { unknownResult } from '../common/result.js';
import { AsyncQueue } from '../common/async-queue.js';
import type { CertificateNames } from './auth/revocation.js';
import type { ConflictingClaim } from './inventory-screen.js';
import { delay } from '../common/delay.js';

/** A command handed to an agent whose result has not come back yet. */
export interface PendingCommand {
  /** The command as sent (with its command_id and timeout). */
  readonly command: Command;
  /** Logical unit behind the command's path, copied into the result when the agent leaves it empty. */
  readonly luId: string;
  /** Called exactly once with the final result (device answer, or UNKNOWN when the session ends first). */
  settle(result: CommandResult): void;
}

/** What carries a session's messages: the gRPC stream, or HTTP/1.1 long polling (docs/http.md). */
export type AgentLinkKind = 'stream' | 'long-poll';

/**
 * One session of one agent, whatever link carries it (the Connect stream, or long polls): its outbox (server →
 * agent) and the commands awaiting results. The router only ever sees this.
 */
export class AgentSession {
  /** Id of this session (Welcome.session_id). */
  readonly sessionId = randomUUID();
  /** The client certificate the agent connected with (TLS), named for revocation. */
  certificate: CertificateNames | undefined;
  /** When the stream opened. */
  readonly connectedAt = new Date();
  /** Messages for the agent; the Connect handler yields from it (backpressured by HTTP/2). */
  readonly outbox: AsyncQueue<ConnectResponse>;
  // Allocated with the first command: an idle agent (most of a fleet, most of the time) carries no map.
  private pendingMap: Map<string, PendingCommand> | undefined;
  /** Last Heartbeat received. */
  lastHeartbeatAt: Date | undefined;
  /** Date.now() of the last message of any kind (liveness). */
  lastSeenMs = Date.now();
  /**
   * Age (ms) at which the stream is rotated; Infinity = never. Jittered per session (gRPC A9 MAX_CONNECTION_AGE
   * adds ±10 %) so agents that connected together do not all reconnect together.
   */
  maxAgeMs = Number.POSITIVE_INFINITY;
  /** Date.now() when rotation began (no new commands since), or undefined. */
  rotatingSinceMs: number | undefined;
  /** True once Reconnect was sent for the rotation. */
  reconnectSent = false;
  private ended = false;
  /** Why the session ended (the `reason` end() was given), for the AGENT_DISCONNECTED event. */
  endReason: string | undefined;

  constructor(
    /** Who the agent said it is. */
    readonly hello: Hello,
    outboxCapacity: number,
    /** What carries the session. */
    readonly link: AgentLinkKind = 'stream',
  ) {
    this.outbox = new AsyncQueue(outboxCapacity);
  }

  /** In-flight commands by command_id. */
  get pending(): Map<string, PendingCommand> {
    return (this.pendingMap ??= new Map());
  }

  /** Commands in flight (without allocating the map of an idle session). */
  get inFlight(): number {
    return this.pendingMap?.size ?? 0;
  }

  /** True while the stream is being rotated: the router sends it no new commands and waits for the next one. */
  get rotating(): boolean {
    return this.rotatingSinceMs !== undefined;
  }

  /**
   * Starts rotating the stream: no new commands from now on; Reconnect goes out as soon as nothing is in flight,
   * so the agent never has to refuse a command nor leave one behind.
   */
  startRotation(nowMs = Date.now()): void {
    if (this.ended || this.rotating) return;
    this.rotatingSinceMs = nowMs;
    this.sendReconnectWhenIdle();
  }

  /** Forgets a settled command; sends the rotation's Reconnect when it was the last one in flight. */
  forget(commandId: string): void {
    this.pendingMap?.delete(commandId);
    this.sendReconnectWhenIdle();
  }

  /** Sends Reconnect now even with commands in flight (the agent finishes them before it half-closes). */
  sendReconnect(reason: string): void {
    if (this.ended || this.reconnectSent) return;
    this.reconnectSent = true;
    this.outbox.pushUrgent({ message: { $case: 'reconnect', value: { reason } } });
  }

  private sendReconnectWhenIdle(): void {
    if (this.rotating && this.inFlight === 0) {
      this.sendReconnect('stream rotation: maximum stream age reached, reconnect to any instance');
    }
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
    this.endReason = reason;
    this.outbox.close(streamError);
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
  /** What carries its latest session (from the shared inventory for other instances; undefined when unknown). */
  link?: AgentLinkKind | undefined;
  /**
   * Instance holding the agent's stream when that is ANOTHER instance (records from the shared inventory);
   * undefined for records of this instance, and for agents not connected anywhere.
   */
  remoteInstance?: string | undefined;
}

/** True when the agent has an open stream on this instance or, per the shared inventory, on another one. */
export function isConnected(record: AgentRecord): boolean {
  return record.session !== undefined || record.remoteInstance !== undefined;
}

/**
 * Agents as other server instances see them (the shared inventory): records with `session` undefined and
 * `remoteInstance` set while another instance holds the stream. Reads are synchronous (a local mirror).
 */
export interface RemoteAgents {
  /** Every agent known to the fleet, any instance, connected or not. */
  list(): readonly AgentRecord[];
  /** The fleet's record of `agentId`, if any. */
  get(agentId: string): AgentRecord | undefined;
}

/** What happened to a session, for listeners (shared inventory, presence, metrics). */
export type RegistryEvent =
  | { readonly kind: 'opened'; readonly session: AgentSession }
  | { readonly kind: 'inventory'; readonly session: AgentSession; readonly paths: readonly Path[] }
  | { readonly kind: 'heartbeat'; readonly session: AgentSession }
  /** `current`: it was the agent's current session (false when a newer one had replaced it already). */
  | { readonly kind: 'closed'; readonly session: AgentSession; readonly current: boolean };

/** Settings that multi-instance wiring adds after construction ({@link AgentRegistry.configure}). */
export interface RegistrySettings {
  /** Other instances' agents, merged into list()/get(). @default none (this instance only) */
  readonly remote?: RemoteAgents | undefined;
  /** Rotate streams older than this (PRFLEET_MAX_STREAM_AGE_MS); 0 = never. @default 0 */
  readonly maxStreamAgeMs?: number;
  /**
   * Rotation bound: a session still open this long after rotation began is closed (in-flight commands
   * UNKNOWN). @default 70000 (the longest default command timeout, 60 s, plus slack)
   */
  readonly rotationGraceMs?: number;
  /** AgentService refuses agents without a verified client certificate (TLS servers). @default false */
  readonly requireAgentCertificate?: boolean;
  /**
   * Revoked client certificates (PRFLEET_TLS_REVOKED), checked again at Hello: the peer-identity interceptor
   * judged the certificate when the stream opened, which may be long before the Hello. @default none
   */
  readonly isCertificateRevoked?: ((certificate: CertificateNames) => boolean) | undefined;
  /** After a rotation ended its stream, the agent counts as coming back for this long. @default 10000 */
  readonly rotationWaitMs?: number;
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
  private readonly listeners = new Set<(event: RegistryEvent) => void>();
  private livenessTimer: NodeJS.Timeout | undefined;
  private remote: RemoteAgents | undefined;
  private maxStreamAgeMs = 0;
  private rotationGraceMs = 70_000;
  private requireCertificate = false;
  private certificateRevoked: ((certificate: CertificateNames) => boolean) | undefined;
  private rotationWaitMs = 10_000;
  /** Agents whose stream here ended by rotation, until when (ms) they are expected back. */
  private readonly rotatedAway = new Map<string, number>();
  private version = 0;
  /** Paths of each agent's last inventory that contradicted an established LU identity (never kept as paths). */
  private readonly conflicts = new Map<string, readonly ConflictingClaim[]>();

  constructor(private readonly options: AgentRegistryOptions) {}

  /** Changes whenever a session opens or closes here (lets periodic work skip a comparison of all sessions). */
  get sessionsVersion(): number {
    return this.version;
  }

  /** Heartbeat interval told to agents (ms). */
  get heartbeatMs(): number {
    return this.options.heartbeatMs;
  }

  /** True when AgentService must refuse agents without a verified client certificate. */
  get requireAgentCertificate(): boolean {
    return this.requireCertificate;
  }

  /** True when the certificate with these names is revoked (see RegistrySettings). */
  isCertificateRevoked(certificate: CertificateNames): boolean {
    return this.certificateRevoked?.(certificate) ?? false;
  }

  /** Current maximum stream age, ms (0 = no rotation). */
  get maxStreamAge(): number {
    return this.maxStreamAgeMs;
  }

  /** Applies multi-instance settings (shared inventory, rotation, agent certificates); fields left out stay. */
  configure(settings: RegistrySettings): void {
    if ('remote' in settings) this.remote = settings.remote;
    if (settings.maxStreamAgeMs !== undefined) {
      if (!(settings.maxStreamAgeMs >= 0))
        throw new Error(`invalid maxStreamAgeMs: ${settings.maxStreamAgeMs}`);
      this.maxStreamAgeMs = settings.maxStreamAgeMs;
      for (const session of this.sessions()) session.maxAgeMs = this.jitteredMaxAge();
    }
    if (settings.rotationGraceMs !== undefined) this.rotationGraceMs = settings.rotationGraceMs;
    if (settings.rotationWaitMs !== undefined) this.rotationWaitMs = settings.rotationWaitMs;
    if (settings.requireAgentCertificate !== undefined)
      this.requireCertificate = settings.requireAgentCertificate;
    if (settings.isCertificateRevoked !== undefined)
      this.certificateRevoked = settings.isCertificateRevoked;
    if (this.livenessTimer !== undefined) {
      // The check interval depends on the maximum age.
      this.stopLivenessChecks();
      this.startLivenessChecks();
    }
  }

  /** Calls `listener` on every session event; returns an unsubscribe function. Listeners must not throw. */
  onChange(listener: (event: RegistryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: RegistryEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.options.log.error({ err, event: event.kind }, 'registry listener failed');
      }
    }
  }

  private jitteredMaxAge(): number {
    if (this.maxStreamAgeMs <= 0) return Number.POSITIVE_INFINITY;
    return this.maxStreamAgeMs * (0.9 + Math.random() * 0.1); // never later than the configured maximum
  }

  /** Opens a session for `hello.agent_id`, replacing (and ending) any current one. */
  open(hello: Hello, link: AgentLinkKind = 'stream'): AgentSession {
    const session = new AgentSession(hello, this.options.outboxCapacity, link);
    session.maxAgeMs = this.jitteredMaxAge();
    this.version += 1;
    this.rotatedAway.delete(hello.agentId);
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
        link,
      });
    } else {
      record.hello = hello;
      record.session = session;
      record.lastSessionId = session.sessionId;
      record.connectedAt = session.connectedAt;
      record.lastHeartbeatAt = undefined;
      record.link = link;
    }
    this.emit({ kind: 'opened', session });
    if (previous !== undefined) {
      this.options.log.warn(
        {
          agentId: hello.agentId,
          oldSessionId: previous.sessionId,
          sessionId: session.sessionId,
          inFlight: previous.inFlight,
        },
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
    if (session.isEnded) return;
    this.version += 1;
    const record = this.records.get(session.agentId);
    const current = record?.session === session;
    if (current && record !== undefined) record.session = undefined;
    if (current && session.rotating)
      this.rotatedAway.set(session.agentId, Date.now() + this.rotationWaitMs);
    session.end(reason, streamError);
    this.emit({ kind: 'closed', session, current });
  }

  /**
   * Replaces the agent's paths with `paths` when `session` is current. They are kept {@link compactPaths
   * compacted}: parts that many agents' paths have in common are stored once.
   */
  setInventory(session: AgentSession, paths: readonly Path[]): void {
    const record = this.records.get(session.agentId);
    if (record?.session !== session) return;
    const compact = compactPaths(paths);
    record.paths = compact;
    this.emit({ kind: 'inventory', session, paths: compact });
  }

  /** Replaces the quarantined claims of `agentId`'s latest inventory (see inventory-screen.ts). */
  quarantine(agentId: string, claims: readonly ConflictingClaim[]): void {
    if (claims.length === 0) this.conflicts.delete(agentId);
    else this.conflicts.set(agentId, claims);
  }

  /** Every quarantined claim, by agent id (for the audit). */
  quarantined(): ReadonlyMap<string, readonly ConflictingClaim[]> {
    return this.conflicts;
  }

  /** Records a heartbeat (and liveness) for `session`. */
  heartbeat(session: AgentSession, _heartbeat: Heartbeat): void {
    session.lastHeartbeatAt = new Date();
    const record = this.records.get(session.agentId);
    if (record?.session === session) record.lastHeartbeatAt = session.lastHeartbeatAt;
    this.emit({ kind: 'heartbeat', session });
  }

  /** The open session of `agentId`, if any. */
  session(agentId: string): AgentSession | undefined {
    return this.records.get(agentId)?.session;
  }

  /**
   * What is known about `agentId`, connected or not: this instance's record while it holds the stream, else
   * the shared inventory's when another instance holds it (or knows it better), else whichever exists.
   */
  get(agentId: string): AgentRecord | undefined {
    return pick(this.records.get(agentId), this.remote?.get(agentId));
  }

  /** Every agent known here or (with a shared inventory) anywhere in the fleet, sorted by id. */
  list(): AgentRecord[] {
    if (this.remote === undefined) {
      return [...this.records.values()].sort((a, b) => compare(a.hello.agentId, b.hello.agentId));
    }
    const merged = new Map<string, AgentRecord>();
    for (const record of this.remote.list()) merged.set(record.hello.agentId, record);
    for (const [agentId, local] of this.records) {
      const chosen = pick(local, merged.get(agentId));
      if (chosen !== undefined) merged.set(agentId, chosen);
    }
    return [...merged.values()].sort((a, b) => compare(a.hello.agentId, b.hello.agentId));
  }

  /** This instance's own records (no shared inventory), sorted by id. */
  localRecords(): AgentRecord[] {
    return [...this.records.values()].sort((a, b) => compare(a.hello.agentId, b.hello.agentId));
  }

  /** This instance's own record of `agentId` (no shared inventory), if any. */
  localRecord(agentId: string): AgentRecord | undefined {
    return this.records.get(agentId);
  }

  /** Open sessions on this instance, in no particular order (the periodic checks and presence sync need none). */
  sessions(): AgentSession[] {
    const open: AgentSession[] = [];
    for (const record of this.records.values())
      if (record.session !== undefined) open.push(record.session);
    return open;
  }

  /**
   * Waits while `agentId`'s session here is rotating (polling every 20 ms): resolves once it has a session here
   * that is not rotating, once the shared inventory shows it connected to another instance, or after
   * `timeoutMs` (callers then look again and answer what they find). Rejects with the signal's reason.
   */
  /**
   * True while `agentId`'s stream here is being rotated, or ended by a rotation moments ago and the agent has
   * not come back (here, or elsewhere per the shared inventory): commands for it should wait, not fail.
   */
  isRotating(agentId: string): boolean {
    const session = this.records.get(agentId)?.session;
    if (session !== undefined) return session.rotating;
    const until = this.rotatedAway.get(agentId);
    if (until === undefined) return false;
    if (Date.now() > until || this.remote?.get(agentId)?.remoteInstance !== undefined) {
      this.rotatedAway.delete(agentId);
      return false;
    }
    return true;
  }

  async waitWhileRotating(
    agentId: string,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<void> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      options.signal?.throwIfAborted();
      if (!this.isRotating(agentId) || Date.now() >= deadline) return;
      await delay(20, options.signal);
    }
  }

  /**
   * Rotates streams past their maximum age, and closes rotating ones past the grace (their in-flight commands
   * become UNKNOWN). Returns how many rotations began.
   */
  checkStreamAge(nowMs = Date.now()): number {
    let started = 0;
    for (const session of this.sessions()) {
      if (session.rotatingSinceMs !== undefined) {
        if (nowMs - session.rotatingSinceMs > this.rotationGraceMs) {
          this.options.log.warn(
            {
              agentId: session.agentId,
              sessionId: session.sessionId,
              inFlight: session.inFlight,
            },
            'stream rotation not finished within its grace: closing the session',
          );
          this.close(session, `stream rotation did not finish within ${this.rotationGraceMs} ms`);
        } else if (
          !session.reconnectSent &&
          nowMs - session.rotatingSinceMs > this.rotationGraceMs / 2
        ) {
          // Commands that keep running: let the agent finish them itself (it drains before it half-closes).
          session.sendReconnect(
            'stream rotation: maximum stream age reached, reconnect to any instance',
          );
        }
        continue;
      }
      const ageMs = nowMs - session.connectedAt.getTime();
      if (ageMs < session.maxAgeMs) continue;
      started += 1;
      this.options.log.info(
        {
          agentId: session.agentId,
          sessionId: session.sessionId,
          ageMs,
          inFlight: session.inFlight,
        },
        'stream rotation: maximum age reached',
      );
      session.startRotation(nowMs);
    }
    return started;
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
        {
          agentId: session.agentId,
          sessionId: session.sessionId,
          silentMs,
          inFlight: session.inFlight,
        },
        'agent silent too long: dropping its session',
      );
      this.close(
        session,
        `agent sent nothing for ${silentMs} ms`,
        new ServerError(
          Status.UNAVAILABLE,
          `no heartbeat for ${silentMs} ms (limit ${limitMs} ms)`,
        ),
      );
    }
    return dropped;
  }

  /**
   * Starts the periodic liveness and stream-age checks (every half heartbeat interval, and at least every
   * tenth of the maximum stream age; the timer does not hold the process).
   */
  startLivenessChecks(): void {
    if (this.livenessTimer !== undefined) return;
    const ageTick = this.maxStreamAgeMs > 0 ? this.maxStreamAgeMs / 10 : Number.POSITIVE_INFINITY;
    this.livenessTimer = setInterval(
      () => {
        this.checkLiveness();
        this.checkStreamAge();
      },
      Math.max(25, Math.min(this.options.heartbeatMs / 2, ageTick)),
    );
    this.livenessTimer.unref();
  }

  /** Stops the liveness check. */
  stopLivenessChecks(): void {
    clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
  }
}

/** The record to show: a local one holding the stream, else a remote one holding it, else the newer one. */
function pick(
  local: AgentRecord | undefined,
  remote: AgentRecord | undefined,
): AgentRecord | undefined {
  if (local?.session !== undefined) return local;
  if (remote?.remoteInstance !== undefined) return remote;
  if (local === undefined) return remote;
  if (remote === undefined) return local;
  return remote.connectedAt.getTime() > local.connectedAt.getTime() ? remote : local;
}

/** Plain string order (not locale): ids sort the same everywhere. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---- compact inventories ----------------------------------------------------------------------------------------
//
// Every connected agent's paths stay in memory (and, with a shared inventory, on every instance). Decoded as
// they arrive, each path carries its own copy of what is the same for every host that sees the LU (designators,
// INQUIRY strings) or has the same device profile (capabilities), and its byte fields are views into 8 KiB
// Buffer pool slabs that stay alive as long as any view does. compactPaths keeps one frozen copy of those parts
// (byte fields copied out of the pool) shared by every path that has them; per path remain only what differs
// (path, initiator port, relative target port, online) and an object of its own.

/** Interned values, at most this many of each kind (a fleet has far fewer LUs and profiles); then restarted. */
const INTERN_LIMIT = 50_000;
const internedStrings = new Map<string, string>();
const internedDesignators = new Map<string, readonly Designator[]>();
const internedCapabilities = new Map<string, DeviceCapabilities>();

function internIn<T>(table: Map<string, T>, key: string, make: () => T): T {
  const found = table.get(key);
  if (found !== undefined) return found;
  if (table.size >= INTERN_LIMIT) table.clear();
  const value = make();
  table.set(key, value);
  return value;
}

/** `text` as one shared string (protobuf decoding makes a new string for every message). */
function internString(text: string): string {
  return text === '' ? text : internIn(internedStrings, text, () => text);
}

/** A Buffer of its own, exactly `bytes` long (not a view into a pool slab). */
function ownBytes(bytes: Buffer): Buffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return Buffer.from(copy.buffer, 0, copy.length);
}

function designatorKey(d: Designator): string {
  return `${d.codeSet},${d.association},${d.designatorType},${d.protocolId ?? ''},${d.value.toString('hex')},${d.display}`;
}

function internDesignators(designators: readonly Designator[]): Designator[] {
  if (designators.length === 0) return designators as Designator[];
  const key = designators.map(designatorKey).join('|');
  return internIn(internedDesignators, key, () =>
    Object.freeze(
      designators.map((d) =>
        Object.freeze({ ...d, value: ownBytes(d.value), display: internString(d.display) }),
      ),
    ),
  ) as Designator[];
}

function internCapabilities(c: DeviceCapabilities | undefined): DeviceCapabilities | undefined {
  if (c === undefined) return undefined;
  const key = JSON.stringify(c);
  return internIn(internedCapabilities, key, () =>
    Object.freeze({
      ...c,
      profile: internString(c.profile),
      proutActions: Object.freeze([...c.proutActions]) as DeviceCapabilities['proutActions'],
      prinActions: Object.freeze([...c.prinActions]) as DeviceCapabilities['prinActions'],
      types: Object.freeze([...c.types]) as DeviceCapabilities['types'],
    }),
  );
}

function compactTransportId(t: TransportId | undefined): TransportId | undefined {
  if (t?.id?.$case !== 'raw') return t;
  return { ...t, id: { $case: 'raw', value: ownBytes(t.id.value) } };
}

/**
 * `paths` with what many agents' paths have in common stored once (see above): equal to the input field by
 * field; the shared parts (designators, capabilities) are frozen, so code that would modify them fails loudly.
 */
export function compactPaths(paths: readonly Path[]): Path[] {
  return paths.map((p) => ({
    ...p,
    path: internString(p.path),
    vendor: internString(p.vendor),
    product: internString(p.product),
    revision: internString(p.revision),
    serial: internString(p.serial),
    luId: internString(p.luId),
    loaderId: internString(p.loaderId),
    designators: internDesignators(p.designators),
    initiatorPort: compactTransportId(p.initiatorPort),
    capabilities: internCapabilities(p.capabilities),
  }));
}
