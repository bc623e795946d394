/**
 * The web fleet view's JSON (GET /api/v1/fleet and the SSE stream, docs/http.md): sites → loaders → LUs, built
 * from the audit's LogicalUnitReport and findings, the agent registry and the PROUT history. Plain JSON: keys
 * as 16 hex digits, enums as words, times as ISO 8601. Every string is data for the browser to show as text.
 */
import {
  findingKindToJSON,
  Reachability,
  RegistrationState,
  Severity,
  type Finding,
  type LogicalUnitReport,
} from '../../gen/prfleet/v1/fleet.js';
import { Outcome, outcomeToJSON, type PrType } from '../../gen/prfleet/v1/scsi.js';
import { formatKey } from '../../common/key-layout.js';
import { prTypeLongName, prTypeName } from '../../scsi/index.js';
import { compare, isConnected, type AgentRecord } from '../agents/index.js';
import type { HistoryEntry } from '../store/index.js';
import type {
  AgentView,
  FindingView,
  HistoryView,
  LuView,
  RegistrationView,
  HolderView,
  SeverityWord,
  SiteView,
} from './view-types.js';

export type * from './view-types.js';

const SEVERITY_WORDS: Record<number, SeverityWord> = {
  [Severity.SEVERITY_CRITICAL]: 'critical',
  [Severity.SEVERITY_WARNING]: 'warning',
  [Severity.SEVERITY_INFO]: 'info',
};

/** A finding as the view shows it. */
export function findingView(f: Finding): FindingView {
  return {
    severity: SEVERITY_WORDS[f.severity] ?? 'info',
    kind: findingKindToJSON(f.kind)
      .replace(/^FINDING_KIND_/, '')
      .toLowerCase(),
    message: f.message,
    suggestedAction: f.suggestedAction,
    luId: f.luId,
    agentId: f.agentId,
  };
}

const SEVERITY_ORDER: Record<SeverityWord, number> = { critical: 0, warning: 1, info: 2 };

/** Findings, most severe first. */
export function bySeverity(findings: readonly FindingView[]): FindingView[] {
  return [...findings].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
}

function registrationWord(state: RegistrationState): RegistrationView['registration'] {
  switch (state) {
    case RegistrationState.REGISTRATION_STATE_REGISTERED:
      return 'registered';
    case RegistrationState.REGISTRATION_STATE_NOT_REGISTERED:
      return 'not registered';
    default:
      return 'unknown';
  }
}

function typeWords(type: PrType, reserved: boolean): { type: string; typeName: string } {
  return reserved
    ? { type: prTypeName(type), typeName: prTypeLongName(type) }
    : { type: '', typeName: '' };
}

/**
 * The view of one LU from its report (the audit's, from one read). `online` tells which paths' agents are
 * connected with the node working; `hostname` names agents.
 */
export function luView(
  report: LogicalUnitReport,
  readAt: Date,
  online: (agentId: string, path: string) => boolean,
  hostname: (agentId: string) => string,
): LuView {
  const registrations = report.paths.map((p): RegistrationView => ({
    agentId: p.agentId,
    hostname: p.hostname,
    path: p.path,
    registration: registrationWord(p.registration),
    key: p.key === 0n ? '' : formatKey(p.key),
    holder: p.holder,
    online: online(p.agentId, p.path),
  }));
  const holderPath = registrations.find((r) => r.holder && r.agentId === report.holderAgentId);
  const holder: HolderView | null =
    report.reserved && report.holderKey !== 0n
      ? {
          agentId: report.holderAgentId,
          hostname: report.holderAgentId === '' ? '' : hostname(report.holderAgentId),
          path: holderPath?.path ?? '',
          key: formatKey(report.holderKey),
          online:
            report.holderAgentId !== '' &&
            registrations.some((r) => r.agentId === report.holderAgentId && r.online),
        }
      : null;
  const unread = report.reachability === Reachability.REACHABILITY_UNREACHABLE;
  return {
    luId: report.luId,
    loaderId: report.loaderId,
    role: report.peripheralDeviceType === 8 ? 'changer' : 'drive',
    vendor: report.vendor,
    product: report.product,
    serial: report.serial,
    status: unread ? 'unreadable' : 'read',
    error: report.error,
    readAt: readAt.toISOString(),
    generation: unread ? null : report.generation,
    reserved: report.reserved,
    ...typeWords(report.type, report.reserved),
    holder,
    registrations,
    findings: bySeverity(report.findings.map(findingView)),
  };
}

/** The view of one agent. */
export function agentView(record: AgentRecord): AgentView {
  const seen = record.lastHeartbeatAt ?? record.connectedAt;
  return {
    agentId: record.hello.agentId,
    hostname: record.hello.hostname,
    site: record.hello.site,
    connected: isConnected(record),
    lastSeen: seen === undefined ? '' : seen.toISOString(),
    paths: record.paths.length,
    version: record.hello.version,
  };
}

/** The view of one history entry. */
export function historyView(entry: HistoryEntry): HistoryView {
  const outcome = outcomeFromText(entry.outcome);
  return {
    seq: entry.seq,
    time: entry.at.toISOString(),
    actor: entry.actor,
    agentId: entry.agentId,
    path: entry.path,
    luId: entry.luId,
    action: entry.action.replace(/^PROUT_ACTION_/, '').replaceAll('_', ' '),
    type: entry.prType === null || entry.prType === 0 ? '' : prTypeName(entry.prType),
    key: formatKey(entry.reservationKey),
    serviceActionKey: formatKey(entry.serviceActionKey),
    outcome,
    reason: entry.reason ?? '',
  };
}

function outcomeFromText(text: string): string {
  return (text === '' ? outcomeToJSON(Outcome.OUTCOME_UNSPECIFIED) : text)
    .replace(/^OUTCOME_/, '')
    .replaceAll('_', ' ');
}

/** The site most of `lus`' paths are at (ties: the first by name), and every site seeing them. */
function sitesOfPaths(
  lus: readonly LuView[],
  siteOfAgent: (agentId: string) => string,
): { site: string; sites: string[] } {
  const counts = new Map<string, number>();
  for (const lu of lus)
    for (const r of lu.registrations) {
      const site = siteOfAgent(r.agentId);
      counts.set(site, (counts.get(site) ?? 0) + 1);
    }
  const ranked = [...counts].sort(([a, x], [b, y]) => y - x || compare(a, b));
  return { site: ranked[0]?.[0] ?? '', sites: [...counts.keys()].sort(compare) };
}

/**
 * Groups LU views into sites → loaders. A loader goes under the site most of its paths' agents are at (the
 * other sites that see it are listed with it); an LU outside any loader goes under its own paths' site.
 */
export function groupBySite(
  lus: Iterable<LuView>,
  loaderFindings: ReadonlyMap<string, readonly FindingView[]>,
  siteOfAgent: (agentId: string) => string,
): SiteView[] {
  const byLoader = new Map<string, LuView[]>();
  for (const lu of lus) {
    const list = byLoader.get(lu.loaderId);
    if (list === undefined) byLoader.set(lu.loaderId, [lu]);
    else list.push(lu);
  }
  type Placed = { lus: LuView[]; sites: Set<string> };
  const sites = new Map<string, Map<string, Placed>>();
  const place = (loaderId: string, list: readonly LuView[]) => {
    const { site, sites: seen } = sitesOfPaths(list, siteOfAgent);
    let loaders = sites.get(site);
    if (loaders === undefined) sites.set(site, (loaders = new Map<string, Placed>()));
    const entry = loaders.get(loaderId) ?? { lus: [], sites: new Set<string>() };
    entry.lus.push(...list);
    for (const s of seen) entry.sites.add(s);
    loaders.set(loaderId, entry);
  };
  for (const [loaderId, list] of byLoader) {
    if (loaderId === '') for (const lu of list) place('', [lu]);
    else place(loaderId, list);
  }
  const byLu = (a: LuView, b: LuView) => compare(a.luId, b.luId);
  return [...sites]
    .sort(([a], [b]) => compare(a, b))
    .map(([site, loaders]) => ({
      site,
      loaders: [...loaders]
        // Loaders by id; LUs outside any loader last.
        .sort(([a], [b]) => (a === '' ? 1 : b === '' ? -1 : compare(a, b)))
        .map(([loaderId, l]) => ({
          loaderId,
          sites: [...l.sites].sort(compare),
          changers: l.lus.filter((lu) => lu.role === 'changer').sort(byLu),
          drives: l.lus.filter((lu) => lu.role === 'drive').sort(byLu),
          findings: loaderFindings.get(loaderId) ?? [],
        })),
    }));
}
