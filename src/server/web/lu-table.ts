/**
 * The web view's last read of every LU, the findings of each loader (a deadlock needs both of its LUs' reads)
 * and the agents, as the page shows them.
 */
import type { LogicalUnitReport } from '../../gen/prfleet/v1/fleet.js';
import type { AgentRegistry } from '../agents/index.js';
import { loaderFindings } from '../fleet/report.js';
import {
  agentView,
  findingView,
  groupBySite,
  luView,
  type AgentView,
  type FindingView,
  type LuView,
  type SiteView,
} from './model.js';

/** The reads of every LU, by LU id. */
export interface LuTable {
  /** Replaces every read (a read of the whole fleet). */
  replaceAll(reports: readonly LogicalUnitReport[]): void;
  /** Replaces one LU's read; returns its view and its loader's findings. */
  update(report: LogicalUnitReport): { view: LuView; findings: FindingView[] };
  /** True when `luId` has been read. */
  has(luId: string): boolean;
  /** The LUs whose read lists a path of `agentId`. */
  luIdsOf(agentId: string): string[];
  /** The LUs by site and loader. */
  sites(): SiteView[];
  /** The agents, by id. */
  agents(): AgentView[];
}

interface Entry {
  readonly report: LogicalUnitReport;
  readonly view: LuView;
}

/** Creates an empty table; views name hosts and path states from `registry`. */
export function createLuTable(registry: AgentRegistry): LuTable {
  const entries = new Map<string, Entry>();
  const loaderFinds = new Map<string, FindingView[]>();

  const hostname = (agentId: string) => registry.get(agentId)?.hello.hostname ?? '';
  const siteOf = (agentId: string) => registry.get(agentId)?.hello.site ?? '';
  const online = (agentId: string, path: string) => {
    const record = registry.get(agentId);
    return record?.session !== undefined && record.paths.some((p) => p.path === path && p.online);
  };
  const set = (report: LogicalUnitReport): LuView => {
    const view = luView(report, new Date(), online, hostname);
    entries.set(report.luId, { report, view });
    return view;
  };
  const recomputeLoader = (loaderId: string): FindingView[] => {
    if (loaderId === '') return [];
    const digests = [...entries.values()]
      .map((e) => e.report)
      .filter((r) => r.loaderId === loaderId);
    const found = loaderFindings(digests).map(findingView);
    loaderFinds.set(loaderId, found);
    return found;
  };

  return {
    replaceAll(reports) {
      entries.clear();
      for (const report of reports) set(report);
      loaderFinds.clear();
      for (const loaderId of new Set(reports.map((r) => r.loaderId))) recomputeLoader(loaderId);
    },
    update(report) {
      const view = set(report);
      return { view, findings: recomputeLoader(report.loaderId) };
    },
    has: (luId) => entries.has(luId),
    luIdsOf: (agentId) =>
      [...entries.values()]
        .filter((e) => e.report.paths.some((p) => p.agentId === agentId))
        .map((e) => e.report.luId),
    sites: () =>
      groupBySite(
        [...entries.values()].map((e) => e.view),
        loaderFinds,
        siteOf,
      ),
    agents: () =>
      registry
        .list()
        .map(agentView)
        .sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0)),
  };
}
