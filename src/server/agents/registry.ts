import type { Logger } from 'pino';
import { ServerError, Status } from 'nice-grpc-common';
import type { Heartbeat, Hello } from '../../gen/prfleet/v1/agent.js';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import { systemClock, type Clock } from '../../common/clock.js';
import type { CertificateNames } from '../auth/revocation.js';
import type { ConflictingClaim } from './inventory-screen.js';
import { compactPaths } from './compact-paths.js';
import { RegistryEvents, type RegistryEvent } from './events.js';
import { AgentSession, type AgentLinkKind } from './link.js';
import { dropSilentSessions, PeriodicCheck } from './liveness.js';
import { byAgentId, pick, type AgentRecord, type RemoteAgents } from './records.js';
import { StreamRotation } from './rotation.js';

/**
 * Settings given at construction, or later through {@link AgentRegistry.configure}: the shared inventory reads
 * the registry, so multi-instance wiring (scale-out.ts) can only add it after the registry exists.
 */
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
export interface AgentRegistryOptions extends RegistrySettings {
  /** Heartbeat interval agents are told to keep. */
  readonly heartbeatMs: number;
  /** Sessions silent for more than heartbeatMs × this are dropped. */
  readonly missedHeartbeats: number;
  /** Commands queued or in flight per agent before AGENT_BUSY (also the outbox bound). */
  readonly outboxCapacity: number;
  /** Logger. */
  readonly log: Logger;
  /** Time of sessions, liveness and rotation (their checks run on its timers). @default systemClock */
  readonly clock?: Clock;
}

/**
 * Agents and their sessions, in this process: lookup (this instance's records merged with the shared
 * inventory's) and session events. A new session for an agent id replaces the old one (old link ended, its
 * in-flight commands UNKNOWN). Liveness (liveness.ts) and stream rotation (rotation.ts) run over its sessions.
 */
export class AgentRegistry {
  readonly log: Logger;
  private readonly clock: Clock;
  private readonly records = new Map<string, AgentRecord>();
  private readonly events: RegistryEvents;
  private readonly rotation: StreamRotation;
  private readonly checks: PeriodicCheck;
  private remote: RemoteAgents | undefined;
  private requireCertificate = false;
  private certificateRevoked: ((certificate: CertificateNames) => boolean) | undefined;
  private version = 0;
  /** Paths of each agent's last inventory that contradicted an established LU identity (never kept as paths). */
  private readonly conflicts = new Map<string, readonly ConflictingClaim[]>();

  constructor(private readonly options: AgentRegistryOptions) {
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.events = new RegistryEvents(options.log);
    this.rotation = new StreamRotation(this, this.clock);
    this.checks = new PeriodicCheck(
      () => {
        this.checkLiveness();
        this.checkStreamAge();
      },
      () => this.checkIntervalMs(),
      this.clock,
    );
    this.configure(options);
  }

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
    return this.rotation.maxStreamAge;
  }

  /** Applies multi-instance settings (shared inventory, rotation, agent certificates); fields left out stay. */
  configure(settings: RegistrySettings): void {
    if ('remote' in settings) this.remote = settings.remote;
    this.rotation.configure(settings);
    if (settings.requireAgentCertificate !== undefined)
      this.requireCertificate = settings.requireAgentCertificate;
    if (settings.isCertificateRevoked !== undefined)
      this.certificateRevoked = settings.isCertificateRevoked;
    this.checks.restart(); // the check interval depends on the maximum age
  }

  /** Calls `listener` on every session event; returns an unsubscribe function. Listeners must not throw. */
  onChange(listener: (event: RegistryEvent) => void): () => void {
    return this.events.on(listener);
  }

  /** Opens a session for `hello.agent_id`, replacing (and ending) any current one. */
  open(hello: Hello, link: AgentLinkKind = 'stream', certificate?: CertificateNames): AgentSession {
    const session = new AgentSession(
      hello,
      this.options.outboxCapacity,
      link,
      certificate,
      this.clock,
    );
    this.rotation.assignMaxAge(session);
    this.version += 1;
    this.rotation.opened(hello.agentId);
    const previous = this.records.get(hello.agentId)?.session;
    this.records.set(hello.agentId, this.recordOf(session));
    this.events.emit({ kind: 'opened', session });
    if (previous !== undefined) this.replace(previous, session);
    return session;
  }

  /** The agent's record for its new `session`: updated in place (callers may hold it), paths kept. */
  private recordOf(session: AgentSession): AgentRecord {
    const { hello, link } = session;
    const fields = {
      hello,
      session,
      lastSessionId: session.sessionId,
      connectedAt: session.connectedAt,
      lastHeartbeatAt: undefined,
      link,
    };
    const record = this.records.get(hello.agentId);
    return record === undefined ? { ...fields, paths: [] } : Object.assign(record, fields);
  }

  private replace(previous: AgentSession, session: AgentSession): void {
    this.log.warn(
      {
        agentId: session.agentId,
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

  /** Ends `session` (if still open) and marks its agent disconnected when it is the current one. */
  close(session: AgentSession, reason: string, streamError?: unknown): void {
    if (session.isEnded) return;
    this.version += 1;
    const record = this.records.get(session.agentId);
    const current = record?.session === session;
    if (current && record !== undefined) {
      record.session = undefined;
      this.rotation.closed(session);
    }
    session.end(reason, streamError);
    this.events.emit({ kind: 'closed', session, current });
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
    this.events.emit({ kind: 'inventory', session, paths: compact });
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
    const at = session.heartbeat();
    const record = this.records.get(session.agentId);
    if (record?.session === session) record.lastHeartbeatAt = at;
    this.events.emit({ kind: 'heartbeat', session });
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
    if (this.remote === undefined) return byAgentId(this.records.values());
    const merged = new Map<string, AgentRecord>();
    for (const record of this.remote.list()) merged.set(record.hello.agentId, record);
    for (const [agentId, local] of this.records) {
      const chosen = pick(local, merged.get(agentId));
      if (chosen !== undefined) merged.set(agentId, chosen);
    }
    return byAgentId(merged.values());
  }

  /** This instance's own records (no shared inventory), sorted by id. */
  localRecords(): AgentRecord[] {
    return byAgentId(this.records.values());
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

  /** True when the shared inventory shows `agentId` connected to another instance. */
  connectedElsewhere(agentId: string): boolean {
    return this.remote?.get(agentId)?.remoteInstance !== undefined;
  }

  /** See {@link StreamRotation.isRotating}. */
  isRotating(agentId: string): boolean {
    return this.rotation.isRotating(agentId);
  }

  /** See {@link StreamRotation.waitWhileRotating}. */
  waitWhileRotating(
    agentId: string,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<void> {
    return this.rotation.waitWhileRotating(agentId, options);
  }

  /** See {@link StreamRotation.check}. */
  checkStreamAge(): number {
    return this.rotation.check();
  }

  /** Drops sessions silent for more than heartbeatMs × missedHeartbeats; returns how many were dropped. */
  checkLiveness(): number {
    return dropSilentSessions(
      this,
      this.options.heartbeatMs * this.options.missedHeartbeats,
      this.clock.now(),
    );
  }

  /**
   * Starts the periodic liveness and stream-age checks (every half heartbeat interval, and at least every
   * tenth of the maximum stream age; the timer does not hold the process).
   */
  startLivenessChecks(): void {
    this.checks.start();
  }

  /** Stops the liveness check. */
  stopLivenessChecks(): void {
    this.checks.stop();
  }

  private checkIntervalMs(): number {
    const maxAge = this.rotation.maxStreamAge;
    const ageTick = maxAge > 0 ? maxAge / 10 : Number.POSITIVE_INFINITY;
    return Math.max(25, Math.min(this.options.heartbeatMs / 2, ageTick));
  }
}
