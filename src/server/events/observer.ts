import type { Logger } from 'pino';
import { delay } from '../../common/delay.js';
import {
  ChangeCause,
  FindingEvent,
  PrState,
  type FleetEvent,
} from '../../gen/prfleet/v1/events.js';
import {
  findingKindToJSON,
  FindingKind,
  severityToJSON,
  type Finding,
} from '../../gen/prfleet/v1/fleet.js';
import type { AgentRegistry } from '../agents/index.js';
import { pathsByLu, toLogicalUnit, type FleetPath } from '../devices.js';
import { analyzeUnit } from '../fleet/analyze.js';
import type { KeyIndex } from '../fleet/key-index.js';
import { CommandLimiter } from '../fleet/limiter.js';
import { KeyedTurns } from '../../common/keyed-turns.js';
import { Semaphore } from '../../common/semaphore.js';
import { observeUnit, pathOnline, type LuObservation, type LuState } from '../fleet/observe.js';
import { loaderFindings, unitFindings, type LoaderDigest } from '../fleet/report.js';
import type { SelectedUnit } from '../fleet/selection.js';
import type { CommandRouter } from '../router.js';
import { readerOf } from '../commands/pipeline.js';
import type { SendRead } from '../commands/types.js';
import type { LuSerializer } from '../lu-serializer.js';
import { versionOf, type ObservedLu, type ObservedStates } from './observed.js';
import type { AuditFindings } from '../fleet/deps.js';
import { findingEvents, prChangeEvents } from './pr-change.js';
import type { NewFleetEvent } from './types.js';

/** How the periodic observation runs (PRFLEET_OBSERVE_*). */
export interface ObserverSettings {
  /** One round over every LU takes this long, LUs spread evenly over it; 0 = no periodic rounds. */
  readonly intervalMs: number;
  /** LUs read at once (each is one or two PRIN commands). */
  readonly concurrency: number;
  /** Device timeout per read. */
  readonly timeoutMs: number;
}

/** Defaults: a round every 5 minutes, 8 LUs at a time, 10 s per read. */
export const OBSERVER_DEFAULTS: ObserverSettings = {
  intervalMs: 300_000,
  concurrency: 8,
  timeoutMs: 10_000,
};

/** How soon a round that found no LU is repeated, ms. */
const EMPTY_ROUND_RETRY_MS = 5_000;

/** One I_T nexus as prfleet names it: an agent and a device node. */
export interface Nexus {
  readonly agentId: string;
  readonly path: string;
}

/** Findings the light observation can judge from one path's READ KEYS + READ RESERVATION. */
const OBSERVED_FINDINGS = new Set<FindingKind>([
  FindingKind.FINDING_KIND_UNKNOWN_KEY,
  FindingKind.FINDING_KIND_REVOKED_KEY,
  FindingKind.FINDING_KIND_HOLDER_OFFLINE,
  FindingKind.FINDING_KIND_LOADER_DEADLOCK,
]);
const OBSERVED_NAMES = new Set([...OBSERVED_FINDINGS].map((k) => findingKindToJSON(k)));

/** The scope key of a loader's own findings in the observed states (LU ids never start with it). */
export const loaderScope = (loaderId: string) => `loader:${loaderId}`;

/** What the observer needs. */
export interface ObserverDeps {
  readonly registry: AgentRegistry;
  readonly router: CommandRouter;
  readonly observed: ObservedStates;
  /** The key registry (durable store), for owners and key findings; undefined on the memory store. */
  readonly keys?: (() => Promise<KeyIndex>) | undefined;
  readonly log: Logger;
  readonly settings: ObserverSettings;
  /** PROUT turns per LU (the command pipeline's): reads take the LU's turn. @default none */
  readonly turns?: LuSerializer | undefined;
  /** Called with the events each observation recorded. */
  readonly onEvents?: ((events: readonly FleetEvent[]) => void) | undefined;
}

export function findingToEvent(f: Finding): FindingEvent {
  return FindingEvent.fromPartial({
    findingKind: findingKindToJSON(f.kind),
    severity: severityToJSON(f.severity),
    message: f.message,
    suggestedAction: f.suggestedAction,
    key: f.key,
    agentId: f.agentId,
    path: f.path,
  });
}

function prStateOf(s: LuState): PrState {
  return PrState.fromPartial({
    generation: s.generation,
    keys: [...s.keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    reserved: s.reserved,
    holderKey: s.holderKey,
    type: s.reserved ? s.type : 0,
  });
}

/**
 * Watches every LU's persistent-reservation state: a light read (READ KEYS + READ RESERVATION, or READ FULL
 * STATUS, through one online path) of each LU per round, spread over the interval with bounded concurrency,
 * and on demand after a PROUT or a unit attention. Each read is compared with the LU's last observed state
 * (shared by the instances through the store): a difference is recorded as RESERVATION_CHANGED /
 * REGISTRATIONS_CHANGED, findings it can judge as FINDING_RAISED / FINDING_CLEARED. With several instances
 * each observes the LUs whose chosen path's agent it holds; the compare-and-set records a change once.
 */
export class LuObserver {
  private readonly limiter: CommandLimiter;
  private readonly pending = new Map<string, { cause: ChangeCause; actor: string }>();
  /**
   * Per LU, the read in flight: reads of one LU run one after another, so their compare-and-sets land in the
   * order the reads were sent (an older read finishing last would otherwise record the state it saw as current).
   */
  private readonly reading = new KeyedTurns();
  /** Per LU, the nexus to read through (see poke); one entry per LU prfleet sent a PROUT to. */
  private readonly preferred = new Map<string, Nexus>();
  private readonly running = new Set<Promise<unknown>>();
  private readonly stop = new AbortController();
  private loop: Promise<void> | undefined;
  /** LUs read at once (settings.concurrency). */
  private readonly slots: Semaphore;
  private keyCache: { at: number; index: Promise<KeyIndex> } | undefined;
  /** LUs this instance has checked for a baseline (see baselineNewUnits). */
  private readonly baselined = new Set<string>();
  private stopListening: (() => void) | undefined;
  private baselineSoon: NodeJS.Timeout | undefined;

  private readonly reads: SendRead;

  constructor(private readonly deps: ObserverDeps) {
    this.reads = readerOf(deps.router);
    this.limiter = new CommandLimiter(Math.max(2, deps.settings.concurrency * 2), 2);
    this.slots = new Semaphore(Math.max(1, deps.settings.concurrency));
  }

  /** Starts the periodic rounds (when intervalMs > 0). */
  start(): void {
    if (this.deps.settings.intervalMs <= 0 || this.loop !== undefined) return;
    this.stopListening = this.deps.registry.onChange((event) => {
      if (event.kind === 'opened' || event.kind === 'inventory') this.scheduleBaselines();
    });
    this.scheduleBaselines();
    this.loop = this.rounds().catch((err: unknown) => {
      if (!this.stop.signal.aborted) this.deps.log.error({ err }, 'events: observation stopped');
    });
  }

  /** Stops rounds and waits for reads in flight. */
  async close(): Promise<void> {
    this.stop.abort();
    this.stopListening?.();
    if (this.baselineSoon !== undefined) clearTimeout(this.baselineSoon);
    await this.loop;
    await Promise.allSettled([...this.running]);
  }

  /**
   * Observe `luId` soon (after a PROUT or a unit attention), reading through `via`: the nexus that sent the PROUT
   * or met the unit attention, which has no news pending from it, so the read takes no other nexus's unit
   * attention (a preempted host meets its REGISTRATIONS PREEMPTED itself). Later reads of the LU prefer that
   * nexus too. Requests close together make one read. Does nothing while the observation is off (intervalMs 0).
   */
  poke(luId: string, cause: ChangeCause, actor: string, via?: Nexus): void {
    // Off (interval 0) means no reads at all: tests and benchmarks see only the commands they send.
    if (this.deps.settings.intervalMs <= 0 || this.stop.signal.aborted || luId === '') return;
    if (via !== undefined) this.preferred.set(luId, via);
    if (this.pending.has(luId)) return;
    this.pending.set(luId, { cause, actor });
    // A short pause lets a burst (a PREEMPT's unit attentions on several nexuses) settle into one read.
    const work = delay(100, this.stop.signal)
      .then(() => {
        if (this.stop.signal.aborted) return [];
        const why = this.pending.get(luId) ?? { cause, actor };
        this.pending.delete(luId);
        return this.inTurn(luId, () => this.observe(luId, why.cause, why.actor));
      })
      .catch((err: unknown) => this.deps.log.warn({ err, luId }, 'events: observation failed'));
    this.track(work);
  }

  /** Inventories arrive in bursts (every agent at start-up): one sweep for the burst. */
  private scheduleBaselines(): void {
    if (this.baselineSoon !== undefined || this.stop.signal.aborted) return;
    this.baselineSoon = setTimeout(() => {
      this.baselineSoon = undefined;
      this.track(
        this.baselineNewUnits().catch((err: unknown) =>
          this.deps.log.warn({ err }, 'events: baseline observation failed'),
        ),
      );
    }, 100);
    this.baselineSoon.unref();
  }

  /**
   * Reads every LU that appeared here and was never observed (by any instance: the state is in the store) at
   * once instead of at its place in the round: an LU's first observation is only a baseline, so a change made
   * before it (a RESERVE and a PREEMPT minutes after the LU appeared, say) would otherwise never be told.
   */
  private async baselineNewUnits(): Promise<void> {
    const fresh = [...pathsByLu(this.deps.registry)]
      .filter(
        ([luId, paths]) => !this.baselined.has(luId) && this.pathFor(luId, paths) !== undefined,
      )
      .map(([luId]) => luId);
    for (const luId of fresh) this.baselined.add(luId);
    const standing = new Set(
      (await this.deps.observed.list(fresh))
        .filter((o) => o.state !== undefined)
        .map((o) => o.luId),
    );
    for (const luId of fresh) {
      if (this.stop.signal.aborted) return;
      if (standing.has(luId)) continue;
      await this.readInBackground(luId);
    }
  }

  /** Starts one observation of `luId` once a slot is free (at most `concurrency` reads in flight). */
  private async readInBackground(luId: string): Promise<void> {
    await this.withSlot(async () => undefined);
    this.track(
      this.observeInTurn(luId).catch((err: unknown) =>
        this.deps.log.debug({ err, luId }, 'events: observation failed'),
      ),
    );
  }

  private track(work: Promise<unknown>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }

  /** Runs `read` after the LU's read in flight (if any), within a slot. */
  private inTurn<T>(luId: string, read: () => Promise<T>): Promise<T> {
    return this.reading.run(luId, () => this.withSlot(read));
  }

  private observeInTurn(luId: string): Promise<FleetEvent[]> {
    return this.inTurn(luId, () =>
      this.observe(luId, ChangeCause.CHANGE_CAUSE_OBSERVATION, 'observation'),
    );
  }

  private async withSlot<T>(fn: () => Promise<T>): Promise<T> {
    await this.slots.acquire();
    try {
      return await fn();
    } finally {
      this.slots.release();
    }
  }

  private keys(): Promise<KeyIndex> | undefined {
    if (this.deps.keys === undefined) return undefined;
    // One registry load per few seconds, not per LU.
    if (this.keyCache === undefined || Date.now() - this.keyCache.at > 5_000) {
      const index = this.deps.keys();
      index.catch(() => (this.keyCache = undefined));
      this.keyCache = { at: Date.now(), index };
    }
    return this.keyCache.index;
  }

  /**
   * The path to read `luId` through: the nexus prfleet last sent a PROUT through (or that last met a unit
   * attention), when it is online and its agent holds its stream here; else the first such path.
   */
  private pathFor(luId: string, paths: readonly FleetPath[]): FleetPath | undefined {
    const usable = (p: FleetPath) =>
      pathOnline(p) && this.deps.registry.session(p.agent.hello.agentId) !== undefined;
    const via = this.preferred.get(luId);
    const chosen =
      via === undefined
        ? undefined
        : paths.find((p) => p.agent.hello.agentId === via.agentId && p.path.path === via.path);
    return chosen !== undefined && usable(chosen) ? chosen : paths.find(usable);
  }

  private async rounds(): Promise<void> {
    const { signal } = this.stop;
    while (!signal.aborted) {
      const started = Date.now();
      const units = [...pathsByLu(this.deps.registry)]
        .filter(([luId, paths]) => this.pathFor(luId, paths) !== undefined)
        .map(([luId]) => luId)
        .sort();
      const gap = this.deps.settings.intervalMs / Math.max(1, units.length);
      for (const [i, luId] of units.entries()) {
        const wait = started + i * gap - Date.now();
        if (wait > 0) await delay(wait, signal);
        if (signal.aborted) return;
        await this.readInBackground(luId);
      }
      // Nothing to read yet (a server starts before its agents connect): look again soon, not a round later.
      const rest =
        units.length === 0
          ? Math.min(EMPTY_ROUND_RETRY_MS, this.deps.settings.intervalMs)
          : started + this.deps.settings.intervalMs - Date.now();
      await delay(Math.max(rest, 100), signal);
    }
  }

  /**
   * Reads `luId` once and records what changed since it was last observed; returns the events recorded
   * (none when nothing changed, the LU could not be read, or another instance recorded the same change).
   */
  async observe(luId: string, cause: ChangeCause, actor: string): Promise<FleetEvent[]> {
    const read = () => this.read(luId);
    // In the LU's turn, like a PROUT's precondition read: no PROUT of this server is in flight meanwhile, so the
    // path is chosen after the last PROUT's nexus is known, and the read cannot race a PREEMPT of its nexus.
    const obs = await (this.deps.turns === undefined ? read() : this.deps.turns.run(luId, read));
    if (obs?.state === undefined) return [];
    const unit = obs.unit;
    const keys = await this.keys();
    const state = prStateOf(obs.state);
    const agents = {
      isConnected: (id: string) =>
        this.deps.registry.get(id)?.session !== undefined ||
        this.deps.registry.get(id)?.remoteInstance !== undefined,
      isKnown: (id: string) => this.deps.registry.get(id) !== undefined,
    };
    const findings =
      keys === undefined
        ? undefined
        : unitFindings(obs, analyzeUnit(obs, keys), keys, agents, undefined)
            .filter((f) => OBSERVED_FINDINGS.has(f.kind))
            .map(findingToEvent);
    const ownerOf = (key: bigint) => keys?.record(key)?.agentId ?? '';
    const { events, wrote } = await this.record(luId, unit.loaderId, state, findings, {
      cause,
      actor,
      ownerOf,
    });
    // The loader's own findings can only change when one of its LUs did.
    if (unit.loaderId !== '' && wrote)
      events.push(...(await this.recordLoader(unit.loaderId, ownerOf, actor)));
    return events;
  }

  /** One light read of `luId` through its path (see pathFor); undefined when no path can be read here. */
  private async read(luId: string): Promise<LuObservation | undefined> {
    const paths = pathsByLu(this.deps.registry).get(luId);
    const path = paths === undefined ? undefined : this.pathFor(luId, paths);
    if (paths === undefined || path === undefined) return undefined;
    const unit: SelectedUnit = {
      luId,
      loaderId: unitOf(luId, paths).loaderId,
      unit: toLogicalUnit(luId, [path]),
      paths: [path],
    };
    return observeUnit(unit, {
      read: this.reads,
      limiter: this.limiter,
      timeoutMs: this.deps.settings.timeoutMs,
      signal: this.stop.signal,
    });
  }

  /** Compare-and-set of one LU's observed state, retried once when another writer got there first. */
  private async record(
    luId: string,
    loaderId: string,
    state: PrState | undefined,
    findings: readonly FindingEvent[] | undefined,
    why: { cause: ChangeCause; actor: string; ownerOf: (key: bigint) => string },
  ): Promise<{ events: FleetEvent[]; wrote: boolean }> {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const { observed, version } = await this.deps.observed.get(luId);
      // Findings this read cannot judge stay as an audit left them.
      const kept = (observed?.findings ?? []).filter((f) => !OBSERVED_NAMES.has(f.findingKind));
      const nextFindings =
        findings === undefined ? (observed?.findings ?? []) : [...kept, ...findings];
      const events: NewFleetEvent[] = [];
      // The first observation of an LU is its baseline: nothing to compare with, so no change event.
      if (state !== undefined && observed?.state !== undefined)
        events.push(...prChangeEvents(observed.state, state, { luId, loaderId, ...why }));
      events.push(
        ...findingEvents(observed?.findings ?? [], nextFindings, {
          luId,
          loaderId,
          actor: why.actor,
        }),
      );
      const next: ObservedLu = {
        luId,
        state: state ?? observed?.state,
        findings: nextFindings,
        observedAt: new Date(),
      };
      // Unchanged: no write (10,000 LUs per round must not mean 10,000 writes).
      if (events.length === 0 && observed !== undefined && sameState(observed.state, next.state))
        return { events: [], wrote: false };
      const recorded = await this.deps.observed.update(version, next, events);
      if (recorded !== undefined) {
        if (recorded.length > 0) this.deps.onEvents?.(recorded);
        return { events: recorded, wrote: true };
      }
    }
    return { events: [], wrote: false };
  }

  /**
   * An audit's findings replace the standing ones of every LU and loader it covered (all kinds: an audit reads
   * every path); the differences are recorded as FINDING_RAISED / FINDING_CLEARED. Runs after the audit, in
   * the background, one LU at a time, writing only where something changed. A scope that cannot be written is
   * logged and skipped: the others are still recorded (one failed write must not lose the rest of the audit).
   */
  async recordAudit(audit: AuditFindings): Promise<FleetEvent[]> {
    const scopes = new Map<string, { loaderId: string; findings: FindingEvent[] }>();
    for (const u of audit.units) {
      scopes.set(u.luId, { loaderId: u.loaderId, findings: u.findings.map(findingToEvent) });
      if (u.loaderId !== '' && !scopes.has(loaderScope(u.loaderId)))
        scopes.set(loaderScope(u.loaderId), { loaderId: u.loaderId, findings: [] });
    }
    for (const f of audit.loaderFindings) {
      const scope = scopes.get(loaderScope(f.loaderId));
      if (scope !== undefined) scope.findings.push(findingToEvent(f));
    }
    const standing = new Map(
      (await this.deps.observed.list([...scopes.keys()])).map((o) => [o.luId, o]),
    );
    const recorded: FleetEvent[] = [];
    for (const [scope, { loaderId, findings }] of scopes) {
      const observed = standing.get(scope);
      const events = findingEvents(observed?.findings ?? [], findings, {
        luId: scope,
        loaderId,
        actor: 'audit',
      });
      if (events.length === 0) continue;
      const next: ObservedLu = {
        luId: scope,
        state: observed?.state,
        findings,
        observedAt: new Date(),
      };
      try {
        const done = await this.deps.observed.update(versionOf(observed), next, events);
        if (done !== undefined) recorded.push(...done);
      } catch (err) {
        this.deps.log.error({ err, luId: scope }, 'events: recording an audit finding failed');
      }
    }
    if (recorded.length > 0) this.deps.onEvents?.(recorded);
    return recorded;
  }

  /** Loader-level findings (deadlock) over the loader's LUs as last observed. */
  private async recordLoader(
    loaderId: string,
    ownerOf: (key: bigint) => string,
    actor: string,
  ): Promise<FleetEvent[]> {
    const members = loaderMembers(pathsByLu(this.deps.registry)).get(loaderId) ?? [];
    const observed = new Map(
      (await this.deps.observed.list(members.map(([id]) => id))).map((o) => [o.luId, o]),
    );
    const digests: LoaderDigest[] = members.flatMap(([luId, paths]) => {
      const s = observed.get(luId)?.state;
      if (s === undefined) return [];
      return [
        {
          luId,
          loaderId,
          peripheralDeviceType: unitOf(luId, paths).peripheralDeviceType,
          reserved: s.reserved,
          holderKey: s.holderKey,
          holderAgentId: s.reserved ? ownerOf(s.holderKey) : '',
        },
      ];
    });
    const findings = loaderFindings(digests).map(findingToEvent);
    const { events } = await this.record(loaderScope(loaderId), loaderId, undefined, findings, {
      cause: ChangeCause.CHANGE_CAUSE_OBSERVATION,
      actor,
      ownerOf,
    });
    return events;
  }
}

/** Each loader's LUs, per LU grouping (rebuilt only when the inventories change: pathsByLu keeps its map). */
const membersByGrouping = new WeakMap<
  ReadonlyMap<string, readonly FleetPath[]>,
  Map<string, [string, readonly FleetPath[]][]>
>();
function loaderMembers(
  groups: ReadonlyMap<string, readonly FleetPath[]>,
): Map<string, [string, readonly FleetPath[]][]> {
  let members = membersByGrouping.get(groups);
  if (members === undefined) {
    members = new Map();
    for (const [luId, paths] of groups) {
      const loaderId = unitOf(luId, paths).loaderId;
      let list = members.get(loaderId);
      if (list === undefined) members.set(loaderId, (list = []));
      list.push([luId, paths]);
    }
    membersByGrouping.set(groups, members);
  }
  return members;
}

/** What the observation reads of an LU as ListDevices shows it. */
type UnitHead = Pick<ReturnType<typeof toLogicalUnit>, 'loaderId' | 'peripheralDeviceType'>;

/**
 * The LU's loader and device type as ListDevices shows them, computed once per path list (paths lists are
 * replaced, never changed). Only these two are kept: the whole unit has an entry per path, per LU, for as long
 * as its path list lives.
 */
const units = new WeakMap<readonly FleetPath[], UnitHead>();
function unitOf(luId: string, paths: readonly FleetPath[]): UnitHead {
  let unit = units.get(paths);
  if (unit === undefined) {
    const { loaderId, peripheralDeviceType } = toLogicalUnit(luId, paths);
    units.set(paths, (unit = { loaderId, peripheralDeviceType }));
  }
  return unit;
}

function sameState(a: PrState | undefined, b: PrState | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return JSON.stringify(PrState.toJSON(a)) === JSON.stringify(PrState.toJSON(b));
}
