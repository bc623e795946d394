import type { DevicePath, LogicalUnit } from '../gen/prfleet/v1/control.js';
import { Agent, AgentLink, type ListDevicesRequest } from '../gen/prfleet/v1/control.js';
import type { Path } from '../gen/prfleet/v1/scsi.js';
import { UNKNOWN_PROFILE } from '../common/capabilities.js';
import { invalidArgument, quoteInput } from '../common/errors.js';
import { compare, isConnected, type AgentRecord, type AgentRegistry } from './agents/index.js';

/** One path of a logical unit with the agent it belongs to. */
export interface FleetPath {
  /** The agent's record. */
  readonly agent: AgentRecord;
  /** The path as the agent reported it. */
  readonly path: Path;
}

/**
 * Paths grouped by lu_id across every known agent's inventory (connected or not), each group sorted by agent and
 * path. Shared and read-only: the grouping is kept per registry and rebuilt only when the inventories changed
 * (another agent set, or an agent's paths replaced), so an audit, ListDevices, GetDevice or an lu_id target no
 * longer regroup the whole fleet per call. Connection state is not part of it (read it from the records).
 */
export function pathsByLu(registry: AgentRegistry): ReadonlyMap<string, readonly FleetPath[]> {
  const records = registry.list();
  const cached = luIndexes.get(registry);
  if (cached !== undefined && sameInventories(cached, records)) return cached.groups;
  const index: LuIndex = {
    records,
    paths: records.map((r) => r.paths),
    groups: groupByLu(records),
  };
  luIndexes.set(registry, index);
  return index.groups;
}

/** The LU grouping of one set of inventories: the records and path lists it was built from (by identity). */
interface LuIndex {
  readonly records: readonly AgentRecord[];
  readonly paths: readonly (readonly Path[])[];
  readonly groups: ReadonlyMap<string, readonly FleetPath[]>;
}

const luIndexes = new WeakMap<AgentRegistry, LuIndex>();

/**
 * True when `records` are the index's records with the same path lists. A record's paths are replaced, never
 * changed in place, when an inventory arrives (AgentRegistry.setInventory, the shared inventory's mirror), so
 * identity says whether anything changed: O(agents), not O(paths) plus a sort.
 */
function sameInventories(index: LuIndex, records: readonly AgentRecord[]): boolean {
  if (index.records.length !== records.length) return false;
  for (let i = 0; i < records.length; i++) {
    const record = records[i] as AgentRecord;
    if (index.records[i] !== record || index.paths[i] !== record.paths) return false;
  }
  return true;
}

function groupByLu(records: readonly AgentRecord[]): Map<string, FleetPath[]> {
  const groups = new Map<string, FleetPath[]>();
  for (const agent of records) {
    for (const path of agent.paths) {
      // A path without an identity cannot be grouped (or addressed by lu_id); it is still reachable by agent+path.
      if (path.luId === '') continue;
      let group = groups.get(path.luId);
      if (group === undefined) groups.set(path.luId, (group = []));
      group.push({ agent, path });
    }
  }
  for (const group of groups.values()) {
    group.sort(
      (a, b) =>
        compare(a.agent.hello.agentId, b.agent.hello.agentId) || compare(a.path.path, b.path.path),
    );
  }
  return groups;
}

/** True when the path's agent is connected (to this or another instance) and the agent last saw the node work. */
export function isOnline(p: FleetPath): boolean {
  return isConnected(p.agent) && p.path.online;
}

/**
 * The LogicalUnit message for one group: identity and capabilities from a connected agent's path when there is
 * one (fresher), with a known profile preferred.
 */
export function toLogicalUnit(luId: string, paths: readonly FleetPath[]): LogicalUnit {
  const ranked = [...paths].sort((a, b) => rank(b) - rank(a));
  const best = ranked[0]?.path;
  const caps =
    ranked.find(
      (p) =>
        (p.path.capabilities?.profile ?? '') !== '' &&
        p.path.capabilities?.profile !== UNKNOWN_PROFILE,
    )?.path.capabilities ?? best?.capabilities;
  // Literals sharing the inventory's Path and capabilities objects (read-only here): fromPartial deep-copied each
  // path (designators, capabilities), ~10 µs per LU, paid for every LU of every audit and ListDevices.
  return {
    luId,
    peripheralDeviceType: best?.peripheralDeviceType ?? 0,
    vendor: best?.vendor ?? '',
    product: best?.product ?? '',
    revision: best?.revision ?? '',
    serial: best?.serial ?? '',
    loaderId: ranked.find((p) => p.path.loaderId !== '')?.path.loaderId ?? '',
    capabilities: caps,
    paths: paths.map((p): DevicePath => ({
      agentId: p.agent.hello.agentId,
      hostname: p.agent.hello.hostname,
      path: p.path,
      agentConnected: isConnected(p.agent),
    })),
  };
}

function rank(p: FleetPath): number {
  return (isConnected(p.agent) ? 2 : 0) + (p.path.online ? 1 : 0);
}

/** Parses ListDevicesRequest.labels ("key=value") into pairs; INVALID_ARGUMENT naming `labels[i]` otherwise. */
export function parseLabelFilters(labels: readonly string[]): [string, string][] {
  return labels.map((label, i) => {
    const eq = label.indexOf('=');
    if (eq <= 0) throw invalidArgument(`labels[${i}]`, `${quoteInput(label)} is not key=value`);
    return [label.slice(0, eq), label.slice(eq + 1)];
  });
}

/**
 * ListDevices: LUs sorted by loader then id. Site and label filters keep the paths of matching agents (an LU
 * with none is left out); type and loader filters apply to the LU.
 */
export function listLogicalUnits(
  registry: AgentRegistry,
  request: Pick<ListDevicesRequest, 'site' | 'labels' | 'peripheralDeviceType' | 'loaderId'>,
): LogicalUnit[] {
  const labels = parseLabelFilters(request.labels);
  const agentMatches = (agent: AgentRecord) =>
    (request.site === '' || agent.hello.site === request.site) &&
    labels.every(([k, v]) => agent.hello.labels[k] === v);
  const units: LogicalUnit[] = [];
  for (const [luId, allPaths] of pathsByLu(registry)) {
    const paths = allPaths.filter((p) => agentMatches(p.agent));
    if (paths.length === 0) continue;
    const unit = toLogicalUnit(luId, paths);
    if (
      request.peripheralDeviceType !== undefined &&
      unit.peripheralDeviceType !== request.peripheralDeviceType
    )
      continue;
    if (request.loaderId !== '' && unit.loaderId !== request.loaderId) continue;
    units.push(unit);
  }
  return units.sort((a, b) => compare(a.loaderId, b.loaderId) || compare(a.luId, b.luId));
}

/**
 * The ListAgents entry of a record: connected and server_instance say where the stream is, this instance
 * (`localInstanceId`) or another one (shared inventory).
 */
export function agentToProto(record: AgentRecord, localInstanceId: string): Agent {
  return Agent.fromPartial({
    agentId: record.hello.agentId,
    hostname: record.hello.hostname,
    version: record.hello.version,
    site: record.hello.site,
    labels: record.hello.labels,
    connected: isConnected(record),
    sessionId: record.lastSessionId,
    connectedAt: record.connectedAt,
    ...(record.lastHeartbeatAt === undefined ? {} : { lastHeartbeatAt: record.lastHeartbeatAt }),
    pathCount: record.paths.length,
    transport: record.hello.transport,
    serverInstance: record.session !== undefined ? localInstanceId : (record.remoteInstance ?? ''),
    link:
      record.link === 'long-poll'
        ? AgentLink.AGENT_LINK_LONG_POLL
        : record.link === 'stream'
          ? AgentLink.AGENT_LINK_STREAM
          : AgentLink.AGENT_LINK_UNSPECIFIED,
  });
}
