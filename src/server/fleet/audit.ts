import { setMaxListeners } from 'node:events';
import {
  AuditProgress,
  AuditResponse,
  AuditSummary,
  Finding,
  FindingCount,
  FindingKind,
  LogicalUnitReport,
  Reachability,
  Severity,
  type AuditRequest,
  findingKindToJSON,
} from '../../gen/prfleet/v1/fleet.js';
import type { ConflictingClaim } from '../agents/inventory-screen.js';
import { suggest } from './suggest.js';
import { msToDuration } from '../../common/command.js';
import { invalidArgument } from '../../common/errors.js';
import { AsyncQueue } from '../../common/async-queue.js';
import { DEFAULT_PAGE_BYTES } from '../pages.js';
import { analyzeUnit } from './analyze.js';
import type { FleetDeps } from './deps.js';
import { loadDesiredIndex, type DesiredIndex } from './desired.js';
import { loadKeyIndex, type KeyIndex } from './key-index.js';
import { CommandLimiter } from './limiter.js';
import { observeUnit, type LuObservation, type ReadContext } from './observe.js';
import { preventionFinding, probeSpc2, spc2Finding } from './holds.js';
import {
  buildReport,
  loaderFindings,
  unitFindings,
  type AgentLookup,
  type LoaderDigest,
} from './report.js';
import { auditElementFindings, readElementView, type ElementView } from './loaders.js';
import { isChanger, selectUnits, type SelectedUnit } from './selection.js';
import { requestedMs } from '../deadline.js';

/** Audit defaults. */
export const AUDIT_DEFAULTS = {
  /** Commands in flight over the whole audit. */
  maxConcurrency: 256,
  /** Commands in flight per agent (below the server's default agent queue capacity of 256). */
  maxPerAgent: 8,
  /** Device timeout per read, ms. */
  timeoutMs: 10_000,
  /** Progress events at most this often, ms. */
  progressMs: 250,
} as const;

function boundedInt(value: number, field: string, fallback: number, max: number): number {
  if (value === 0) return fallback;
  if (value > max) throw invalidArgument(field, `${value} is more than ${max}`);
  return value;
}

/** Holds other than a persistent reservation: an SPC-2 reservation (probed), a reported prevention. */
async function otherHolds(
  deps: FleetDeps,
  obs: LuObservation,
  ctx: ReadContext,
): Promise<Finding[]> {
  const out: Finding[] = [];
  const spc2 = await probeSpc2(obs, ctx);
  if (spc2 !== undefined) out.push(spc2Finding(obs, spc2));
  const prevented = deps.holds?.prevention(obs.unit.luId);
  if (prevented !== undefined) out.push(preventionFinding(obs, prevented));
  return out;
}

/** Looks agents up in the registry. */
export function agentLookup(deps: FleetDeps): AgentLookup {
  return {
    isConnected: (id) => deps.devices.session(id) !== undefined,
    isKnown: (id) => deps.devices.get(id) !== undefined,
  };
}

/** An audit's limits, from its request. */
export interface AuditSettings {
  readonly maxConcurrency: number;
  readonly maxPerAgent: number;
  readonly timeoutMs: number;
  readonly progressMs: number;
}

/** The request's limits with defaults filled in; INVALID_ARGUMENT for a bad one. */
export function auditSettings(request: AuditRequest): AuditSettings {
  const maxConcurrency = boundedInt(
    request.maxConcurrency,
    'max_concurrency',
    AUDIT_DEFAULTS.maxConcurrency,
    100_000,
  );
  const maxPerAgent = boundedInt(
    request.maxPerAgent,
    'max_per_agent',
    AUDIT_DEFAULTS.maxPerAgent,
    10_000,
  );
  const timeoutMs = requestedMs(
    request.commandTimeout,
    AUDIT_DEFAULTS.timeoutMs,
    'command_timeout',
  );
  const progressMs = requestedMs(
    request.progressInterval,
    AUDIT_DEFAULTS.progressMs,
    'progress_interval',
  );
  return { maxConcurrency, maxPerAgent, timeoutMs, progressMs };
}

/** What one LU's audit contributed to the event log. */
interface AuditedUnit {
  readonly luId: string;
  readonly loaderId: string;
  readonly findings: readonly Finding[];
}

/** The running counts of one audit: what progress events, the summary and the metrics say. */
export class AuditTally {
  readonly counts = new Map<FindingKind, number>();
  /** Not whole reports, to bound memory. */
  readonly digests: LoaderDigest[] = [];
  /** Only kept when someone listens (the event log): a few findings per LU. */
  readonly audited: AuditedUnit[] | undefined;
  commands = 0;
  done = 0;
  findings = 0;
  reachable = 0;
  partial = 0;
  paths = 0;
  pathsReachable = 0;

  constructor(
    readonly total: number,
    keepFindings: boolean,
  ) {
    this.audited = keepFindings ? [] : undefined;
  }

  count(list: readonly Finding[]): void {
    for (const f of list) this.counts.set(f.kind, (this.counts.get(f.kind) ?? 0) + 1);
    this.findings += list.length;
  }

  /** One LU's report and findings. */
  add(unit: SelectedUnit, report: LogicalUnitReport, list: readonly Finding[]): void {
    this.audited?.push({ luId: unit.luId, loaderId: unit.loaderId, findings: list });
    this.done += 1;
    this.count(list);
    this.paths += report.paths.length;
    this.pathsReachable += report.paths.filter((p) => p.reachable).length;
    if (report.reachability === Reachability.REACHABILITY_REACHABLE) this.reachable += 1;
    if (report.reachability === Reachability.REACHABILITY_PARTIAL) this.partial += 1;
    this.digests.push({
      luId: report.luId,
      loaderId: report.loaderId,
      peripheralDeviceType: report.peripheralDeviceType,
      reserved: report.reserved,
      holderKey: report.holderKey,
      holderAgentId: report.holderAgentId,
    });
  }

  progress(): AuditResponse {
    return AuditResponse.fromPartial({
      event: {
        $case: 'progress',
        value: AuditProgress.fromPartial({
          logicalUnitsTotal: this.total,
          logicalUnitsDone: this.done,
          commandsSent: this.commands,
          findings: this.findings,
        }),
      },
    });
  }

  /** Finding counts by kind, named as the metrics name them (`unknown_key`). */
  byKindName(): Record<string, number> {
    return Object.fromEntries(
      [...this.counts].map(([kind, n]) => [
        findingKindToJSON(kind)
          .replace(/^FINDING_KIND_/, '')
          .toLowerCase(),
        n,
      ]),
    );
  }

  summary(loaderFindings: Finding[], ms: number, startedAt: Date): AuditResponse {
    return AuditResponse.fromPartial({
      event: {
        $case: 'summary',
        value: AuditSummary.fromPartial({
          logicalUnits: this.total,
          reachable: this.reachable,
          partial: this.partial,
          unreachable: this.total - this.reachable - this.partial,
          paths: this.paths,
          pathsReachable: this.pathsReachable,
          commandsSent: this.commands,
          findingCounts: [...this.counts]
            .sort((a, b) => a[0] - b[0])
            .map(([kind, n]) => FindingCount.fromPartial({ kind, count: n })),
          loaderFindings,
          duration: msToDuration(ms),
          startedAt,
        }),
      },
    });
  }
}

/** What every LU of one audit shares. */
interface AuditRun {
  readonly deps: FleetDeps;
  readonly ctx: ReadContext;
  readonly keys: KeyIndex;
  readonly desired: DesiredIndex;
  readonly agents: AgentLookup;
  readonly tally: AuditTally;
  readonly out: AsyncQueue<AuditResponse>;
  /** Changers' element views, read beside their reservations, for the element findings at the end. */
  readonly elementViews: Map<SelectedUnit, ElementView>;
}

/** Reads one LU, judges it, and queues its report. */
async function auditUnit(run: AuditRun, unit: SelectedUnit): Promise<void> {
  const { deps, ctx, keys } = run;
  if (isChanger(unit)) {
    const view = await readElementView(unit, ctx);
    run.elementViews.set(unit, view);
    deps.elementViews?.set(unit.luId, view);
  }
  const obs = await observeUnit(unit, ctx);
  const analysis = analyzeUnit(obs, keys);
  const list = unitFindings(obs, analysis, keys, run.agents, run.desired.desireFor(unit));
  list.push(...(await otherHolds(deps, obs, ctx)));
  const report = buildReport(obs, analysis, keys, list);
  run.tally.add(unit, report, list);
  run.out.push({ event: { $case: 'report', value: report } }); // no fromPartial: it would deep-copy the report
}

/**
 * Runs `each` over `order` in `lanes` concurrent lanes, each taking the next item when done; stops taking items
 * after the first failure or an abort, and holds lanes back while `out` has more than `backlog` items queued.
 * Rejects with the first failure, or the abort reason.
 */
export function runLanes<T>(
  order: readonly T[],
  lanes: number,
  each: (item: T) => Promise<void>,
  out: AsyncQueue<unknown>,
  backlog: number,
  signal: AbortSignal,
): Promise<void> {
  // Lanes held back by the backlog share one wait, so the queue checks one waiter per item, not one per lane.
  let roomWait: Promise<void> | undefined;
  const room = (): Promise<void> =>
    (roomWait ??= out.whenSizeAtMost(backlog).then(() => {
      roomWait = undefined;
    }));
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    try {
      while (next < order.length && !failed && !signal.aborted) {
        await each(order[next++] as T);
        if (out.size > backlog) await room();
      }
    } catch (e) {
      failed = true;
      throw e;
    }
  };
  return Promise.all(Array.from({ length: Math.min(order.length, lanes) }, lane)).then(() =>
    signal.throwIfAborted(),
  );
}

/** After the last LU: the loader-level findings, the hooks, the last progress event and the summary. */
function finishAudit(
  run: AuditRun,
  units: readonly SelectedUnit[],
  t0: number,
  startedAt: Date,
): void {
  const { deps, tally, out } = run;
  const byLu = new Map(tally.digests.map((d) => [d.luId, d]));
  const loader = [
    ...loaderFindings(tally.digests),
    ...identityFindings(deps.devices.quarantined(), new Set(units.map((u) => u.luId))),
    ...[...run.elementViews].flatMap(([changer, view]) =>
      auditElementFindings(changer, view, byLu, (id) => run.agents.isConnected(id)),
    ),
  ];
  tally.count(loader);
  if (tally.audited !== undefined)
    deps.onAuditComplete?.({ units: tally.audited, loaderFindings: loader });
  deps.onAuditFindings?.(tally.byKindName());
  const ms = performance.now() - t0;
  out.push(tally.progress());
  out.push(tally.summary(loader, ms, startedAt));
  deps.log.info(
    {
      logicalUnits: units.length,
      commands: tally.commands,
      findings: tally.findings,
      ms: Math.round(ms),
    },
    'audit finished',
  );
  out.close();
}

/**
 * Audits the selected LUs: reads each through every reachable path (bounded per agent and overall), joins the
 * key registry and desired state, and yields a report per LU as soon as it is complete, progress events, and a
 * summary with loader-level findings (deadlocks). Unreachable agents and LUs are reported, never dropped.
 * Throws INVALID_ARGUMENT for a bad request before anything is sent.
 */
export async function* runAudit(
  deps: FleetDeps,
  request: AuditRequest,
  signal: AbortSignal,
): AsyncGenerator<AuditResponse> {
  const { maxConcurrency, maxPerAgent, timeoutMs, progressMs } = auditSettings(request);
  const units = selectUnits(deps.devices, request.selector);
  const startedAt = new Date();
  const t0 = performance.now();
  const [keys, desired] = await Promise.all([
    loadKeyIndex(deps.store),
    loadDesiredIndex(deps.store),
  ]);
  const tally = new AuditTally(units.length, deps.onAuditComplete !== undefined);
  const out = new AsyncQueue<AuditResponse>(Number.MAX_SAFE_INTEGER);
  deps.log.info({ logicalUnits: units.length, maxConcurrency, maxPerAgent }, 'audit started');
  out.push(tally.progress());
  const timer = setInterval(() => out.push(tally.progress()), Math.max(10, progressMs));
  // Every queued read listens on the call's signal; thousands at once are expected, not a leak.
  setMaxListeners(0, signal);
  const ctx: ReadContext = {
    read: deps.commands.read,
    limiter: new CommandLimiter(maxConcurrency, maxPerAgent),
    timeoutMs,
    signal,
    onCommand: () => void (tally.commands += 1),
  };
  const run: AuditRun = {
    deps,
    ctx,
    keys,
    desired,
    agents: agentLookup(deps),
    tally,
    out,
    elementViews: new Map(),
  };
  // Lanes instead of every LU at once: only a lane's worth of reads, promises and reports is alive at a time
  // (10,000 LUs started together kept ~100 MB alive through every young-generation GC, which copied it all each
  // time), and lanes wait while the client has a backlog of reports. LUs are taken round-robin over agents, so
  // the lanes spread over the fleet instead of queueing behind one agent's per-agent limit.
  const order = interleaveByAgent(units, maxPerAgent);
  const backlog = Math.max(64, maxConcurrency);
  const work = runLanes(order, maxConcurrency, (u) => auditUnit(run, u), out, backlog, signal);
  work.then(
    () => {
      clearInterval(timer);
      finishAudit(run, units, t0, startedAt);
    },
    (e: unknown) => {
      clearInterval(timer);
      out.close(e);
    },
  );
  try {
    if (request.batchReports) yield* coalesceReports(out, deps.pageBytes ?? DEFAULT_PAGE_BYTES);
    else yield* out;
  } finally {
    clearInterval(timer);
    out.close(); // a client that went away: lanes waiting for it to read stop waiting (their reads abort)
  }
}

/**
 * Most reports in one `reports` message (~300 bytes each); the batch also stops before its byte budget (an LU
 * seen through thousands of paths makes a large report).
 */
const MAX_REPORT_BATCH = 128;

const isReport = (e: AuditResponse): boolean => e.event?.$case === 'report';

/**
 * The audit's events for a client that set batch_reports: a report with more reports queued right behind it
 * goes out with them as one `reports` message (same order; progress and the summary keep their place).
 */
async function* coalesceReports(
  out: AsyncQueue<AuditResponse>,
  budgetBytes: number,
): AsyncGenerator<AuditResponse> {
  const sizeOf = (r: LogicalUnitReport) => LogicalUnitReport.encode(r).finish().length + 6;
  for await (const first of out) {
    // A report over the previous batch's budget starts the next one.
    let event: AuditResponse | undefined = first;
    while (event !== undefined) {
      let next: AuditResponse | undefined;
      if (event.event?.$case !== 'report' || (next = out.takeIf(isReport)) === undefined) {
        yield event;
        break;
      }
      const reports: LogicalUnitReport[] = [event.event.value];
      let bytes = sizeOf(event.event.value);
      event = undefined;
      while (next?.event?.$case === 'report') {
        const cost = sizeOf(next.event.value);
        if (bytes + cost > budgetBytes) {
          event = next;
          break;
        }
        bytes += cost;
        reports.push(next.event.value);
        next = reports.length < MAX_REPORT_BATCH ? out.takeIf(isReport) : undefined;
      }
      yield { event: { $case: 'reports', value: { reports } } };
    }
  }
}

/**
 * The units in round-robin order over the agent of each one's first path, `perAgent` at a time (each agent's own
 * order kept): lanes that start together take up to `perAgent` LUs of one agent, so their reads reach the agent
 * together (one CommandBatch on its stream) while the work still spreads over the whole fleet.
 */
export function interleaveByAgent(units: readonly SelectedUnit[], perAgent = 1): SelectedUnit[] {
  const byAgent = new Map<string, SelectedUnit[]>();
  for (const unit of units) {
    const agentId = unit.paths[0]?.agent.hello.agentId ?? '';
    let list = byAgent.get(agentId);
    if (list === undefined) byAgent.set(agentId, (list = []));
    list.push(unit);
  }
  const lists = [...byAgent.values()];
  const step = Math.max(1, perAgent);
  const out: SelectedUnit[] = [];
  for (let from = 0; out.length < units.length; from += step) {
    for (const list of lists) {
      for (let i = from; i < from + step && i < list.length; i++) out.push(list[i] as SelectedUnit);
    }
  }
  return out;
}

/**
 * A CRITICAL finding per quarantined claim on a selected LU: a path that reported the LU's id with another
 * identity than the one its first reporter established (inventory-screen.ts).
 */
function identityFindings(
  quarantined: ReadonlyMap<string, readonly ConflictingClaim[]>,
  selected: ReadonlySet<string>,
): Finding[] {
  return [...quarantined].flatMap(([agentId, claims]) =>
    claims
      .filter((c) => selected.has(c.path.luId))
      .map((c) =>
        Finding.fromPartial({
          kind: FindingKind.FINDING_KIND_CONFLICTING_IDENTITY,
          severity: Severity.SEVERITY_CRITICAL,
          luId: c.path.luId,
          agentId,
          path: c.path.path,
          message: `${agentId}:${c.path.path} claims ${c.path.luId} as ${c.claimed}, but ${c.establishedBy.agentId}:${c.establishedBy.path} established it as ${c.established}: quarantined (never routed to); check that host and its certificate, and bind agents with PRFLEET_AGENT_POLICY`,
          suggestedAction: suggest.agents(),
        }),
      ),
  );
}
