import type { LogicalUnit } from '../../gen/prfleet/v1/control.js';
import type { FleetSelector } from '../../gen/prfleet/v1/fleet.js';
import { invalidArgument, notFound, quoteInput, shownInput } from '../../common/errors.js';
import { compare, type AgentRecord, type AgentRegistry } from '../agents/index.js';
import { pathsByLu, toLogicalUnit, type FleetPath } from '../devices.js';

/** One selected logical unit with the paths the selector keeps. */
export interface SelectedUnit {
  /** LU identity. */
  readonly luId: string;
  /** Loader it belongs to ('' when unknown). */
  readonly loaderId: string;
  /** Identity and capabilities as ListDevices would show them. */
  readonly unit: LogicalUnit;
  /** Its paths (agents matching the selector's site and labels), sorted by agent and path. */
  readonly paths: readonly FleetPath[];
}

/** Parses "key=value" labels; INVALID_ARGUMENT naming `field[i]` otherwise. */
export function parseLabels(labels: readonly string[], field: string): [string, string][] {
  return labels.map((label, i) => {
    const eq = label.indexOf('=');
    if (eq <= 0) throw invalidArgument(`${field}[${i}]`, `${quoteInput(label)} is not key=value`);
    return [label.slice(0, eq), label.slice(eq + 1)];
  });
}

/** True when `agent` is of `site` (if given) and carries every label. */
export function agentMatches(
  agent: AgentRecord,
  site: string,
  labels: readonly [string, string][],
): boolean {
  return (
    (site === '' || agent.hello.site === site) &&
    labels.every(([k, v]) => agent.hello.labels[k] === v)
  );
}

/**
 * NOT_FOUND (ResourceInfo naming it) for the first id of the selector that names nothing any known agent reports:
 * a site, loader or logical unit (connected or recently seen agents count).
 */
function checkNamed(
  registry: AgentRegistry,
  grouped: ReadonlyMap<string, readonly FleetPath[]>,
  selector: FleetSelector | undefined,
): void {
  const site = selector?.site ?? '';
  if (site !== '' && !registry.list().some((a) => a.hello.site === site))
    throw notFound('site', site, `selector.site: no agent reports site ${shownInput(site)}`);
  (selector?.luIds ?? []).forEach((luId, i) => {
    if (!grouped.has(luId))
      throw notFound(
        'logical unit',
        luId,
        `selector.lu_ids[${i}]: no agent reports logical unit ${shownInput(luId)}`,
      );
  });
  const loaderIds = selector?.loaderIds ?? [];
  if (loaderIds.length === 0) return;
  const known = new Set<string>();
  for (const [luId, paths] of grouped) known.add(toLogicalUnit(luId, paths).loaderId);
  loaderIds.forEach((loaderId, i) => {
    if (!known.has(loaderId))
      throw notFound(
        'loader',
        loaderId,
        `selector.loader_ids[${i}]: no agent reports loader ${shownInput(loaderId)}`,
      );
  });
}

/**
 * The LUs a selector covers, sorted by loader then id. Site and labels keep the paths of matching agents (an LU
 * with none is left out); loader and LU ids filter the LUs. Throws INVALID_ARGUMENT for malformed labels and
 * NOT_FOUND for a site, loader or LU id that no known agent reports.
 */
export function selectUnits(
  registry: AgentRegistry,
  selector: FleetSelector | undefined,
): SelectedUnit[] {
  const site = selector?.site ?? '';
  const labels = parseLabels(selector?.labels ?? [], 'selector.labels');
  const loaders = new Set(selector?.loaderIds ?? []);
  const luIds = new Set(selector?.luIds ?? []);
  const grouped = pathsByLu(registry);
  checkNamed(registry, grouped, selector);
  const out: SelectedUnit[] = [];
  for (const [luId, all] of grouped) {
    if (luIds.size > 0 && !luIds.has(luId)) continue;
    const paths = all.filter((p) => agentMatches(p.agent, site, labels));
    if (paths.length === 0) continue;
    const unit = toLogicalUnit(luId, paths);
    if (loaders.size > 0 && !loaders.has(unit.loaderId)) continue;
    out.push({ luId, loaderId: unit.loaderId, unit, paths });
  }
  return out.sort((a, b) => compare(a.loaderId, b.loaderId) || compare(a.luId, b.luId));
}

/** True for a medium changer LU (PERIPHERAL DEVICE TYPE 08h). */
export function isChanger(unit: SelectedUnit): boolean {
  return unit.unit.peripheralDeviceType === 8;
}
