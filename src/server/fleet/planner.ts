import { ProutCommand } from '../../gen/prfleet/v1/agent.js';
import { FindingKind, RegistrationState, Severity } from '../../gen/prfleet/v1/fleet.js';
import { PrType, ProutAction } from '../../gen/prfleet/v1/scsi.js';
import { formatKey, type KeyPurpose } from '../../common/key-layout.js';
import type { UnitAnalysis } from './analyze.js';
import { suggest } from './suggest.js';
import type { KeyIndex } from './key-index.js';
import type { LuObservation } from './observe.js';
import {
  describeProut,
  isAllRegistrants,
  modelOf,
  preemptEffect,
  registerEffect,
  StepBuilder,
  typeWords,
  unregisterEffect,
  type UnitPlan,
} from './plan-model.js';

/** What the desired state asks of one LU (its loader's or group's state, changer or drive part). */
export interface UnitDesire {
  /** Where it comes from: `loader/<id>` or `group/<name>`. */
  readonly source: string;
  /** Hosts that should be registered on every path (the desired holder included). */
  readonly registered: readonly string[];
  /** Who should hold the reservation ('' = nobody) and with which type; undefined leaves it alone. */
  readonly reservation?: {
    readonly holder: string;
    readonly type: PrType;
    /** Longest hold (ms) before the holder counts as greedy for Takeover; undefined: no lease. */
    readonly leaseMs?: number;
  };
  /** Key purpose of the hosts' keys. */
  readonly purpose: KeyPurpose;
  /** Remove registrations of keys that belong to no listed host. */
  readonly removeOthers: boolean;
}

const REGISTER_IGNORE = ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY;
const REGISTERED = RegistrationState.REGISTRATION_STATE_REGISTERED;
const NOT_REGISTERED = RegistrationState.REGISTRATION_STATE_NOT_REGISTERED;

function unreachable(b: StepBuilder, obs: LuObservation): UnitPlan {
  b.block(
    FindingKind.FINDING_KIND_UNREACHABLE,
    Severity.SEVERITY_CRITICAL,
    `cannot plan: ${obs.error}`,
    'bring an agent with a path to this LU online, then plan again',
  );
  return b.result();
}

/** Adds REGISTER AND IGNORE EXISTING KEY steps so every online path of `agentId` is registered with `key`. */
function registerEverywhere(b: StepBuilder, agentId: string, key: bigint): void {
  for (const i of b.pathsOf(agentId)) {
    const reg = b.model.regs[i];
    if (reg?.registration === REGISTERED && reg.key === key) continue;
    const path = b.obs.paths[i]?.fleetPath.path.path ?? '';
    if (!b.online(i)) {
      b.block(
        FindingKind.FINDING_KIND_UNREACHABLE,
        Severity.SEVERITY_WARNING,
        `${agentId}:${path} is offline: cannot register ${formatKey(key)} on it`,
        `bring ${agentId} (and its path ${path}) online, then apply again`,
        { agentId, path, key },
      );
      continue;
    }
    // Undoable only from a known unregistered nexus (the inverse is SARK 0); replacing a key is not undone.
    const reversible = reg?.registration === NOT_REGISTERED;
    b.add(
      i,
      { action: REGISTER_IGNORE, serviceActionKey: key },
      `register ${formatKey(key)}`,
      reversible,
      registerEffect(i, key),
    );
  }
}

/** First online path of `agentId` registered (in the model) with `key`, else its first online path. */
function actingPath(b: StepBuilder, agentId: string, key: bigint): number | undefined {
  const mine = b.pathsOf(agentId).filter((i) => b.online(i));
  return (
    mine.find(
      (i) => b.model.regs[i]?.registration === REGISTERED && b.model.regs[i]?.key === key,
    ) ?? mine[0]
  );
}

/** The plan of an LU that could not be read: no steps, and the reason (what unreachable() reports). */
function unreachablePlan(obs: LuObservation): UnitPlan {
  const nothingKnown = {
    generation: undefined,
    reserved: false,
    holderKey: 0n,
    type: 0,
    regs: [],
    keys: [],
  };
  return unreachable(new StepBuilder(obs, nothingKnown), obs);
}

/** Each listed host's active key; a host without one is blocked (MISSING_KEY) and left out. */
function hostKeys(
  b: StepBuilder,
  obs: LuObservation,
  desire: UnitDesire,
  keys: KeyIndex,
): Map<string, bigint> {
  const keyOf = new Map<string, bigint>();
  for (const agentId of desire.registered) {
    const key = keys.activeKey(agentId, desire.purpose);
    if (key === undefined) {
      b.block(
        FindingKind.FINDING_KIND_MISSING_KEY,
        Severity.SEVERITY_WARNING,
        `${agentId} has no valid ${desire.purpose} key in the registry`,
        suggest.allocateKey(
          agentId,
          obs.paths.find((p) => p.fleetPath.agent.hello.agentId === agentId)?.fleetPath.agent.hello
            .site ?? '',
          desire.purpose,
        ),
        { agentId },
      );
      continue;
    }
    keyOf.set(agentId, key);
  }
  return keyOf;
}

/** The desired reservation, or undefined (blocked) when the device's known profile lacks its type. */
function supportedReservation(b: StepBuilder, desire: UnitDesire): UnitDesire['reservation'] {
  const want = desire.reservation;
  const caps = b.capabilities;
  if (
    want !== undefined &&
    want.holder !== '' &&
    caps !== undefined &&
    caps.profile !== '' &&
    caps.profile !== 'unknown' &&
    !caps.types.includes(want.type)
  ) {
    b.block(
      FindingKind.FINDING_KIND_UNSUPPORTED_BY_PROFILE,
      Severity.SEVERITY_WARNING,
      `${caps.profile} does not support reservation type ${typeWords(want.type)} asked by ${desire.source}`,
      `set a type this device supports (${caps.types.map((t) => typeWords(t)).join(', ')})`,
    );
    return undefined;
  }
  return want;
}

/** Nobody should hold: RELEASE through an online path of the holder, or block when none is here. */
function planRelease(b: StepBuilder, obs: LuObservation): void {
  const m = b.model;
  if (!m.reserved) return;
  const holderPath = m.regs.findIndex(
    (r, i) => r.holder && b.online(i) && r.registration === REGISTERED,
  );
  if (holderPath < 0) {
    b.block(
      FindingKind.FINDING_KIND_DRIFT,
      Severity.SEVERITY_WARNING,
      `reserved by ${formatKey(m.holderKey)}, which no online path here can act as`,
      suggest.takeover({ key: m.holderKey }, { lu: obs.unit.luId }),
      { key: m.holderKey },
    );
    return;
  }
  const key = isAllRegistrants(m.type) ? (m.regs[holderPath]?.key ?? 0n) : m.holderKey;
  b.add(
    holderPath,
    { action: ProutAction.PROUT_ACTION_RELEASE, reservationKey: key, type: m.type },
    `release ${typeWords(m.type)} held by ${formatKey(key)}`,
    true,
    (mm) => {
      mm.reserved = false;
      return true;
    },
  );
}

/** Adds a RESERVE of `type` with `key` through path `at`. */
function addReserve(b: StepBuilder, at: number, key: bigint, type: PrType): void {
  b.add(
    at,
    { action: ProutAction.PROUT_ACTION_RESERVE, reservationKey: key, type },
    `reserve ${typeWords(type)} with ${formatKey(key)}`,
    true,
    (mm) => {
      mm.reserved = true;
      mm.holderKey = isAllRegistrants(type) ? 0n : key;
      mm.type = type;
      mm.regs[at] = { ...(mm.regs[at] ?? { registration: REGISTERED, key }), holder: true };
      return true;
    },
  );
}

/**
 * `want.holder` should hold with `want.type`: RESERVE when free, RELEASE + RESERVE to change its own type,
 * PREEMPT another holder (its listed hosts registered again after). An all-registrants reservation of another
 * type is only reported: changing it removes every other registration.
 */
function planReserve(
  b: StepBuilder,
  obs: LuObservation,
  want: { readonly holder: string; readonly type: PrType },
  keyOf: ReadonlyMap<string, bigint>,
): void {
  const m = b.model;
  const key = keyOf.get(want.holder);
  if (key === undefined) return;
  const at = actingPath(b, want.holder, key);
  if (at === undefined) {
    b.block(
      FindingKind.FINDING_KIND_UNREACHABLE,
      Severity.SEVERITY_WARNING,
      `${want.holder} has no online path to this LU: cannot reserve`,
      `bring ${want.holder} online`,
      { agentId: want.holder },
    );
  } else if (!m.reserved) addReserve(b, at, key, want.type);
  else if (isAllRegistrants(m.type)) {
    if (m.type !== want.type) {
      b.block(
        FindingKind.FINDING_KIND_DRIFT,
        Severity.SEVERITY_WARNING,
        `an all-registrants reservation (${typeWords(m.type)}) is held; changing it removes every other registration`,
        suggest.takeover({ agent: '<host>' }, { lu: obs.unit.luId }, want.holder),
      );
    }
  } else if (m.holderKey === key) {
    if (m.type !== want.type) {
      const oldType = m.type;
      b.add(
        at,
        { action: ProutAction.PROUT_ACTION_RELEASE, reservationKey: key, type: oldType },
        `release ${typeWords(oldType)} to change the type`,
        true,
        (mm) => {
          mm.reserved = false;
          return true;
        },
      );
      addReserve(b, at, key, want.type);
    }
  } else {
    const victim = m.holderKey;
    b.add(
      at,
      {
        action: ProutAction.PROUT_ACTION_PREEMPT,
        reservationKey: key,
        serviceActionKey: victim,
        type: want.type,
      },
      `preempt holder ${formatKey(victim)} and reserve ${typeWords(want.type)}`,
      false,
      preemptEffect(key, victim, want.type),
    );
    // The preempted key's hosts lose their registrations; a listed host is registered again.
    for (const [agentId, k] of keyOf) if (k === victim) registerEverywhere(b, agentId, k);
  }
}

/**
 * Removes `victim`, a key no listed host uses: through its owner's own paths (unregister) when every online
 * path of that host is registered with it or unknown, else PREEMPT by a listed host registered here.
 */
function planRemoveKey(
  b: StepBuilder,
  victim: bigint,
  desire: UnitDesire,
  keys: KeyIndex,
  keyOf: ReadonlyMap<string, bigint>,
): void {
  const m = b.model;
  const ownerAgent = keys.record(victim)?.agentId ?? '';
  const own =
    ownerAgent === ''
      ? []
      : b
          .pathsOf(ownerAgent)
          .filter((i) => b.online(i) && m.regs[i]?.registration !== NOT_REGISTERED);
  if (
    own.length > 0 &&
    own.every((i) => m.regs[i]?.registration !== REGISTERED || m.regs[i]?.key === victim)
  ) {
    for (const i of own) {
      const known = m.regs[i]?.registration === REGISTERED;
      b.add(
        i,
        { action: REGISTER_IGNORE, reservationKey: victim, serviceActionKey: 0n },
        `unregister ${formatKey(victim)}`,
        known,
        unregisterEffect(i),
      );
    }
    return;
  }
  const preemptor = [...keyOf].find(([agentId, k]) =>
    b
      .pathsOf(agentId)
      .some((i) => b.online(i) && m.regs[i]?.registration === REGISTERED && m.regs[i]?.key === k),
  );
  if (preemptor === undefined) {
    b.block(
      FindingKind.FINDING_KIND_DRIFT,
      Severity.SEVERITY_WARNING,
      `cannot remove ${formatKey(victim)}: no listed host is registered here to preempt it`,
      `register a listed host first (prfleet apply), then apply again`,
      { key: victim },
    );
    return;
  }
  const [agentId, key] = preemptor;
  const at = actingPath(b, agentId, key) as number;
  const type = m.reserved ? m.type : desire.reservation?.type || firstType(b);
  b.add(
    at,
    {
      action: ProutAction.PROUT_ACTION_PREEMPT,
      reservationKey: key,
      serviceActionKey: victim,
      type,
    },
    `preempt ${formatKey(victim)}`,
    false,
    preemptEffect(key, victim, type),
  );
}

/**
 * Plans the PROUT steps that bring one observed LU to `desire`: register every listed host on every path
 * (REGISTER AND IGNORE EXISTING KEY), then the reservation (RESERVE; RELEASE + RESERVE to change type; PREEMPT
 * of another holder), then, with removeOthers, unregister hosts' own stale keys through their paths or PREEMPT
 * keys nobody here can act as. Each step's precondition is the state the previous steps leave (scsi-pr.md §7.11).
 */
export function planDesired(
  obs: LuObservation,
  analysis: UnitAnalysis,
  desire: UnitDesire,
  keys: KeyIndex,
): UnitPlan {
  if (obs.state === undefined) return unreachablePlan(obs);
  const b = new StepBuilder(obs, modelOf(obs, analysis));
  const keyOf = hostKeys(b, obs, desire, keys);

  // 1. Registrations.
  for (const agentId of [...desire.registered].sort()) {
    const key = keyOf.get(agentId);
    if (key !== undefined) registerEverywhere(b, agentId, key);
  }

  // 2. The reservation.
  const want = supportedReservation(b, desire);
  if (want !== undefined && !b.stopped) {
    if (want.holder === '') planRelease(b, obs);
    else planReserve(b, obs, want, keyOf);
  }

  // 3. Other keys.
  if (desire.removeOthers && !b.stopped) {
    const allowed = new Set(keyOf.values());
    for (const victim of [...new Set(b.model.keys)]) {
      if (victim === 0n || allowed.has(victim) || b.stopped) continue;
      planRemoveKey(b, victim, desire, keys, keyOf);
    }
  }
  return b.result();
}

function firstType(b: StepBuilder): PrType {
  return b.capabilities?.types[0] ?? PrType.PR_TYPE_WRITE_EXCLUSIVE;
}

/** What a takeover asks. */
export interface TakeoverSpec {
  /** Keys to preempt. */
  readonly victimKeys: ReadonlySet<bigint>;
  /** Host that takes over. */
  readonly taker: string;
  /** Its key. */
  readonly takerKey: bigint;
  /** Type to hold where the victim held; unspecified keeps the victim's type. */
  readonly type: PrType;
  /** PREEMPT AND ABORT instead of PREEMPT. */
  readonly abort: boolean;
}

/**
 * Plans a takeover of one LU: register the taker on every path (if needed), then PREEMPT (AND ABORT) each victim
 * key registered here, the taker becoming holder where a victim held. LUs without a victim key get no steps.
 */
export function planTakeover(
  obs: LuObservation,
  analysis: UnitAnalysis,
  spec: TakeoverSpec,
): UnitPlan {
  if (obs.state === undefined) return unreachablePlan(obs);
  const b = new StepBuilder(obs, modelOf(obs, analysis));
  const m = b.model;
  const present = [...new Set(m.keys)].filter((k) => spec.victimKeys.has(k) && k !== spec.takerKey);
  if (present.length === 0) return b.result();
  if (!b.pathsOf(spec.taker).some((i) => b.online(i))) {
    b.block(
      FindingKind.FINDING_KIND_UNREACHABLE,
      Severity.SEVERITY_CRITICAL,
      `${spec.taker} has no online path to this LU: cannot take over`,
      `bring ${spec.taker} online, or take over with another host`,
      { agentId: spec.taker },
    );
    return b.result();
  }
  registerEverywhere(b, spec.taker, spec.takerKey);
  const action = spec.abort
    ? ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT
    : ProutAction.PROUT_ACTION_PREEMPT;
  for (const victim of present) {
    const at = actingPath(b, spec.taker, spec.takerKey);
    if (at === undefined || b.stopped) break;
    const victimHolds = m.reserved && !isAllRegistrants(m.type) && m.holderKey === victim;
    const type = victimHolds
      ? spec.type || m.type
      : m.reserved
        ? m.type
        : spec.type || firstType(b);
    const prout = { action, reservationKey: spec.takerKey, serviceActionKey: victim, type };
    b.add(
      at,
      prout,
      describeProut(ProutCommand.fromPartial(prout)),
      false,
      preemptEffect(spec.takerKey, victim, type),
    );
  }
  return b.result();
}
