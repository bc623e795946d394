import { RegistrationState } from '../../gen/prfleet/v1/fleet.js';
import type { FullStatusDescriptor, Path } from '../../gen/prfleet/v1/scsi.js';
import { transportIdFromProto } from '../../common/command.js';
import { transportIdEquals } from '../../scsi/index.js';
import type { KeyIndex } from './key-index.js';
import type { LuObservation, LuState } from './observe.js';

/** What is known about one nexus's registration. */
export interface PathRegistration {
  /** Registered, not registered, or cannot tell. */
  readonly registration: RegistrationState;
  /** Its key, when known (0 otherwise). */
  readonly key: bigint;
  /** True when this nexus (or, without READ FULL STATUS, its host's key) holds the reservation. */
  readonly holder: boolean;
}

/** Per-nexus facts derived from one observation and the key registry. */
export interface UnitAnalysis {
  /** Registration of each path, aligned with LuObservation.paths. */
  readonly paths: readonly PathRegistration[];
  /** Agent holding the reservation, when it can be told ('' otherwise). */
  readonly holderAgentId: string;
  /** Registered keys with the number of nexuses holding each, in first-seen order. */
  readonly keyCounts: ReadonlyMap<bigint, number>;
}

function sameNexus(path: Path, d: FullStatusDescriptor): boolean {
  if (!d.allTgPt && d.relativeTargetPort !== path.relativeTargetPort) return false;
  try {
    return transportIdEquals(
      transportIdFromProto(path.initiatorPort, 'path.initiator_port'),
      transportIdFromProto(d.transportId, 'descriptor.transport_id'),
    );
  } catch {
    return false; // a path without a known initiator port cannot be matched
  }
}

/** One I_T nexus listed more than once in READ FULL STATUS, and the path (index) that reaches it, if any. */
export interface DuplicateRegistration {
  readonly descriptor: FullStatusDescriptor;
  readonly count: number;
  readonly pathIndex: number | undefined;
}

/**
 * I_T nexuses READ FULL STATUS lists more than once (same initiator port and relative target port, or ALL_TG_PT).
 * A device should never report that; LIO 6.1 does after a SPEC_I_PT REGISTER whose TransportIDs name the sender.
 */
export function duplicateRegistrations(
  obs: LuObservation,
  descriptors: readonly FullStatusDescriptor[],
): DuplicateRegistration[] {
  const seen: Array<{ descriptor: FullStatusDescriptor; count: number }> = [];
  for (const d of descriptors) {
    const same = seen.find((x) => sameRegistrationNexus(x.descriptor, d));
    if (same) same.count += 1;
    else seen.push({ descriptor: d, count: 1 });
  }
  return seen
    .filter((x) => x.count > 1)
    .map((x) => {
      const i = obs.paths.findIndex((p) => sameNexus(p.fleetPath.path, x.descriptor));
      return { ...x, pathIndex: i >= 0 ? i : undefined };
    });
}

function sameRegistrationNexus(a: FullStatusDescriptor, b: FullStatusDescriptor): boolean {
  if (a.allTgPt !== b.allTgPt || (!a.allTgPt && a.relativeTargetPort !== b.relativeTargetPort))
    return false;
  try {
    return transportIdEquals(
      transportIdFromProto(a.transportId, 'descriptor.transport_id'),
      transportIdFromProto(b.transportId, 'descriptor.transport_id'),
    );
  } catch {
    return false;
  }
}

const UNKNOWN: PathRegistration = {
  registration: RegistrationState.REGISTRATION_STATE_UNKNOWN,
  key: 0n,
  holder: false,
};

/**
 * Works out which nexus is registered. With READ FULL STATUS each path is matched to its descriptor by initiator
 * port and relative target port. Without it (the SuperLoader changer has only READ KEYS and READ RESERVATION)
 * the host's keys are counted: READ KEYS lists a key once per registered nexus, so a host with n paths and its
 * keys listed c times is registered on all (c ≥ n), none (c = 0), or some, which one unknown (0 < c < n).
 */
export function analyzeUnit(obs: LuObservation, keys: KeyIndex): UnitAnalysis {
  const state = obs.state;
  const keyCounts = new Map<bigint, number>();
  for (const k of state?.keys ?? []) keyCounts.set(k, (keyCounts.get(k) ?? 0) + 1);
  if (state === undefined)
    return { paths: obs.paths.map(() => UNKNOWN), holderAgentId: '', keyCounts };

  const registryHolder =
    state.reserved && state.holderKey !== 0n ? (keys.record(state.holderKey)?.agentId ?? '') : '';
  if (state.fullStatus !== undefined)
    return byFullStatus(obs, state.fullStatus, registryHolder, keyCounts);
  return byKeyCounts(obs, state, keys, registryHolder, keyCounts);
}

/** Each path matched to its READ FULL STATUS descriptor by initiator port and relative target port. */
function byFullStatus(
  obs: LuObservation,
  descriptors: readonly FullStatusDescriptor[],
  registryHolder: string,
  keyCounts: Map<bigint, number>,
): UnitAnalysis {
  let holderAgentId = '';
  const paths = obs.paths.map((p) => {
    const d = descriptors.find((x) => sameNexus(p.fleetPath.path, x));
    if (d === undefined)
      return {
        registration: RegistrationState.REGISTRATION_STATE_NOT_REGISTERED,
        key: 0n,
        holder: false,
      };
    if (d.reservationHolder && holderAgentId === '')
      holderAgentId = p.fleetPath.agent.hello.agentId;
    return {
      registration: RegistrationState.REGISTRATION_STATE_REGISTERED,
      key: d.key,
      holder: d.reservationHolder,
    };
  });
  return { paths, holderAgentId: holderAgentId || registryHolder, keyCounts };
}

/** Without per-nexus data: each host's keys in READ KEYS counted against its paths to the LU. */
function byKeyCounts(
  obs: LuObservation,
  state: LuState,
  keys: KeyIndex,
  registryHolder: string,
  keyCounts: Map<bigint, number>,
): UnitAnalysis {
  const byAgent = new Map<string, number[]>();
  obs.paths.forEach((p, i) => {
    const id = p.fleetPath.agent.hello.agentId;
    const list = byAgent.get(id);
    if (list === undefined) byAgent.set(id, [i]);
    else list.push(i);
  });
  const attributed = new Set<bigint>();
  for (const id of byAgent.keys())
    for (const k of keys.keysOf(id)) if (keyCounts.has(k)) attributed.add(k);
  const unattributed = [...keyCounts.keys()].some((k) => !attributed.has(k));
  const paths: PathRegistration[] = obs.paths.map(() => UNKNOWN);
  for (const [agentId, indexes] of byAgent) {
    const own = keys.keysOf(agentId).filter((k) => keyCounts.has(k));
    const count = own.reduce((sum, k) => sum + (keyCounts.get(k) ?? 0), 0);
    let reg: PathRegistration;
    if (count === 0) {
      // Keys nobody can be tied to might be this host's (a hand-chosen key): then we cannot tell.
      reg = unattributed
        ? UNKNOWN
        : {
            registration: RegistrationState.REGISTRATION_STATE_NOT_REGISTERED,
            key: 0n,
            holder: false,
          };
    } else if (count >= indexes.length) {
      const key = own.length === 1 ? (own[0] as bigint) : 0n;
      reg = {
        registration: RegistrationState.REGISTRATION_STATE_REGISTERED,
        key,
        holder: state.reserved && state.holderKey !== 0n && own.includes(state.holderKey),
      };
    } else {
      reg = UNKNOWN;
    }
    for (const i of indexes) paths[i] = reg;
  }
  return { paths, holderAgentId: registryHolder, keyCounts };
}

/** Per host: how many of its paths to the LU are registered, and how many it has (from analysis). */
export function registrationByAgent(
  obs: LuObservation,
  analysis: UnitAnalysis,
  keys: KeyIndex,
): Map<string, { registered: number; total: number; keyCount: number }> {
  const out = new Map<string, { registered: number; total: number; keyCount: number }>();
  obs.paths.forEach((p, i) => {
    const id = p.fleetPath.agent.hello.agentId;
    let entry = out.get(id);
    if (entry === undefined) {
      const keyCount = keys
        .keysOf(id)
        .reduce((sum, k) => sum + (analysis.keyCounts.get(k) ?? 0), 0);
      out.set(id, (entry = { registered: 0, total: 0, keyCount }));
    }
    entry.total += 1;
    if (analysis.paths[i]?.registration === RegistrationState.REGISTRATION_STATE_REGISTERED)
      entry.registered += 1;
  });
  return out;
}
