/**
 * The web view's live picture of the fleet: every LU's last read (LuReader), the agents, the newest PROUTs, and
 * the changes to push to watchers. While someone watches, it follows the fleet event log (docs/events.md): a
 * PROUT re-reads its LU through the sender's path and joins the recent PROUTs; agents connecting or leaving and
 * paths appearing or lost update the agents and re-read their LUs; unit attentions, observed reservation and
 * registration changes and findings re-read their LU. Every `refreshMs` everything is read again. Without an
 * event log (tests of the view alone) it polls the PROUT history and listens to the agent registry instead.
 */
import type { Logger } from 'pino';
import { pathsByLu, toLogicalUnit } from '../devices.js';
import type { SelectedUnit } from '../fleet/selection.js';
import { selectUnits } from '../fleet/selection.js';
import type { PRoutHistory } from '../store/index.js';
import type { EventLog } from '../events/index.js';
import type { FleetView, FindingView, AgentView, HistoryView, LuView } from './model.js';
import { applyFleetEvent, followEvents, type FleetEventHandlers } from './fleet-events.js';
import { createLuTable, type LuTable } from './lu-table.js';
import { createLuReader, type LuReader, type LuReaderDeps } from './reader.js';
import { createRecentProuts, type RecentProuts } from './recent-prouts.js';

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

const NO_STORE_NOTE =
  'this server runs with the memory store: no key registry (holders are named only where the device reports per-nexus registrations) and no stored PROUT history (PROUTs show as they happen)';

/** The picture's parts, shared by the functions that read, re-read and follow the fleet. */
interface Picture {
  readonly deps: FleetStateDeps;
  readonly reader: LuReader;
  readonly table: LuTable;
  readonly recent: RecentProuts;
  /** Aborts when the picture is closed. */
  readonly closing: AbortSignal;
  readonly emit: (update: FleetUpdate) => void;
  /** When everything was last read (0: never, or nobody kept the picture live since). */
  builtAt: number;
  /** The read of everything in progress, shared by every caller. */
  building: Promise<void> | undefined;
}

/** Creates the live fleet picture (nothing is read until the first snapshot). */
export function createFleetState(deps: FleetStateDeps): FleetState {
  const staleMs = deps.staleMs ?? 2_000;
  const closing = new AbortController();
  const listeners = new Set<(update: FleetUpdate) => void>();
  const picture: Picture = {
    deps,
    reader: createLuReader(deps),
    table: createLuTable(deps.registry),
    recent: createRecentProuts(deps.history, deps.historySize ?? 20),
    closing: closing.signal,
    emit: (update) => emit(listeners, update, deps.log),
    builtAt: 0,
    building: undefined,
  };
  const rereads = createRereads(picture);
  const on: FleetEventHandlers = {
    agentChanged: (agentId) => agentChanged(picture, rereads.invalidate, agentId),
    prout: (row) => {
      if (picture.recent.add(row)) picture.emit({ kind: 'history', entry: row });
    },
    luChanged: rereads.invalidate,
  };
  let stopWatching: (() => void) | undefined;
  const stop = () => {
    stopWatching?.();
    stopWatching = undefined;
  };
  return {
    async snapshot() {
      const live = listeners.size > 0 && picture.builtAt > 0;
      if (!live && Date.now() - picture.builtAt > staleMs) await rebuild(picture);
      else if (picture.building !== undefined) await picture.building;
      return fleetView(picture);
    },
    subscribe(listener) {
      listeners.add(listener);
      if (listeners.size === 1) stopWatching = startWatching(picture, on);
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) stop();
      };
    },
    invalidate: rereads.invalidate,
    close() {
      closing.abort(new Error('web view closed'));
      stop();
      rereads.close();
      listeners.clear();
    },
  };
}

/** Hands `update` to every listener; one that throws is logged and does not stop the others. */
function emit(
  listeners: ReadonlySet<(update: FleetUpdate) => void>,
  update: FleetUpdate,
  log: Logger,
): void {
  for (const listener of listeners) {
    try {
      listener(update);
    } catch (err) {
      log.error({ err }, 'web view listener failed');
    }
  }
}

function fleetView(p: Picture): FleetView {
  return {
    version: 1,
    generatedAt: new Date().toISOString(),
    sites: p.table.sites(),
    agents: p.table.agents(),
    history: p.recent.list(),
    notes: p.deps.history === undefined || p.deps.store === undefined ? [NO_STORE_NOTE] : [],
  };
}

async function readAll(p: Picture): Promise<void> {
  const units = selectUnits(p.deps.registry, undefined);
  const indexes = await p.reader.indexes();
  const reports = await Promise.all(
    units.map((unit) => p.reader.read(unit, indexes, undefined, p.closing)),
  );
  p.table.replaceAll(reports);
  await p.recent.loadTail();
  p.builtAt = Date.now();
}

/** Reads everything (one read at a time shared by every caller). */
function rebuild(p: Picture): Promise<void> {
  p.building ??= readAll(p).finally(() => (p.building = undefined));
  return p.building;
}

async function refreshAndPush(p: Picture): Promise<void> {
  try {
    await rebuild(p);
    p.emit({ kind: 'snapshot', view: fleetView(p) });
  } catch (err) {
    if (!p.closing.aborted) p.deps.log.warn({ err }, 'web view: refresh failed');
  }
}

/** LUs to read again, gathered into batches; one batch is read at a time. */
interface Rereads {
  readonly invalidate: (luId: string, preferAgent?: string) => void;
  readonly close: () => void;
}

function createRereads(p: Picture): Rereads {
  const dirty = new Map<string, string | undefined>();
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;
  const flush = () => {
    const batch = [...dirty];
    dirty.clear();
    return reread(p, batch);
  };
  return {
    invalidate(luId, preferAgent) {
      dirty.set(luId, preferAgent ?? dirty.get(luId));
      if (timer !== undefined || p.closing.aborted) return;
      // A few ms gather the LUs one PROUT burst touched into one batch.
      timer = setTimeout(() => {
        timer = undefined;
        flushing = (flushing ?? Promise.resolve()).then(flush).catch((err: unknown) => {
          if (!p.closing.aborted) p.deps.log.warn({ err }, 'web view: re-read failed');
        });
      }, 20);
    },
    close: () => clearTimeout(timer),
  };
}

function unitOf(p: Picture, luId: string): SelectedUnit | undefined {
  const paths = pathsByLu(p.deps.registry).get(luId);
  if (paths === undefined) return undefined;
  const unit = toLogicalUnit(luId, paths);
  return { luId, loaderId: unit.loaderId, unit, paths };
}

/** Reads the LUs of `batch` again (each through its preferred agent's path) and pushes each. */
async function reread(p: Picture, batch: Array<[string, string | undefined]>): Promise<void> {
  const units = batch.map(([luId, prefer]) => ({ unit: unitOf(p, luId), luId, prefer }));
  // An LU that appeared or vanished changes the tree: send it whole.
  if (units.some(({ unit, luId }) => unit === undefined || !p.table.has(luId))) {
    await refreshAndPush(p);
    return;
  }
  const indexes = await p.reader.indexes();
  await Promise.all(
    units.map(async ({ unit, prefer }) => {
      const report = await p.reader.read(unit as SelectedUnit, indexes, prefer, p.closing);
      const { view, findings } = p.table.update(report);
      p.emit({ kind: 'lu', lu: view, loader: { loaderId: report.loaderId, findings } });
    }),
  );
}

/** Pushes the agents and re-reads every LU the agent reports or was last read through. */
function agentChanged(p: Picture, invalidate: Rereads['invalidate'], agentId: string): void {
  p.emit({ kind: 'agents', agents: p.table.agents() });
  const luIds = new Set(p.deps.registry.get(agentId)?.paths.map((path) => path.luId) ?? []);
  for (const luId of p.table.luIdsOf(agentId)) luIds.add(luId);
  for (const luId of luIds) if (luId !== '') invalidate(luId);
}

/**
 * Keeps the picture live while someone watches: everything is read every `refreshMs`, and changes come from the
 * event log (or, without one, from the registry and a poll of the history). Returns the function that stops it.
 */
function startWatching(p: Picture, on: FleetEventHandlers): () => void {
  // Nobody kept the picture live until now: the first watcher's snapshot reads everything again.
  p.builtAt = 0;
  const refreshTimer = setInterval(() => void refreshAndPush(p), p.deps.refreshMs ?? 30_000);
  if (p.deps.events !== undefined) {
    const following = new AbortController();
    void followEvents(
      p.deps.events,
      AbortSignal.any([following.signal, p.closing]),
      (event) => applyFleetEvent(event, on),
      () => void refreshAndPush(p),
      p.deps.log,
    );
    return () => {
      following.abort();
      clearInterval(refreshTimer);
    };
  }
  const stopRegistry = p.deps.registry.onChange((event) => {
    if (event.kind !== 'heartbeat') on.agentChanged(event.session.agentId);
  });
  const stopPolling = pollHistory(p, on);
  return () => {
    stopRegistry();
    stopPolling();
    clearInterval(refreshTimer);
  };
}

/** Polls the history for new PROUTs every `pollMs`, one poll at a time; returns the function that stops it. */
function pollHistory(p: Picture, on: FleetEventHandlers): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  // The next poll is armed when the previous has finished.
  const poll = () => {
    timer = setTimeout(() => {
      p.recent
        .poll(on.prout, on.luChanged)
        .catch((err: unknown) => p.deps.log.warn({ err }, 'web view: history poll failed'))
        .finally(() => {
          if (!stopped && !p.closing.aborted) poll();
        });
    }, p.deps.pollMs ?? 200);
  };
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
