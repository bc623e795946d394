/**
 * How the web view reads an LU: the audit's own steps (observeUnit → analyzeUnit → unitFindings → buildReport),
 * but through ONE online path per LU instead of every path. A read consumes the unit attentions pending on its
 * nexus, and those are news for the host (REGISTRATIONS PREEMPTED tells a preempted host what happened): a view
 * that anyone may leave open must not take that news away from every host. The read goes through the path
 * `prefer` names (the host that sent the last PROUT: its own command left it no news), else the first online
 * path; other paths show what their agents report (online or not), and their registrations come from the one
 * read (READ FULL STATUS lists every nexus; READ KEYS counts each host's keys against its paths).
 */
import type { Logger } from 'pino';
import type { LogicalUnitReport } from '../../gen/prfleet/v1/fleet.js';
import { isConnected, type AgentRegistry } from '../agents/index.js';
import type { FleetPath } from '../devices.js';
import type { CommandRouter } from '../router.js';
import { readerOf } from '../commands/pipeline.js';
import { analyzeUnit } from '../fleet/analyze.js';
import type { FleetStore } from '../fleet/deps.js';
import { loadDesiredIndex, type DesiredIndex } from '../fleet/desired.js';
import { buildKeyIndex, loadKeyIndex, type KeyIndex } from '../fleet/key-index.js';
import { CommandLimiter } from '../fleet/limiter.js';
import {
  observeUnit,
  pathOnline,
  type LuObservation,
  type PathObservation,
  type ReadContext,
} from '../fleet/observe.js';
import { buildReport, unitFindings, type AgentLookup } from '../fleet/report.js';
import type { SelectedUnit } from '../fleet/selection.js';

/** What the reader needs from the server. */
export interface LuReaderDeps {
  readonly registry: AgentRegistry;
  readonly router: CommandRouter;
  /** Key registry and desired state; undefined with the memory store (holders then named by READ FULL STATUS only). */
  readonly store?: FleetStore | undefined;
  readonly log: Logger;
  /** Device timeout per read. @default 10000 */
  readonly timeoutMs?: number;
}

/** The registry and desired state, loaded once per batch of reads. */
export interface ReadIndexes {
  readonly keys: KeyIndex;
  readonly desired: DesiredIndex | undefined;
}

/** Reads LUs for the view. */
export interface LuReader {
  /** Loads the key registry and desired state (an empty registry without a store). */
  indexes(): Promise<ReadIndexes>;
  /** Reads one LU through one path; never rejects except on abort. */
  read(
    unit: SelectedUnit,
    indexes: ReadIndexes,
    prefer: string | undefined,
    signal: AbortSignal,
  ): Promise<LogicalUnitReport>;
}

/** Creates the view's LU reader: at most 16 reads in flight, 2 per agent (the view must not crowd commands out). */
export function createLuReader(deps: LuReaderDeps): LuReader {
  const limiter = new CommandLimiter(16, 2);
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const agents: AgentLookup = {
    isConnected: (id) => {
      const record = deps.registry.get(id);
      return record !== undefined && isConnected(record);
    },
    isKnown: (id) => deps.registry.get(id) !== undefined,
  };
  return {
    async indexes() {
      const store = deps.store;
      if (store === undefined) return { keys: buildKeyIndex([]), desired: undefined };
      const [keys, desired] = await Promise.all([loadKeyIndex(store), loadDesiredIndex(store)]);
      return { keys, desired };
    },
    async read(unit, indexes, prefer, signal) {
      const ctx: ReadContext = { read: readerOf(deps.router), limiter, timeoutMs, signal };
      const obs = await observeThroughOnePath(unit, prefer, ctx);
      const analysis = analyzeUnit(obs, indexes.keys);
      const findings = unitFindings(
        obs,
        analysis,
        indexes.keys,
        agents,
        indexes.desired?.desireFor(unit),
      );
      return buildReport(obs, analysis, indexes.keys, findings);
    },
  };
}

/**
 * observeUnit over one path: the preferred host's online path, else each online path in turn until one
 * answers. The observation lists every path; those not read carry what their agent reports.
 */
async function observeThroughOnePath(
  unit: SelectedUnit,
  prefer: string | undefined,
  ctx: ReadContext,
): Promise<LuObservation> {
  const online = unit.paths.filter(pathOnline);
  const preferred = online.filter((p) => p.agent.hello.agentId === prefer);
  const order = [...preferred, ...online.filter((p) => !preferred.includes(p))];
  // No online path: observeUnit says so without sending anything.
  if (order.length === 0) return observeUnit(unit, ctx);
  const tried = new Map<FleetPath, PathObservation>();
  let read: LuObservation | undefined;
  for (const path of order) {
    read = await observeUnit({ ...unit, paths: [path] }, ctx);
    tried.set(path, read.paths[0] as PathObservation);
    if (read.state !== undefined) break;
  }
  const paths = unit.paths.map(
    (fleetPath): PathObservation =>
      tried.get(fleetPath) ?? {
        fleetPath,
        reachable: pathOnline(fleetPath),
        error: pathOnline(fleetPath)
          ? ''
          : fleetPath.agent.session === undefined
            ? 'agent offline'
            : 'path offline (the agent saw the node fail)',
        unitAttentions: [],
      },
  );
  const state = read?.state;
  return state === undefined
    ? { unit, paths, error: read?.error ?? 'no path answered' }
    : { unit, paths, state, error: '' };
}
