import type { LogicalUnitReport, PathReport, RegisteredKey } from '../../gen/prfleet/v1/fleet.js';
import {
  Finding,
  FindingKind,
  KeyStatus,
  Reachability,
  RegistrationState,
  Severity,
} from '../../gen/prfleet/v1/fleet.js';
import type { FullStatusDescriptor } from '../../gen/prfleet/v1/scsi.js';
import { transportIdFromProto } from '../../common/command.js';
import { formatKey } from '../../common/key-layout.js';
import { formatTransportId } from '../../scsi/index.js';
import { duplicateRegistrations, registrationByAgent, type UnitAnalysis } from './analyze.js';
import { suggest } from './suggest.js';
import type { KeyIndex } from './key-index.js';
import type { LuObservation, LuState } from './observe.js';
import { planDesired, type UnitDesire } from './planner.js';
import { isAllRegistrants, typeWords } from './plan-model.js';

/** Where the audit looks up whether agents are connected. */
export interface AgentLookup {
  /** True when `agentId` has an open session. */
  isConnected(agentId: string): boolean;
  /** True when the server has ever heard of `agentId`. */
  isKnown(agentId: string): boolean;
}

function finding(
  obs: LuObservation,
  kind: FindingKind,
  severity: Severity,
  message: string,
  suggestedAction: string,
  extra: { agentId?: string; path?: string; key?: bigint } = {},
): Finding {
  return Finding.fromPartial({
    kind,
    severity,
    luId: obs.unit.luId,
    loaderId: obs.unit.loaderId,
    agentId: extra.agentId ?? '',
    path: extra.path ?? '',
    key: extra.key ?? 0n,
    message,
    suggestedAction,
  });
}

/** A descriptor's initiator port as text (formatTransportId), or '?' when it does not decode. */
function initiatorText(d: FullStatusDescriptor): string {
  try {
    return formatTransportId(transportIdFromProto(d.transportId, 'descriptor.transport_id'));
  } catch {
    return '?';
  }
}

/** Paths that could not be read, and the unit attentions each path had pending. */
function pathFindings(obs: LuObservation, out: Finding[]): void {
  for (const p of obs.paths) {
    const agentId = p.fleetPath.agent.hello.agentId;
    const path = p.fleetPath.path.path;
    if (!p.reachable) {
      out.push(
        finding(
          obs,
          FindingKind.FINDING_KIND_UNREACHABLE,
          obs.state === undefined ? Severity.SEVERITY_CRITICAL : Severity.SEVERITY_WARNING,
          `${agentId}:${path} could not be read: ${p.error}`,
          p.fleetPath.agent.session === undefined
            ? `check the agent on ${agentId} (${suggest.agents()})`
            : `check ${path} on ${agentId} (${suggest.devicesOfLoader(obs.unit.loaderId)})`,
          { agentId, path },
        ),
      );
    }
    for (const ua of p.unitAttentions) {
      out.push(
        finding(
          obs,
          FindingKind.FINDING_KIND_UNIT_ATTENTION,
          Severity.SEVERITY_INFO,
          `${agentId}:${path} had a pending unit attention: ${ua.sense?.description ?? 'unit attention'}`,
          'news for the host: its registration or reservation may have changed; audit again',
          { agentId, path },
        ),
      );
    }
  }
}

/** Keys the key registry does not know or has revoked. */
function keyFindings(
  obs: LuObservation,
  state: LuState,
  analysis: UnitAnalysis,
  keys: KeyIndex,
  out: Finding[],
): void {
  const lu = obs.unit.luId;
  for (const [key, count] of analysis.keyCounts) {
    const owner = keys.owner(key);
    const holds = state.reserved && state.holderKey === key;
    if (owner.status === KeyStatus.KEY_STATUS_UNKNOWN) {
      out.push(
        finding(
          obs,
          FindingKind.FINDING_KIND_UNKNOWN_KEY,
          holds ? Severity.SEVERITY_CRITICAL : Severity.SEVERITY_WARNING,
          `${formatKey(key)} is registered on ${count} nexus${count === 1 ? '' : 'es'}${holds ? ' and holds the reservation' : ''} but is not in the key registry (${owner.summary})`,
          `find its owner (the key registry does not know it); to take the LU from it: ${suggest.takeover({ key }, { lu })}`,
          { key },
        ),
      );
    } else if (owner.status === KeyStatus.KEY_STATUS_REVOKED) {
      out.push(
        finding(
          obs,
          FindingKind.FINDING_KIND_REVOKED_KEY,
          holds ? Severity.SEVERITY_CRITICAL : Severity.SEVERITY_WARNING,
          `revoked key ${formatKey(key)} (${owner.summary}) is still registered on ${count} nexus${count === 1 ? '' : 'es'}${holds ? ' and holds the reservation' : ''}`,
          suggest.takeover({ key }, { lu }),
          { key, agentId: owner.agentId },
        ),
      );
    }
  }
}

/** I_T nexuses registered more than once (a device bug). */
function duplicateFindings(obs: LuObservation, state: LuState, out: Finding[]): void {
  for (const dup of duplicateRegistrations(obs, state.fullStatus ?? [])) {
    const p = dup.pathIndex === undefined ? undefined : obs.paths[dup.pathIndex];
    const agentId = p?.fleetPath.agent.hello.agentId ?? '';
    const path = p?.fleetPath.path.path ?? '';
    const where = p
      ? `${agentId}:${path}`
      : `initiator port ${initiatorText(dup.descriptor)} through relative target port ${dup.descriptor.relativeTargetPort}`;
    out.push(
      finding(
        obs,
        FindingKind.FINDING_KIND_DUPLICATE_REGISTRATION,
        Severity.SEVERITY_WARNING,
        `${where} is registered ${dup.count} times (key ${formatKey(dup.descriptor.key)}): one I_T nexus registered more than once is a device bug (LIO 6.1 does it when a SPEC_I_PT REGISTER names the sender); each copy needs its own unregister (run the suggestion ${dup.count} times), then register again without naming the host itself in SPEC_I_PT`,
        suggest.unregister(agentId, path, dup.descriptor.key),
        { agentId, path, key: dup.descriptor.key },
      ),
    );
  }
}

/** A reservation whose holder's agent is not connected. */
function holderFindings(
  obs: LuObservation,
  state: LuState,
  analysis: UnitAnalysis,
  agents: AgentLookup,
  out: Finding[],
): void {
  if (state.reserved && !isAllRegistrants(state.type)) {
    const holderAgent = analysis.holderAgentId;
    if (holderAgent !== '' && !agents.isConnected(holderAgent)) {
      out.push(
        finding(
          obs,
          FindingKind.FINDING_KIND_HOLDER_OFFLINE,
          Severity.SEVERITY_CRITICAL,
          `reservation ${typeWords(state.type)} is held by ${formatKey(state.holderKey)} of ${holderAgent}, whose agent is ${agents.isKnown(holderAgent) ? 'offline' : 'unknown to this server'}`,
          `if ${holderAgent} is down: ${suggest.takeover({ agent: holderAgent }, { loader: obs.unit.loaderId })}`,
          { agentId: holderAgent, key: state.holderKey },
        ),
      );
    }
  }
}

/** Hosts registered on some of their paths only. */
function partialRegistrationFindings(
  obs: LuObservation,
  state: LuState,
  analysis: UnitAnalysis,
  keys: KeyIndex,
  out: Finding[],
): void {
  const lu = obs.unit.luId;
  for (const [agentId, r] of registrationByAgent(obs, analysis, keys)) {
    // With per-nexus data, count registered paths; otherwise the host's key count in READ KEYS.
    const registered =
      state.fullStatus !== undefined ? r.registered : Math.min(r.keyCount, r.total);
    if (registered > 0 && registered < r.total) {
      out.push(
        finding(
          obs,
          FindingKind.FINDING_KIND_PARTIAL_REGISTRATION,
          Severity.SEVERITY_WARNING,
          `${agentId} is registered on ${registered} of its ${r.total} paths to ${lu}`,
          `register ${agentId} on every path: prfleet apply with a desired state listing ${agentId}, or ${suggest.register(agentId)} on the missing path`,
          { agentId },
        ),
      );
    }
  }
}

/** How the LU differs from its desired state: the planner's blockers and the first step of the fix. */
function driftFindings(
  obs: LuObservation,
  analysis: UnitAnalysis,
  desire: UnitDesire,
  keys: KeyIndex,
  out: Finding[],
): void {
  const lu = obs.unit.luId;
  const plan = planDesired(obs, analysis, desire, keys);
  for (const b of plan.blockers) {
    // Unreachable paths are pathFindings' already.
    if (b.kind !== FindingKind.FINDING_KIND_UNREACHABLE) out.push(b);
  }
  if (plan.steps.length > 0) {
    const first = plan.steps[0]?.description ?? '';
    out.push(
      finding(
        obs,
        FindingKind.FINDING_KIND_DRIFT,
        Severity.SEVERITY_WARNING,
        `differs from desired state ${desire.source}: ${plan.steps.length}${plan.incomplete ? '+' : ''} step${plan.steps.length === 1 ? '' : 's'} to fix, first: ${first}`,
        suggest.planAndApply(lu),
      ),
    );
  }
}

/**
 * The findings of one LU: unreachable agents and paths, pending unit attentions, unknown and revoked keys, a
 * holder whose agent is offline, hosts registered on some paths only, and (with a desired state) drift,
 * missing keys and what the profile cannot do.
 */
export function unitFindings(
  obs: LuObservation,
  analysis: UnitAnalysis,
  keys: KeyIndex,
  agents: AgentLookup,
  desire: UnitDesire | undefined,
): Finding[] {
  const out: Finding[] = [];
  pathFindings(obs, out);
  const state = obs.state;
  if (state === undefined) return out;
  keyFindings(obs, state, analysis, keys, out);
  duplicateFindings(obs, state, out);
  holderFindings(obs, state, analysis, agents, out);
  partialRegistrationFindings(obs, state, analysis, keys, out);
  if (desire !== undefined) driftFindings(obs, analysis, desire, keys, out);
  return out;
}

/** The LogicalUnitReport of one observation. */
export function buildReport(
  obs: LuObservation,
  analysis: UnitAnalysis,
  keys: KeyIndex,
  findings: Finding[],
): LogicalUnitReport {
  const unit = obs.unit.unit;
  const state = obs.state;
  const reachable = obs.paths.filter((p) => p.reachable).length;
  const reachability =
    state === undefined
      ? Reachability.REACHABILITY_UNREACHABLE
      : reachable === obs.paths.length
        ? Reachability.REACHABILITY_REACHABLE
        : Reachability.REACHABILITY_PARTIAL;
  // A literal sharing the unit's capabilities, the key index's owners and the paths' initiator ports (read-only):
  // fromPartial deep-copied all of them for each of an audit's thousands of reports.
  return {
    luId: obs.unit.luId,
    loaderId: obs.unit.loaderId,
    peripheralDeviceType: unit.peripheralDeviceType,
    vendor: unit.vendor,
    product: unit.product,
    serial: unit.serial,
    capabilities: unit.capabilities,
    reachability,
    generation: state?.generation ?? 0,
    reserved: state?.reserved ?? false,
    holderKey: state?.holderKey ?? 0n,
    type: state?.type ?? 0,
    scope: state?.scope ?? 0,
    holder: state?.reserved && state.holderKey !== 0n ? keys.owner(state.holderKey) : undefined,
    holderAgentId: analysis.holderAgentId,
    keys: [...analysis.keyCounts].map(([key, nexusCount]): RegisteredKey => ({
      key,
      nexusCount,
      owner: keys.owner(key),
    })),
    paths: obs.paths.map((p, i): PathReport => {
      const reg = analysis.paths[i];
      return {
        agentId: p.fleetPath.agent.hello.agentId,
        hostname: p.fleetPath.agent.hello.hostname,
        path: p.fleetPath.path.path,
        agentConnected: p.fleetPath.agent.session !== undefined,
        reachable: p.reachable,
        initiatorPort: p.fleetPath.path.initiatorPort,
        relativeTargetPort: p.fleetPath.path.relativeTargetPort,
        registration: reg?.registration ?? RegistrationState.REGISTRATION_STATE_UNKNOWN,
        key: reg?.key ?? 0n,
        holder: reg?.holder ?? false,
        unitAttentions: [...p.unitAttentions],
        error: p.error,
      };
    }),
    findings,
    fullStatus: state?.fullStatus !== undefined,
    error: obs.error,
  };
}

/** What the loader-level check needs of each LU report. */
export type LoaderDigest = Pick<
  LogicalUnitReport,
  'luId' | 'loaderId' | 'peripheralDeviceType' | 'reserved' | 'holderKey' | 'holderAgentId'
>;

/**
 * Loader-level findings: a changer and a drive of one loader reserved by different hosts (or, when the hosts
 * are unknown, different keys) is a deadlock: each host has one of the two LUs a backup needs.
 */
export function loaderFindings(reports: readonly LoaderDigest[]): Finding[] {
  const byLoader = new Map<string, LoaderDigest[]>();
  for (const r of reports) {
    if (r.loaderId === '') continue;
    let list = byLoader.get(r.loaderId);
    if (list === undefined) byLoader.set(r.loaderId, (list = []));
    list.push(r);
  }
  const out: Finding[] = [];
  const who = (r: LoaderDigest) => r.holderAgentId || formatKey(r.holderKey);
  for (const [loaderId, list] of byLoader) {
    const held = list.filter((r) => r.reserved && r.holderKey !== 0n);
    for (const changer of held.filter((r) => r.peripheralDeviceType === 8)) {
      for (const drive of held.filter((r) => r.peripheralDeviceType !== 8)) {
        const sameHost =
          changer.holderAgentId !== '' && changer.holderAgentId === drive.holderAgentId;
        if (sameHost || changer.holderKey === drive.holderKey) continue;
        out.push(
          Finding.fromPartial({
            kind: FindingKind.FINDING_KIND_LOADER_DEADLOCK,
            severity: Severity.SEVERITY_CRITICAL,
            loaderId,
            luId: drive.luId,
            agentId: drive.holderAgentId,
            key: drive.holderKey,
            message: `loader ${loaderId}: changer ${changer.luId} is reserved by ${who(changer)} while drive ${drive.luId} is reserved by ${who(drive)}: neither host can run a backup`,
            suggestedAction: `release one side, or ${suggest.takeover(drive.holderAgentId ? { agent: drive.holderAgentId } : { key: drive.holderKey }, { loader: loaderId }, changer.holderAgentId || undefined)}`,
          }),
        );
      }
    }
  }
  return out;
}
