/**
 * The web view's live picture of the fleet: every LU's last read (LuReader), the agents, the newest PROUTs, and
 * the changes to push to watchers. While someone watches, it follows the fleet event log (docs/events.md): a
 * PROUT re-reads its LU through the sender's path and joins the recent PROUTs; agents connecting or leaving and
 * paths appearing or lost update the agents and re-read their LUs; unit attentions, observed reservation and
 * registration changes and findings re-read their LU. Every `refreshMs` everything is read again. Without an
 * event log (tests of the view alone) it polls the PROUT history and listens to the agent registry instead.
 */
import type { RegistryEvent } from '../agents/index.js';
import { pathsByLu, toLogicalUnit } from '../devices.js';
import { loaderFindings } from '../fleet/report.js';
import type { SelectedUnit } from '../fleet/selection.js';
import { selectUnits } from '../fleet/selection.js';
import type { PRoutHistory } from '../store/index.js';
import type { EventLog } from '../events/index.js';
import { EventKind, type FleetEvent } from '../../gen/prfleet/v1/events.js';
import { outcomeToJSON, PrType, proutActionToJSON } from '../../gen/prfleet/v1/scsi.js';
import { delay } from '../../common/delay.js';
import { formatKey } from '../../common/key-layout.js';
import { prTypeName } from '../../scsi/index.js';
import {
  agentView,
  findingView,
  groupBySite,
  historyView,
  luView,
  type AgentView,
  type FindingView,
  type FleetView,
  type HistoryView,
  type LuView,
} from './model.js';
import type { LogicalUnitReport } from '../../gen/prfleet/v1/fleet.js';
import { createLuReader, type LuReaderDeps } from './reader.js';

/** What {@link createFleetState} needs. */
export interface FleetStateDeps extends LuReaderDeps {
  /** The PROUT history (the newest entries at the first read); undefined with the memory store. */
  readonly history?: PRoutHistory | undefined;
  /**
   * The fleet event log: the picture follows it, and the event stream forwards it by cursor (Last-Event-ID
   * resumes). @default none: poll `history` and listen to the registry instead
   */
  readonly events?: Pick<EventLog, 'subscribe' | 'head'> | undefined;
  /** Everything is read again this often while someone watches. @default 30000 */
  readonly refreshMs?: number;
  /** Without an event log, the history is polled for new PROUTs this often while watched. @default 200 */
  readonly pollMs?: number;
  /** A snapshot nobody keeps live is reused for this long. @default 2000 */
  readonly staleMs?: number;
  /** Newest PROUTs kept. @default 20 */
  readonly historySize?: number;
}

/** One change pushed to watchers (the SSE stream's events). */
export type FleetUpdate =
  | { readonly kind: 'snapshot'; readonly view: FleetView }
  | {
      readonly kind: 'lu';
      readonly lu: LuView;
      readonly loader: { readonly loaderId: string; readonly findings: readonly FindingView[] };
    }
  | { readonly kind: 'agents'; readonly agents: readonly AgentView[] }
  | { readonly kind: 'history'; readonly entry: HistoryView };

/** The live fleet picture. */
export interface FleetState {
  /** The current view: kept live while watched, else read again when older than `staleMs`. */
  snapshot(): Promise<FleetView>;
  /** Calls `listener` with every change from now on; the returned function stops it. */
  subscribe(listener: (update: FleetUpdate) => void): () => void;
  /** Reads `luId` again soon (an event said it changed), through `preferAgent`'s path when it has one. */
  invalidate(luId: string, preferAgent?: string): void;
  /** Stops timers and reads in progress. */
  close(): void;
}

interface Entry {
  readonly report: LogicalUnitReport;
  readonly view: LuView;
}

const NO_STORE_NOTE =
  'this server runs with the memory store: no key registry (holders are named only where the device reports per-nexus registrations) and no stored PROUT history (PROUTs show as they happen)';

/** Creates the live fleet picture (nothing is read until the first snapshot). */
export function createFleetState(deps: FleetStateDeps): FleetState {
  const { registry, log } = deps;
  const refreshMs = deps.refreshMs ?? 30_000;
  const pollMs = deps.pollMs ?? 200;
  const staleMs = deps.staleMs ?? 2_000;
  const historySize = deps.historySize ?? 20;
  const reader = createLuReader(deps);
  const closing = new AbortController();
  const entries = new Map<string, Entry>();
  const loaderFinds = new Map<string, FindingView[]>();
  const listeners = new Set<(update: FleetUpdate) => void>();
  let history: HistoryView[] = [];
  let lastSeq = 0;
  let builtAt = 0;
  let building: Promise<void> | undefined;
  const dirty = new Map<string, string | undefined>();
  let flushTimer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let stopRegistry: (() => void) | undefined;
  let following: AbortController | undefined;

  const emit = (update: FleetUpdate) => {
    for (const listener of listeners) {
      try {
        listener(update);
      } catch (err) {
        log.error({ err }, 'web view listener failed');
      }
    }
  };

  const agents = (): AgentView[] =>
    registry
      .list()
      .map(agentView)
      .sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));

  const hostname = (agentId: string) => registry.get(agentId)?.hello.hostname ?? '';
  const online = (agentId: string, path: string) => {
    const record = registry.get(agentId);
    return record?.session !== undefined && record.paths.some((p) => p.path === path && p.online);
  };
  const toEntry = (report: LogicalUnitReport): Entry => ({
    report,
    view: luView(report, new Date(), online, hostname),
  });

  const siteOf = (agentId: string) => registry.get(agentId)?.hello.site ?? '';

  function recomputeLoader(loaderId: string): FindingView[] {
    if (loaderId === '') return [];
    const digests = [...entries.values()]
      .map((e) => e.report)
      .filter((r) => r.loaderId === loaderId);
    const found = loaderFindings(digests).map(findingView);
    loaderFinds.set(loaderId, found);
    return found;
  }

  function view(): FleetView {
    return {
      version: 1,
      generatedAt: new Date().toISOString(),
      sites: groupBySite(
        [...entries.values()].map((e) => e.view),
        loaderFinds,
        siteOf,
      ),
      agents: agents(),
      history,
      notes: deps.history === undefined || deps.store === undefined ? [NO_STORE_NOTE] : [],
    };
  }

  async function loadHistoryTail(): Promise<void> {
    if (deps.history === undefined) return;
    const newest = await deps.history.list({ newestFirst: true, limit: historySize });
    history = newest.map(historyView);
    lastSeq = Math.max(lastSeq, newest[0]?.seq ?? 0);
  }

  async function readAll(): Promise<void> {
    const signal = closing.signal;
    const units = selectUnits(registry, undefined);
    const indexes = await reader.indexes();
    const reports = await Promise.all(
      units.map((unit) => reader.read(unit, indexes, undefined, signal)),
    );
    entries.clear();
    for (const report of reports) entries.set(report.luId, toEntry(report));
    loaderFinds.clear();
    for (const loaderId of new Set(reports.map((r) => r.loaderId))) recomputeLoader(loaderId);
    await loadHistoryTail();
    builtAt = Date.now();
  }

  /** Reads everything (one read at a time shared by every caller). */
  function rebuild(): Promise<void> {
    building ??= readAll().finally(() => (building = undefined));
    return building;
  }

  async function refreshAndPush(): Promise<void> {
    try {
      await rebuild();
      emit({ kind: 'snapshot', view: view() });
    } catch (err) {
      if (!closing.signal.aborted) log.warn({ err }, 'web view: refresh failed');
    }
  }

  function unitOf(luId: string): SelectedUnit | undefined {
    const paths = pathsByLu(registry).get(luId);
    if (paths === undefined) return undefined;
    const unit = toLogicalUnit(luId, paths);
    return { luId, loaderId: unit.loaderId, unit, paths };
  }

  async function flush(): Promise<void> {
    const batch = [...dirty];
    dirty.clear();
    const units = batch.map(([luId, prefer]) => ({ unit: unitOf(luId), luId, prefer }));
    // An LU that appeared or vanished changes the tree: send it whole.
    if (units.some(({ unit, luId }) => unit === undefined || !entries.has(luId))) {
      await refreshAndPush();
      return;
    }
    const indexes = await reader.indexes();
    await Promise.all(
      units.map(async ({ unit, prefer }) => {
        const report = await reader.read(unit as SelectedUnit, indexes, prefer, closing.signal);
        const entry = toEntry(report);
        entries.set(report.luId, entry);
        const findings = recomputeLoader(report.loaderId);
        emit({ kind: 'lu', lu: entry.view, loader: { loaderId: report.loaderId, findings } });
      }),
    );
  }

  function scheduleFlush(): void {
    if (flushTimer !== undefined || closing.signal.aborted) return;
    // A few ms gather the LUs one PROUT burst touched into one batch.
    flushTimer = setTimeout(() => {
      flushTimer = undefined;
      flushing = (flushing ?? Promise.resolve()).then(flush).catch((err: unknown) => {
        if (!closing.signal.aborted) log.warn({ err }, 'web view: re-read failed');
      });
    }, 20);
  }

  async function pollHistory(): Promise<void> {
    if (deps.history === undefined) return;
    const fresh = await deps.history.list({ afterSeq: lastSeq, limit: 100 });
    for (const entry of fresh) {
      lastSeq = Math.max(lastSeq, entry.seq);
      addHistory(historyView(entry));
      if (entry.luId !== '') invalidate(entry.luId, entry.agentId);
    }
  }

  function invalidate(luId: string, preferAgent?: string): void {
    dirty.set(luId, preferAgent ?? dirty.get(luId));
    scheduleFlush();
  }

  function onRegistry(event: RegistryEvent): void {
    if (event.kind !== 'heartbeat') onAgentChange(event.session.agentId);
  }

  function addHistory(shown: HistoryView): void {
    if (history.some((h) => h.seq === shown.seq && shown.seq !== 0)) return;
    history = [shown, ...history].slice(0, historySize);
    lastSeq = Math.max(lastSeq, shown.seq);
    emit({ kind: 'history', entry: shown });
  }

  function onAgentChange(agentId: string): void {
    emit({ kind: 'agents', agents: agents() });
    const luIds = new Set(registry.get(agentId)?.paths.map((p) => p.luId) ?? []);
    for (const entry of entries.values())
      if (entry.report.paths.some((p) => p.agentId === agentId)) luIds.add(entry.report.luId);
    for (const luId of luIds) if (luId !== '') invalidate(luId);
  }

  function onEvent(event: FleetEvent): void {
    switch (event.kind) {
      case EventKind.EVENT_KIND_AGENT_CONNECTED:
      case EventKind.EVENT_KIND_AGENT_DISCONNECTED:
      case EventKind.EVENT_KIND_PATH_APPEARED:
      case EventKind.EVENT_KIND_PATH_LOST:
      case EventKind.EVENT_KIND_PATHS_CHURNED:
        onAgentChange(event.agentId);
        if (event.luId !== '') invalidate(event.luId);
        return;
      case EventKind.EVENT_KIND_PROUT:
      case EventKind.EVENT_KIND_PROUT_VERDICT: {
        const shown = historyOfEvent(event);
        if (shown !== undefined) addHistory(shown);
        if (event.luId !== '') invalidate(event.luId, event.agentId);
        return;
      }
      case EventKind.EVENT_KIND_UNIT_ATTENTION:
      case EventKind.EVENT_KIND_RESERVATION_CHANGED:
      case EventKind.EVENT_KIND_REGISTRATIONS_CHANGED:
      case EventKind.EVENT_KIND_FINDING_RAISED:
      case EventKind.EVENT_KIND_FINDING_CLEARED:
        if (event.luId !== '') invalidate(event.luId);
        return;
      case EventKind.EVENT_KIND_UNSPECIFIED:
      case EventKind.UNRECOGNIZED:
        return;
    }
  }

  /** Follows the event log from its head until the watchers leave; starts again after a failure. */
  async function followEvents(
    log: Pick<EventLog, 'subscribe'>,
    signal: AbortSignal,
  ): Promise<void> {
    while (!signal.aborted) {
      try {
        for await (const event of log.subscribe({ signal })) onEvent(event);
        return; // the log was closed (server shutdown)
      } catch (err) {
        if (signal.aborted) return;
        // Fell behind or the log failed: what was missed is read again whole.
        deps.log.warn({ err }, 'web view: event log subscription ended; reading everything again');
        await delay(1000, signal);
        void refreshAndPush();
      }
    }
  }

  function startWatching(): void {
    // Nobody kept the picture live until now: the first watcher's snapshot reads everything again.
    builtAt = 0;
    refreshTimer = setInterval(() => void refreshAndPush(), refreshMs);
    if (deps.events !== undefined) {
      following = new AbortController();
      void followEvents(deps.events, AbortSignal.any([following.signal, closing.signal]));
      return;
    }
    stopRegistry = registry.onChange(onRegistry);
    // One poll at a time: the next is armed when the previous has finished.
    const poll = () => {
      pollTimer = setTimeout(() => {
        pollHistory()
          .catch((err: unknown) => log.warn({ err }, 'web view: history poll failed'))
          .finally(() => {
            if (listeners.size > 0 && !closing.signal.aborted) poll();
          });
      }, pollMs);
    };
    poll();
  }

  function stopWatching(): void {
    following?.abort();
    following = undefined;
    stopRegistry?.();
    stopRegistry = undefined;
    clearTimeout(pollTimer);
    clearInterval(refreshTimer);
    pollTimer = refreshTimer = undefined;
  }

  return {
    async snapshot() {
      const live = listeners.size > 0 && builtAt > 0;
      if (!live && Date.now() - builtAt > staleMs) await rebuild();
      else if (building !== undefined) await building;
      return view();
    },
    subscribe(listener) {
      listeners.add(listener);
      if (listeners.size === 1) startWatching();
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) stopWatching();
      };
    },
    invalidate,
    close() {
      closing.abort(new Error('web view closed'));
      stopWatching();
      clearTimeout(flushTimer);
      listeners.clear();
    },
  };
}

/** The recent-PROUT row of a PROUT event (the history entry it carries), or undefined without its detail. */
function historyOfEvent(event: FleetEvent): HistoryView | undefined {
  if (event.detail?.$case !== 'prout') return undefined;
  const p = event.detail.value;
  const words = (text: string, prefix: RegExp) => text.replace(prefix, '').replaceAll('_', ' ');
  return {
    seq: Number(p.historySeq),
    time: (event.time ?? new Date()).toISOString(),
    actor: event.actor,
    agentId: event.agentId,
    path: event.path,
    luId: event.luId,
    action: words(proutActionToJSON(p.action), /^PROUT_ACTION_/),
    type: p.type === PrType.PR_TYPE_UNSPECIFIED ? '' : prTypeName(p.type),
    key: formatKey(p.reservationKey),
    serviceActionKey: formatKey(p.serviceActionKey),
    outcome:
      p.verdict !== '' ? words(p.verdict, /^$/) : words(outcomeToJSON(p.outcome), /^OUTCOME_/),
    reason: p.reason,
  };
}
