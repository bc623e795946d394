/**
 * PERSISTENT RESERVE OUT (5Fh) on the device side: the evaluation order of scsi-pr.md §7.1 and the service-action
 * rules of §7.2–§7.9, with every SPC/LIO/SuperLoader difference read from the profile knobs.
 * @internal
 */
import {
  decodeProutCdb,
  decodeProutParameters,
  formatTransportId,
  ScsiDecodeError,
  transportIdEquals,
  type ProutBasicParameters,
  type ProutMoveParameters,
  type TransportId,
} from '../scsi/index.js';
import {
  CONFLICT,
  flavourAnswer,
  good,
  INSUFFICIENT_REGISTRATION_RESOURCES,
  invalidCdbField,
  invalidParameterField,
  PARAMETER_LIST_LENGTH_ERROR,
  type Answer,
} from './answers.js';
import type { LuContext } from './context.js';
import {
  initiatorPortOf,
  isAllRegistrants,
  isRegistrantsOnly,
  nexusKeyOf,
  type Initiator,
  type Registration,
} from './pr-state.js';

const REGISTER = 0;
const RESERVE = 1;
const RELEASE = 2;
const CLEAR = 3;
const PREEMPT = 4;
const PREEMPT_AND_ABORT = 5;
const REGISTER_AND_IGNORE = 6;
const REGISTER_AND_MOVE = 7;

/** Basic parameter list length (scsi-pr.md §3). */
const BASIC_LENGTH = 24;
/** Parameter list byte 20: SPEC_I_PT bit 3, ALL_TG_PT bit 2, APTPL bit 0 (scsi-pr.md §3). */
const FLAGS_BYTE = 20;

// 2Ah/xx unit attentions raised by PR (scsi-pr.md §7.12).
const RESERVATIONS_PREEMPTED = 0x03;
const RESERVATIONS_RELEASED = 0x04;
const REGISTRATIONS_PREEMPTED = 0x05;

/** Executes one PROUT from `initiator`; the SPC-2 reservation check happened before. @internal */
export function executeProut(
  lu: LuContext,
  initiator: Initiator,
  cdb: Uint8Array,
  dataOut: Uint8Array | undefined,
): Answer {
  const { knobs, pr } = lu;
  const fields = decodeProutCdb(cdb);
  const sa = fields.serviceAction;
  // The device reads PARAMETER LIST LENGTH bytes; a short data-out reads as zeros, as a DMA underrun would.
  const params = new Uint8Array(fields.parameterListLength);
  if (dataOut) params.set(dataOut.subarray(0, fields.parameterListLength));
  const caller = pr.registrationOf(initiator);

  // §7.1 step 2: a reservation exists and the caller does not hold it → table 6.3, before parsing anything.
  const res = pr.reservation;
  if (res && !pr.isHolder(caller)) {
    const admittedRegistrant =
      caller !== undefined && isRegistrantsOnly(res.type) && knobs.registrantsOnlyAdmitsRegistrants;
    const allowed =
      admittedRegistrant ||
      sa === REGISTER ||
      sa === REGISTER_AND_IGNORE ||
      (caller !== undefined &&
        (sa === RELEASE || sa === CLEAR || sa === PREEMPT || sa === PREEMPT_AND_ABORT));
    if (sa <= REGISTER_AND_MOVE && !allowed) return CONFLICT;
  }
  // LIO: a service action its table does not know conflicts for anyone but the registration that reserved (under
  // AR types the other registrants too), before the service action is checked.
  if (res && sa > REGISTER_AND_MOVE && knobs.unknownServiceActionConflicts) {
    if (caller === undefined || res.internalHolder !== caller) return CONFLICT;
  }

  if (
    knobs.fixedParameterListLength !== undefined &&
    params.length !== knobs.fixedParameterListLength
  ) {
    return PARAMETER_LIST_LENGTH_ERROR;
  }
  // Step 3: shorter than the basic list.
  if (params.length < BASIC_LENGTH) return PARAMETER_LIST_LENGTH_ERROR;
  // Read before the list is known to be well-formed: the evaluation order needs SPEC_I_PT first.
  const specIPtFlag = sa !== REGISTER_AND_MOVE && ((params[FLAGS_BYTE] as number) & 0x08) !== 0;
  // Step 4: SPEC_I_PT with a service action (or on a device) that does not allow it.
  if (specIPtFlag) {
    const allowed =
      knobs.capabilities.specIPt &&
      (sa === REGISTER || (sa === REGISTER_AND_IGNORE && knobs.specIPtWithRegisterAndIgnore));
    if (!allowed) return invalidParameterField(FLAGS_BYTE, 3);
  }
  // Step 5: SPEC_I_PT = 0 and not REGISTER AND MOVE: exactly 24 bytes.
  if (!specIPtFlag && sa !== REGISTER_AND_MOVE && params.length !== BASIC_LENGTH) {
    return PARAMETER_LIST_LENGTH_ERROR;
  }
  // Step 6: service actions the device does not implement.
  if (!knobs.capabilities.proutServiceActions.includes(sa)) return invalidCdbField(1, 4);

  let decoded: ProutBasicParameters | ProutMoveParameters;
  try {
    decoded = decodeProutParameters(sa, params);
  } catch (e) {
    if (!(e instanceof ScsiDecodeError)) throw e;
    return invalidParameterField(e.offset);
  }
  if (decoded.kind === 'move')
    return registerAndMove(lu, initiator, caller, decoded, params.length);
  switch (sa) {
    case REGISTER:
    case REGISTER_AND_IGNORE:
      return register(lu, initiator, caller, sa === REGISTER_AND_IGNORE, decoded);
    case RESERVE:
      return reserve(lu, caller, fields.type, fields.scope, decoded.reservationKey);
    case RELEASE:
      return release(lu, initiator, caller, fields.type, fields.scope, decoded.reservationKey);
    case CLEAR:
      return clear(lu, initiator, caller, decoded.reservationKey);
    case PREEMPT:
    case PREEMPT_AND_ABORT:
      return preempt(
        lu,
        initiator,
        caller,
        fields.type,
        fields.scope,
        decoded,
        sa === PREEMPT_AND_ABORT,
      );
    default:
      // REPLACE LOST RESERVATION and reserved codes: no profile implements them (scsi-pr.md §7.9).
      return invalidCdbField(1, 4);
  }
}

/** TYPE not supported by the profile → 24h/00h pointing at CDB byte 2 bits 3–0. */
function typeError(lu: LuContext, type: number): Answer | undefined {
  return lu.knobs.capabilities.types.includes(type) ? undefined : invalidCdbField(2, 3);
}

/** SCOPE ≠ LU_SCOPE → the profile's flavour (SPC 24h/00h on CDB byte 2 bit 7; LIO 26h/00h). */
function scopeError(lu: LuContext, scope: number): Answer | undefined {
  return scope === 0
    ? undefined
    : flavourAnswer(lu.knobs.badScope, { inCdb: true, byte: 2, bit: 7 });
}

/** Unregistered caller: RC, or the profile's flavour when no reservation exists (LIO NOT READY). */
function unregisteredAnswer(lu: LuContext): Answer {
  return lu.pr.reservation ? CONFLICT : flavourAnswer(lu.knobs.unregisteredWithoutReservation);
}

/** Whether another registration may be created (55h/04h otherwise). */
function hasRoom(lu: LuContext, additional: number): boolean {
  return lu.pr.registrations.length + additional <= lu.maxRegistrations;
}

/**
 * A TransportID the target can resolve to an initiator port: the caller's protocol and, with ACLs, known to target
 * port `port` (REGISTER AND MOVE) or to any port (SPEC_I_PT, `port` undefined).
 */
function resolvable(
  lu: LuContext,
  caller: TransportId,
  named: TransportId,
  port?: number,
): boolean {
  if (named.protocol === 'raw' || named.protocol !== caller.protocol) return false;
  return lu.acl === undefined || portsKnowing(lu, named, port).length > 0;
}

/** Target ports (in the LU's port order, or just `port`) whose ACL lists `named`. */
function portsKnowing(lu: LuContext, named: TransportId, port?: number): number[] {
  const ports = port === undefined ? lu.targetPorts : [port];
  return ports.filter((p) => lu.acl?.[p]?.some((t) => transportIdEquals(t, named)) ?? false);
}

/** Unregisters `reg` (REGISTER with SARK 0), with the implicit-release rules of §7.2. */
function unregister(lu: LuContext, reg: Registration, initiator: Initiator): void {
  const { pr } = lu;
  const { releasedType } = pr.remove(reg);
  if (releasedType !== undefined && isRegistrantsOnly(releasedType)) {
    for (const other of pr.registrations) notify(lu, other, RESERVATIONS_RELEASED, initiator);
  }
}

function register(
  lu: LuContext,
  initiator: Initiator,
  caller: Registration | undefined,
  ignoreExisting: boolean,
  p: ProutBasicParameters,
): Answer {
  const { knobs, pr } = lu;
  if (!caller) {
    if (!ignoreExisting && p.reservationKey !== 0n) return CONFLICT;
  } else {
    if (!ignoreExisting && p.reservationKey !== caller.key) return CONFLICT;
    if (p.specIPtFlag) return invalidParameterField(FLAGS_BYTE, 3);
    // LIO: an ALL_TG_PT registration may only be changed or removed with ALL_TG_PT = 1 (INVALID FIELD IN CDB).
    if (knobs.allTgPtMustRepeat && caller.allTgPt && !p.allTgPt)
      return flavourAnswer('invalid-field-in-cdb');
  }
  if (p.allTgPt && !knobs.capabilities.allTgPt) return invalidParameterField(FLAGS_BYTE, 2);
  if (p.aptpl && !knobs.capabilities.aptpl) return invalidParameterField(FLAGS_BYTE, 0);

  if (caller) {
    if (p.serviceActionKey === 0n) {
      unregister(lu, caller, initiator);
      if (knobs.generationOnUnregister) pr.bump();
    } else {
      caller.key = p.serviceActionKey;
      pr.bump();
    }
    pr.aptpl = p.aptpl;
    return good();
  }
  // Unregistered caller, SARK 0: nothing to do (§7.2).
  if (p.serviceActionKey === 0n) return good();

  const port = initiatorPortOf(initiator.transportId);
  const extra: Initiator[] = [];
  for (const [i, named] of p.transportIds.entries()) {
    if (!resolvable(lu, initiator.transportId, named)) {
      // All or nothing (spc4r17 6.14.3 as quoted by LIO): one bad TransportID and nobody is registered.
      return invalidParameterField(28 + transportIdOffset(p.transportIds, i));
    }
    const namedPort = initiatorPortOf(named);
    const nexus: Initiator = {
      transportId: named,
      relativeTargetPort: specIPtTargetPort(lu, initiator, named),
    };
    // LIO silently skips TransportIDs that are already registered (and the caller's own port, except for its
    // 6.1 bug: the sender's own registration is not made yet when it looks, so the sender is registered twice).
    if (namedPort === port) {
      if (
        knobs.bugSpecIPtRegistersSenderTwice &&
        !extra.some((t) => initiatorPortOf(t.transportId) === port)
      )
        extra.push(nexus);
      continue;
    }
    if (pr.registrationOf(nexus)) continue;
    if (extra.some((t) => initiatorPortOf(t.transportId) === namedPort)) continue;
    extra.push(nexus);
  }
  if (!hasRoom(lu, 1 + extra.length)) return INSUFFICIENT_REGISTRATION_RESOURCES;
  for (const nexus of [initiator, ...extra]) {
    pr.registrations.push({
      key: p.serviceActionKey,
      transportId: nexus.transportId,
      initiatorPort: initiatorPortOf(nexus.transportId),
      relativeTargetPort: nexus.relativeTargetPort,
      allTgPt: p.allTgPt,
    });
  }
  pr.bump(knobs.generationPerSpecIPtRegistration ? 1 + extra.length : 1);
  pr.aptpl = p.aptpl;
  return good();
}

/**
 * Target port of the I_T nexus a SPEC_I_PT registration for `named` is made on: the receiving port (SPC-4), or the
 * first port through which `named` has an I_T nexus (LIO; the receiving port when it has none yet).
 */
function specIPtTargetPort(lu: LuContext, receiving: Initiator, named: TransportId): number {
  if (lu.knobs.specIPtTargetPort === 'receiving') return receiving.relativeTargetPort;
  if (lu.acl !== undefined) return portsKnowing(lu, named)[0] ?? receiving.relativeTargetPort;
  return lu.knownNexusesOf(named)[0]?.relativeTargetPort ?? receiving.relativeTargetPort;
}

/** Byte offset of TransportID `index` inside the TransportID list (for the field pointer). */
function transportIdOffset(list: readonly TransportId[], index: number): number {
  let offset = 0;
  for (let i = 0; i < index; i++) {
    const t = list[i] as TransportId;
    offset +=
      t.protocol === 'iscsi'
        ? Math.max(24, Math.ceil((formatTransportId(t).length + 1) / 4) * 4)
        : 24;
  }
  return offset;
}

function reserve(
  lu: LuContext,
  caller: Registration | undefined,
  type: number,
  scope: number,
  reservationKey: bigint,
): Answer {
  const { pr } = lu;
  const bad = typeError(lu, type);
  if (bad) return bad;
  if (!caller) return unregisteredAnswer(lu);
  if (reservationKey !== caller.key) return CONFLICT;
  const badScope = scopeError(lu, scope);
  if (badScope) return badScope;
  const res = pr.reservation;
  if (res) {
    if (!pr.isHolder(caller)) return CONFLICT;
    // Same TYPE and SCOPE: no-op; a change goes through PREEMPT of one's own key (§7.3).
    return res.type === type && res.scope === scope ? good() : CONFLICT;
  }
  const ar = isAllRegistrants(type);
  pr.reservation = { type, scope, holder: ar ? undefined : caller, internalHolder: caller };
  return good();
}

function release(
  lu: LuContext,
  initiator: Initiator,
  caller: Registration | undefined,
  type: number,
  scope: number,
  reservationKey: bigint,
): Answer {
  const { pr, knobs } = lu;
  if (!caller) return unregisteredAnswer(lu);
  const res = pr.reservation;
  if (!res || !pr.isHolder(caller)) return good();
  if (reservationKey !== caller.key) return CONFLICT;
  if (res.type !== type || res.scope !== scope) return flavourAnswer(knobs.releaseWrongType);
  pr.reservation = undefined;
  if (isRegistrantsOnly(res.type) || isAllRegistrants(res.type)) {
    for (const reg of pr.registrations) notify(lu, reg, RESERVATIONS_RELEASED, initiator);
  }
  return good();
}

/** Queues 2Ah/`ascq` on every nexus `reg` covers except the caller's own I_T nexus. */
function notify(lu: LuContext, reg: Registration, ascq: number, except: Initiator): void {
  const exceptKey = nexusKeyOf(except);
  for (const n of lu.nexusesOf(reg)) {
    if (nexusKeyOf(n) !== exceptKey) lu.queueUnitAttention(n, 0x2a, ascq);
  }
}

function clear(
  lu: LuContext,
  initiator: Initiator,
  caller: Registration | undefined,
  reservationKey: bigint,
): Answer {
  const { pr, knobs } = lu;
  if (!caller) return unregisteredAnswer(lu);
  if (reservationKey !== caller.key) return CONFLICT;
  for (const reg of pr.registrations) notify(lu, reg, RESERVATIONS_PREEMPTED, initiator);
  pr.registrations = [];
  pr.reservation = undefined;
  pr.bump();
  if (knobs.clearResetsAptpl) pr.aptpl = false;
  return good();
}

function preempt(
  lu: LuContext,
  initiator: Initiator,
  caller: Registration | undefined,
  type: number,
  scope: number,
  p: ProutBasicParameters,
  abort: boolean,
): Answer {
  const { pr, knobs } = lu;
  // TYPE before the caller's registration and key, as for RESERVE: LIO core_scsi3_emulate_pro_preempt switches on
  // the type before core_scsi3_pro_preempt looks anything up (measured on 6.1: 24h/00h for a wrong key too).
  const badType = typeError(lu, type);
  if (badType) return badType;
  if (!caller) return CONFLICT;
  if (p.reservationKey !== caller.key) return CONFLICT;
  const badScope = scopeError(lu, scope);
  if (badScope) return badScope;

  const sark = p.serviceActionKey;
  const res = pr.reservation;
  const removed: Registration[] = [];
  const removeWhere = (match: (r: Registration) => boolean): void => {
    for (const r of [...pr.registrations]) {
      if (match(r)) {
        pr.registrations = pr.registrations.filter((x) => x !== r);
        removed.push(r);
      }
    }
  };
  const finish = (newReservation: boolean, oldType?: number, oldScope?: number): Answer => {
    for (const r of removed) notify(lu, r, REGISTRATIONS_PREEMPTED, initiator);
    if (newReservation && (oldType !== type || oldScope !== scope)) {
      for (const r of pr.registrations) notify(lu, r, RESERVATIONS_RELEASED, initiator);
    }
    pr.bump();
    if (abort) {
      const callerKey = nexusKeyOf(initiator);
      lu.abortTasks(
        removed.flatMap((r) => lu.nexusesOf(r)).filter((n) => nexusKeyOf(n) !== callerKey),
      );
    }
    return good();
  };
  const takeOver = (): void => {
    pr.reservation = {
      type,
      scope,
      holder: isAllRegistrants(type) ? undefined : caller,
      internalHolder: caller,
    };
  };

  if (sark === 0n) {
    // Case D: SARK 0 under an AR reservation removes everyone else; case G otherwise (26h/00h on the SARK).
    if (!res || !isAllRegistrants(res.type)) return invalidParameterField(8);
    removeWhere((r) => r !== caller);
    takeOver();
    return finish(true, res.type, res.scope);
  }
  // Case F: SARK names no registration.
  if (!pr.registrations.some((r) => r.key === sark)) return CONFLICT;

  if (res && isAllRegistrants(res.type)) {
    const internal = knobs.arInternalHolder ? res.internalHolder : undefined;
    if (internal && internal.key === sark) {
      // LIO quirk (§7.6): the internal holder's key takes the case-B path; the AR reservation is replaced.
      removeWhere((r) => r.key === sark && r !== caller);
      takeOver();
      return finish(true, res.type, res.scope);
    }
    // Case E: remove the SARK registrations; the AR reservation stays while registrants remain.
    removeWhere((r) => r.key === sark && (r !== caller || !knobs.arPreemptSkipsCaller));
    if (pr.registrations.length === 0) pr.reservation = undefined;
    else if (res.internalHolder && !pr.registrations.includes(res.internalHolder)) {
      res.internalHolder = pr.registrations[0];
    }
    return finish(false);
  }
  if (res && res.holder && res.holder.key === sark) {
    // Cases B and C: the caller becomes (or stays) the holder with the CDB's TYPE/SCOPE.
    removeWhere((r) => r.key === sark && r !== caller);
    takeOver();
    return finish(true, res.type, res.scope);
  }
  // Case A: no reservation, or SARK does not name the holder: remove the SARK registrations (the caller's too).
  removeWhere((r) => r.key === sark);
  return finish(false);
}

function registerAndMove(
  lu: LuContext,
  initiator: Initiator,
  caller: Registration | undefined,
  p: ProutMoveParameters,
  parameterListLength: number,
): Answer {
  const { pr, knobs } = lu;
  if (!caller) return unregisteredAnswer(lu);
  if (p.reservationKey !== caller.key) return CONFLICT;
  if (p.serviceActionKey === 0n) return invalidParameterField(8);
  if (p.transportIdParameterDataLength !== parameterListLength - BASIC_LENGTH)
    return invalidParameterField(20);
  if (!lu.targetPorts.includes(p.relativeTargetPort)) return invalidParameterField(18);
  // LIO looks the initiator up in the ACLs of the named port's TPG only.
  if (!resolvable(lu, initiator.transportId, p.transportId, p.relativeTargetPort))
    return invalidParameterField(24);
  if (initiatorPortOf(p.transportId) === initiatorPortOf(initiator.transportId)) {
    // spc4r17 as quoted by LIO: the destination must not be the source's initiator port.
    return invalidParameterField(24);
  }
  const res = pr.reservation;
  if (!res) return flavourAnswer(knobs.moveWithoutReservation, { inCdb: true, byte: 1, bit: 4 });
  if (!pr.isHolder(caller) || isAllRegistrants(res.type)) return CONFLICT;

  const destination: Initiator = {
    transportId: p.transportId,
    relativeTargetPort: p.relativeTargetPort,
  };
  let target = pr.registrationOf(destination);
  if (target) {
    target.key = p.serviceActionKey;
  } else {
    if (!hasRoom(lu, 1)) return INSUFFICIENT_REGISTRATION_RESOURCES;
    target = {
      key: p.serviceActionKey,
      transportId: p.transportId,
      initiatorPort: initiatorPortOf(p.transportId),
      relativeTargetPort: p.relativeTargetPort,
      allTgPt: false,
    };
    pr.registrations.push(target);
  }
  res.holder = target;
  res.internalHolder = target;
  if (p.unreg) pr.registrations = pr.registrations.filter((r) => r !== caller);
  pr.aptpl = p.aptpl;
  pr.bump();
  // LIO sends no unit attention for a move (§7.8).
  return good();
}
