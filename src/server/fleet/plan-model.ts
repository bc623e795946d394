import { createHash } from 'node:crypto';
import { Command, ProutCommand } from '../../gen/prfleet/v1/agent.js';
import { Precondition } from '../../gen/prfleet/v1/control.js';
import {
  Finding,
  FindingKind,
  PlanStep,
  RegistrationState,
  Severity,
} from '../../gen/prfleet/v1/fleet.js';
import { PrType, ProutAction, type DeviceCapabilities } from '../../gen/prfleet/v1/scsi.js';
import { checkSupported } from '../../common/capabilities.js';
import { proutActionWords } from '../../common/command.js';
import { formatKey } from '../../common/key-layout.js';
import { prTypeWords } from '../../scsi/index.js';
import type { PathRegistration, UnitAnalysis } from './analyze.js';
import type { LuObservation } from './observe.js';
import { pathOnline } from './observe.js';

/** The planner's picture of an LU, updated step by step with what each PROUT will do (scsi-pr.md §7). */
export interface Model {
  /** PRgeneration; undefined once a step's effect on it cannot be predicted (planning stops there). */
  generation: number | undefined;
  /** A reservation exists. */
  reserved: boolean;
  /** Holder key (0 for all-registrants types). */
  holderKey: bigint;
  /** Reservation type. */
  type: PrType;
  /** Registration of each path (aligned with the observation's paths). */
  regs: PathRegistration[];
  /** Registered keys, once per nexus (exact only with READ FULL STATUS or known registrations). */
  keys: bigint[];
}

/** True for WE-AR and EA-AR, where every registrant is a holder and READ RESERVATION shows key 0. */
export function isAllRegistrants(type: PrType): boolean {
  return (
    type === PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS ||
    type === PrType.PR_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS
  );
}

/** The model of an observed LU (the observation must have a state). */
export function modelOf(obs: LuObservation, analysis: UnitAnalysis): Model {
  const s = obs.state;
  if (s === undefined) throw new Error(`cannot model ${obs.unit.luId}: it was not read`);
  return {
    generation: s.generation,
    reserved: s.reserved,
    holderKey: s.holderKey,
    type: s.type,
    regs: analysis.paths.map((r) => ({ ...r })),
    keys: [...s.keys],
  };
}

/** Words for a reservation type: "EXCLUSIVE ACCESS (3)". */
export function typeWords(type: PrType): string {
  return prTypeWords(type);
}

/** What planning one LU produced. */
export interface UnitPlan {
  /** Steps in order. */
  readonly steps: PlanStep[];
  /** Problems that leave part of the goal unreachable. */
  readonly blockers: Finding[];
  /** True when planning stopped at a step whose effect cannot be predicted: re-read and plan again after it. */
  readonly incomplete: boolean;
}

/** Collects the steps of one LU, keeping the model and the preconditions in step. */
export class StepBuilder {
  readonly steps: PlanStep[] = [];
  readonly blockers: Finding[] = [];
  incomplete = false;
  private readonly blocked = new Set<string>();

  constructor(
    readonly obs: LuObservation,
    readonly model: Model,
  ) {}

  /** The LU's capabilities. */
  get capabilities(): DeviceCapabilities | undefined {
    return this.obs.unit.unit.capabilities;
  }

  /** True when no more steps can be predicted. */
  get stopped(): boolean {
    return this.incomplete || this.model.generation === undefined;
  }

  /** Records a blocker once per (kind, agent, key, message). */
  block(
    kind: FindingKind,
    severity: Severity,
    message: string,
    suggestedAction: string,
    extra: { agentId?: string; path?: string; key?: bigint } = {},
  ): void {
    const id = `${kind}|${extra.agentId ?? ''}|${extra.key ?? ''}|${message}`;
    if (this.blocked.has(id)) return;
    this.blocked.add(id);
    this.blockers.push(
      Finding.fromPartial({
        kind,
        severity,
        luId: this.obs.unit.luId,
        loaderId: this.obs.unit.loaderId,
        agentId: extra.agentId ?? '',
        path: extra.path ?? '',
        key: extra.key ?? 0n,
        message,
        suggestedAction,
      }),
    );
  }

  /** Indexes of `agentId`'s paths to this LU. */
  pathsOf(agentId: string): number[] {
    return this.obs.paths.flatMap((p, i) =>
      p.fleetPath.agent.hello.agentId === agentId ? [i] : [],
    );
  }

  /** True when path `i` can take a command now. */
  online(i: number): boolean {
    const p = this.obs.paths[i];
    return p !== undefined && pathOnline(p.fleetPath);
  }

  /**
   * Adds a step on path `i`, guarded by the model's generation and holder, then applies `effect` to the model
   * (returning false there means the effect cannot be predicted: planning stops after this step). Returns false
   * (adding nothing, recording a blocker) when the profile cannot do the PROUT.
   */
  add(
    i: number,
    prout: Partial<ProutCommand>,
    description: string,
    reversible: boolean,
    effect: (m: Model) => boolean,
  ): boolean {
    if (this.stopped) return false;
    const path = this.obs.paths[i];
    if (path === undefined) throw new Error(`no path ${i} on ${this.obs.unit.luId}`);
    const command = ProutCommand.fromPartial(prout);
    const unsupported = checkSupported(
      this.capabilities,
      Command.fromPartial({
        path: path.fleetPath.path.path,
        kind: { $case: 'prout', value: command },
      }),
    );
    if (unsupported !== undefined) {
      this.block(
        FindingKind.FINDING_KIND_UNSUPPORTED_BY_PROFILE,
        Severity.SEVERITY_WARNING,
        `cannot ${description}: ${unsupported}`,
        'change the desired state to something this device supports',
      );
      return false;
    }
    const m = this.model;
    const precondition = Precondition.fromPartial({
      expectedGeneration: m.generation,
      // All-registrants reservations read as key 0 whoever registered: check the generation only.
      ...(m.reserved && isAllRegistrants(m.type)
        ? {}
        : { expectedHolderKey: m.reserved ? m.holderKey : 0n }),
    });
    const agentId = path.fleetPath.agent.hello.agentId;
    const pathName = path.fleetPath.path.path;
    const stepId = stepIdOf(this.obs.unit.luId, agentId, pathName, command, precondition);
    this.steps.push(
      PlanStep.fromPartial({
        stepId,
        luId: this.obs.unit.luId,
        loaderId: this.obs.unit.loaderId,
        agentId,
        path: pathName,
        prout: command,
        precondition,
        description: `${agentId}:${pathName} ${description}`,
        sequence: this.steps.length,
        reversible,
      }),
    );
    if (!effect(m)) this.incomplete = true;
    return true;
  }

  /** The finished plan. */
  result(): UnitPlan {
    return { steps: this.steps, blockers: this.blockers, incomplete: this.incomplete };
  }
}

/** Stable id of a step: what it does, where, and the state it expects (so a re-planned step gets a new id). */
export function stepIdOf(
  luId: string,
  agentId: string,
  path: string,
  prout: ProutCommand,
  precondition: Precondition,
): string {
  const text = JSON.stringify([
    luId,
    agentId,
    path,
    ProutCommand.toJSON(prout),
    Precondition.toJSON(precondition),
  ]);
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** Model effect of REGISTER AND IGNORE EXISTING KEY with SARK = `key` ≠ 0 on path `i`: always PRgeneration + 1. */
export function registerEffect(i: number, key: bigint): (m: Model) => boolean {
  return (m) => {
    const prior = m.regs[i];
    if (
      prior?.registration === RegistrationState.REGISTRATION_STATE_REGISTERED &&
      prior.key !== 0n
    ) {
      const at = m.keys.indexOf(prior.key);
      if (at >= 0) m.keys.splice(at, 1);
      if (m.reserved && m.holderKey === prior.key && prior.holder) m.holderKey = key; // the reservation follows the nexus
    }
    if (prior?.registration !== RegistrationState.REGISTRATION_STATE_UNKNOWN) m.keys.push(key);
    else if (!m.keys.includes(key)) m.keys.push(key);
    m.regs[i] = {
      registration: RegistrationState.REGISTRATION_STATE_REGISTERED,
      key,
      holder: prior?.holder ?? false,
    };
    m.generation = (m.generation ?? 0) + 1;
    return true;
  };
}

/** Model effect of unregistering path `i` (REGISTER AND IGNORE EXISTING KEY, SARK = 0). */
export function unregisterEffect(i: number): (m: Model) => boolean {
  return (m) => {
    const prior = m.regs[i];
    m.regs[i] = {
      registration: RegistrationState.REGISTRATION_STATE_NOT_REGISTERED,
      key: 0n,
      holder: false,
    };
    // SPC: +1 when the nexus was registered, no change when it was not; unknown → cannot predict.
    if (prior?.registration !== RegistrationState.REGISTRATION_STATE_REGISTERED) return false;
    const at = m.keys.indexOf(prior.key);
    if (at >= 0) m.keys.splice(at, 1);
    if (m.reserved && !isAllRegistrants(m.type) && prior.holder) m.reserved = false; // implicit release
    m.generation = (m.generation ?? 0) + 1;
    return true;
  };
}

/** Model effect of PREEMPT by `key` of `victim`, taking `type` when the victim held a non-AR reservation. */
export function preemptEffect(key: bigint, victim: bigint, type: PrType): (m: Model) => boolean {
  return (m) => {
    const victimHolds = m.reserved && !isAllRegistrants(m.type) && m.holderKey === victim;
    m.keys = m.keys.filter((k) => k !== victim);
    m.regs = m.regs.map((r) =>
      r.registration === RegistrationState.REGISTRATION_STATE_REGISTERED && r.key === victim
        ? {
            registration: RegistrationState.REGISTRATION_STATE_NOT_REGISTERED,
            key: 0n,
            holder: false,
          }
        : {
            ...r,
            holder: victimHolds
              ? r.key === key && r.registration === RegistrationState.REGISTRATION_STATE_REGISTERED
              : r.holder,
          },
    );
    if (victimHolds) {
      m.holderKey = key;
      m.type = type;
    }
    m.generation = (m.generation ?? 0) + 1;
    return true;
  };
}

/** The inverse PROUT of a completed step, for rollback; undefined when the step cannot be undone. */
export function inverseOf(step: PlanStep): ProutCommand | undefined {
  const p = step.prout;
  if (p === undefined || !step.reversible) return undefined;
  switch (p.action) {
    case ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY:
      // Registering from unregistered is undone by SARK 0; unregistering key K (sent as RK) by SARK K.
      return ProutCommand.fromPartial({
        action: p.action,
        reservationKey: p.serviceActionKey,
        serviceActionKey: p.serviceActionKey === 0n ? p.reservationKey : 0n,
      });
    case ProutAction.PROUT_ACTION_REGISTER:
      return ProutCommand.fromPartial({
        action: p.action,
        reservationKey: p.serviceActionKey,
        serviceActionKey: p.reservationKey,
      });
    case ProutAction.PROUT_ACTION_RESERVE:
      return ProutCommand.fromPartial({
        action: ProutAction.PROUT_ACTION_RELEASE,
        reservationKey: p.reservationKey,
        type: p.type,
      });
    case ProutAction.PROUT_ACTION_RELEASE:
      return ProutCommand.fromPartial({
        action: ProutAction.PROUT_ACTION_RESERVE,
        reservationKey: p.reservationKey,
        type: p.type,
      });
    default:
      return undefined;
  }
}

/** One-line description of a PROUT for step descriptions and events. */
export function describeProut(p: ProutCommand): string {
  const words = proutActionWords(p.action);
  switch (p.action) {
    case ProutAction.PROUT_ACTION_REGISTER:
    case ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY:
      return p.serviceActionKey === 0n
        ? `${words}: unregister ${formatKey(p.reservationKey)}`
        : `${words} ${formatKey(p.serviceActionKey)}`;
    case ProutAction.PROUT_ACTION_RESERVE:
    case ProutAction.PROUT_ACTION_RELEASE:
      return `${words} ${typeWords(p.type)} with ${formatKey(p.reservationKey)}`;
    case ProutAction.PROUT_ACTION_PREEMPT:
    case ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT:
      return `${words} ${formatKey(p.serviceActionKey)} with ${formatKey(p.reservationKey)} (type ${typeWords(p.type)})`;
    default:
      return `${words} with ${formatKey(p.reservationKey)}`;
  }
}
