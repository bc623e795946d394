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
import type { ConflictingClaim } from '../inventory-screen.js';
import { suggest } from './suggest.js';
import { durationToMs, msToDuration } from '../../common/command.js';
import { invalidArgument } from '../../common/errors.js';
import { AsyncQueue } from '../../common/async-queue.js';
import { DEFAULT_PAGE_BYTES } from '../pages.js';
import { analyzeUnit } from './analyze.js';
import type { FleetDeps } from './deps.js';
import { loadDesiredIndex } from './desired.js';
import { loadKeyIndex } from './key-index.js';
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
  const timeoutMs = request.commandTimeout
    ? durationToMs(request.commandTimeout)
    : AUDIT_DEFAULTS.timeoutMs;
  if (!(timeoutMs > 0)) throw invalidArgument('command_timeout', 'must be positive');
  const progressMs = request.progressInterval
    ? durationToMs(request.progressInterval)
    : AUDIT_DEFAULTS.progressMs;
  const units = selectUnits(deps.devices, request.selector);
  const startedAt = new Date();
  const t0 = performance.now();
  const [keys, desired] = await Promise.all([
    loadKeyIndex(deps.store),
    loadDesiredIndex(deps.store),
  ]);
  const limiter = new CommandLimiter(maxConcurrency, maxPerAgent);
  const agents = agentLookup(deps);
  const out = new AsyncQueue<AuditResponse>(Number.MAX_SAFE_INTEGER);
  const counts = new Map<FindingKind, number>();
  const digests: LoaderDigest[] = []; // not whole reports, to bound memory
  // Only kept when someone listens (the event log): a few findings per LU.
  const audited =
    deps.onAuditComplete === undefined
      ? undefined
      : ([] as { luId: string; loaderId: string; findings: readonly Finding[] }[]);
  let commands = 0;
  let done = 0;
  let findings = 0;
  let reachable = 0;
  let partial = 0;
  let paths = 0;
  let pathsReachable = 0;
  const count = (list: readonly Finding[]) => {
    for (const f of list) counts.set(f.kind, (counts.get(f.kind) ?? 0) + 1);
    findings += list.length;
  };
  const progress = () =>
    AuditResponse.fromPartial({
      event: {
        $case: 'progress',
        value: AuditProgress.fromPartial({
          logicalUnitsTotal: units.length,
          logicalUnitsDone: done,
          commandsSent: commands,
          findings,
        }),
      },
    });

  deps.log.info({ logicalUnits: units.length, maxConcurrency, maxPerAgent }, 'audit started');
  out.push(progress());
  const timer = setInterval(() => out.push(progress()), Math.max(10, progressMs));
  // Every queued read listens on the call's signal; thousands at once are expected, not a leak.
  setMaxListeners(0, signal);
  const ctx = {
    router: deps.router,
    limiter,
    timeoutMs,
    signal,
    onCommand: () => void (commands += 1),
  };
  // Changers' element views, read beside their reservations, for the element findings at the end.
  const elementViews = new Map<SelectedUnit, ElementView>();
  const auditUnit = async (unit: SelectedUnit): Promise<void> => {
    if (isChanger(unit)) {
      const view = await readElementView(unit, ctx);
      elementViews.set(unit, view);
      deps.elementViews?.set(unit.luId, view);
    }
    const obs = await observeUnit(unit, ctx);
    const analysis = analyzeUnit(obs, keys);
    const list = unitFindings(obs, analysis, keys, agents, desired.desireFor(unit));
    list.push(...(await otherHolds(deps, obs, ctx)));
    const report = buildReport(obs, analysis, keys, list);
    if (audited !== undefined)
      audited.push({ luId: unit.luId, loaderId: unit.loaderId, findings: list });
    done += 1;
    count(list);
    paths += report.paths.length;
    pathsReachable += report.paths.filter((p) => p.reachable).length;
    if (report.reachability === Reachability.REACHABILITY_REACHABLE) reachable += 1;
    if (report.reachability === Reachability.REACHABILITY_PARTIAL) partial += 1;
    digests.push({
      luId: report.luId,
      loaderId: report.loaderId,
      peripheralDeviceType: report.peripheralDeviceType,
      reserved: report.reserved,
      holderKey: report.holderKey,
      holderAgentId: report.holderAgentId,
    });
    out.push({ event: { $case: 'report', value: report } }); // no fromPartial: it would deep-copy the report
  };
  // Lanes instead of every LU at once: only a lane's worth of reads, promises and reports is alive at a time
  // (10,000 LUs started together kept ~100 MB alive through every young-generation GC, which copied it all each
  // time), and lanes wait while the client has a backlog of reports. LUs are taken round-robin over agents, so
  // the lanes spread over the fleet instead of queueing behind one agent's per-agent limit.
  const order = interleaveByAgent(units, maxPerAgent);
  const backlog = Math.max(64, maxConcurrency);
  // Lanes held back by the backlog share one wait, so the queue checks one waiter per read, not one per lane.
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
        await auditUnit(order[next++] as SelectedUnit);
        if (out.size > backlog) await room();
      }
    } catch (e) {
      failed = true;
      throw e;
    }
  };
  const work = Promise.all(
    Array.from({ length: Math.min(order.length, maxConcurrency) }, lane),
  ).then(() => signal.throwIfAborted());
  work.then(
    () => {
      clearInterval(timer);
      const byLu = new Map(digests.map((d) => [d.luId, d]));
      const loader = [
        ...loaderFindings(digests),
        ...identityFindings(deps.devices.quarantined(), new Set(units.map((u) => u.luId))),
        ...[...elementViews].flatMap(([changer, view]) =>
          auditElementFindings(changer, view, byLu, (id) => agents.isConnected(id)),
        ),
      ];
      count(loader);
      if (audited !== undefined) deps.onAuditComplete?.({ units: audited, loaderFindings: loader });
      deps.onAuditFindings?.(
        Object.fromEntries(
          [...counts].map(([kind, n]) => [
            findingKindToJSON(kind)
              .replace(/^FINDING_KIND_/, '')
              .toLowerCase(),
            n,
          ]),
        ),
      );
      const ms = performance.now() - t0;
      out.push(progress());
      out.push(
        AuditResponse.fromPartial({
          event: {
            $case: 'summary',
            value: AuditSummary.fromPartial({
              logicalUnits: units.length,
              reachable,
              partial,
              unreachable: units.length - reachable - partial,
              paths,
              pathsReachable,
              commandsSent: commands,
              findingCounts: [...counts]
                .sort((a, b) => a[0] - b[0])
                .map(([kind, n]) => FindingCount.fromPartial({ kind, count: n })),
              loaderFindings: loader,
              duration: msToDuration(ms),
              startedAt,
            }),
          },
        }),
      );
      deps.log.info(
        { logicalUnits: units.length, commands, findings, ms: Math.round(ms) },
        'audit finished',
      );
      out.close();
    },
    (e: unknown) => {
      clearInterval(timer);
      out.close(e);
    },
  );
  try {
    if (request.batchReports)
      yield* coalesceReports(out, deps.reportBatchBytes ?? DEFAULT_PAGE_BYTES);
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
