/**
 * The web view's live picture of the fleet: every LU's last read (LuReader), the agents, the newest PROUTs, and
 * the changes to push to watchers. While someone watches, changes are detected on the server: a new PROUT in the
 * history (polled every `pollMs`: PROUTs of every instance sharing the store) re-reads its LU through the
 * sender's path, an agent connecting, leaving or reporting a new inventory re-reads its LUs, and every
 * `refreshMs` everything is read again (changes made outside prfleet, e.g. by sg_persist on a host).
 */
import type { RegistryEvent } from '../agent-registry.js';
import { pathsByLu, toLogicalUnit } from '../devices.js';
import { loaderFindings } from '../fleet/report.js';
import type { SelectedUnit } from '../fleet/selection.js';
import { selectUnits } from '../fleet/selection.js';
import type { PRoutHistory } from '../store/index.js';
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
  /** The PROUT history (recent entries, change detection); undefined with the memory store. */
  readonly history?: PRoutHistory | undefined;
  /** Everything is read again this often while someone watches. @default 30000 */
  readonly refreshMs?: number;
  /** The history is polled for new PROUTs this often while someone watches. @default 200 */
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
  'this server runs with the memory store: no PROUT history, no key registry (holders are named only where the device reports per-nexus registrations)';

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
      const shown = historyView(entry);
      history = [shown, ...history].slice(0, historySize);
      emit({ kind: 'history', entry: shown });
      if (entry.luId !== '') invalidate(entry.luId, entry.agentId);
    }
  }

  function invalidate(luId: string, preferAgent?: string): void {
    dirty.set(luId, preferAgent ?? dirty.get(luId));
    scheduleFlush();
  }

  function onRegistry(event: RegistryEvent): void {
    if (event.kind === 'heartbeat') return;
    emit({ kind: 'agents', agents: agents() });
    const agentId = event.session.agentId;
    const luIds = new Set(registry.get(agentId)?.paths.map((p) => p.luId) ?? []);
    for (const entry of entries.values())
      if (entry.report.paths.some((p) => p.agentId === agentId)) luIds.add(entry.report.luId);
    for (const luId of luIds) if (luId !== '') invalidate(luId);
  }

  function startWatching(): void {
    // Nobody kept the picture live until now: the first watcher's snapshot reads everything again.
    builtAt = 0;
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
    refreshTimer = setInterval(() => void refreshAndPush(), refreshMs);
  }

  function stopWatching(): void {
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
