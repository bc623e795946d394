/**
 * One emulated logical unit: dispatches raw CDBs from several I_T nexuses, keeps per-nexus unit-attention queues,
 * the SPC-2 RESERVE/RELEASE state, and applies the reservation access rules of scsi-pr.md §6.2 and §7.10 before
 * any ordinary command runs.
 */
import {
  formatKey,
  ScsiDecodeError,
  type ScsiRequest,
  type ScsiResponse,
  type TransportId,
} from '../scsi/index.js';
import {
  check,
  CONFLICT,
  good,
  INVALID_OPCODE,
  invalidCdbField,
  senseBytes,
  toResponse,
  type Answer,
} from './answers.js';
import type { LuContext } from './context.js';
import { executeOrdinary, executeInquiry, executeReportLuns } from './device-commands.js';
import { ElementModel, type ElementLayoutSpec } from './element-model.js';
import { executePrin } from './persistent-reserve-in.js';
import { executeProut } from './persistent-reserve-out.js';
import { profileKnobs, type ProfileKnobs, type ProfileName } from '../scsi/profiles.js';
import {
  initiatorPortOf,
  isAllRegistrants,
  nexusKeyOf,
  PrState,
  type Initiator,
  type Registration,
} from './pr-state.js';

/** How to build one logical unit. */
export interface LogicalUnitSpec {
  /** Stable name, e.g. 'loader1-changer'. */
  id: string;
  /** Device profile the LU follows. */
  profile: ProfileName;
  /** Unit serial number (VPD 80h). */
  serial: string;
  /** LU NAA designator for VPD 83h. @default derived from `id` */
  naa?: bigint;
  /** T10 vendor identification. @default the profile's (QUANTUM for the SuperLoader changer, …) */
  vendor?: string;
  /** Product identification. @default the profile's */
  product?: string;
  /** Product revision level. @default the profile's */
  revision?: string;
  /** Relative target port identifiers the LU is reachable through. @default DEFAULT_TARGET_PORTS ([1, 2]) */
  targetPorts?: number[];
  /** Registration table size; a REGISTER beyond it gets 55h/04h. @default 64 */
  maxRegistrations?: number;
  /** LUN reported by REPORT LUNS. @default the number of LUs already in the same target */
  lun?: number;
  /** Name of the SCSI target device; REPORT LUNS lists the LUs of one target. @default 'target0' */
  target?: string;
  /**
   * Initiator ports each target port knows, by relative target port identifier (LIO: the initiator ACLs of the
   * port's TPG). A SPEC_I_PT TransportID must name an initiator some port knows; REGISTER AND MOVE's must name one
   * the named relative target port knows (else 26h/00h). A port missing here knows nobody.
   * @default every port knows any initiator port of the caller's protocol
   */
  acl?: Readonly<Record<number, readonly TransportId[]>>;
  /** Capacity in 512-byte blocks of a disk LU (READ CAPACITY, READ/WRITE range). @default 32768 (16 MiB) */
  blockCount?: number;
  /**
   * SCSI name of the target device, VPD 83h (inquiry layout `lio` only). @default 'naa.5001405' + a hash of
   * `target`
   */
  targetName?: string;
  /**
   * SCSI name of each target port by relative target port identifier, VPD 83h (inquiry layout `lio` only).
   * @default `<targetName>,t,0x<port as 4 hex digits>` (LIO's "<WWN>,t,0x<TPG tag>")
   */
  targetPortNames?: Readonly<Record<number, string>>;
  /** Medium changers: slots, mail slot, drives (their LU NAAs) and cartridges. @default 16 empty slots, a mail
   *  slot and one drive */
  elements?: ElementLayoutSpec;
}

/** One emulated LU, executing commands from any I_T nexus synchronously. */
export interface EmulatedLogicalUnit {
  readonly id: string;
  readonly profile: ProfileName;
  /** Execute one command from one nexus, synchronously; never throws on device input. */
  execute(initiator: Initiator, request: ScsiRequest): ScsiResponse;
  /**
   * PREEMPT AND ABORT: called with the preempted nexuses, so a transport that queues commands completes their
   * queued tasks with TASK ABORTED (40h). Returns an unsubscribe function.
   */
  onAbortTasks(listener: (victims: Initiator[]) => void): () => void;
  /** Power cycle: APTPL rules, PRgeneration → 0, SPC-2 reservation dropped, UA 29h/00h to every nexus. */
  powerCycle(): void;
  /** Logical unit reset: PR kept, SPC-2 reservation dropped, the profile's UA 29h/xx to every known nexus. */
  reset(): void;
  /** I_T nexus loss: PR kept, the nexus's SPC-2 reservation dropped, UA 29h/07h for that nexus. */
  nexusLoss(initiator: Initiator): void;
  /** JSON-able state for tests and debugging (keys as 16-hex-digit strings). */
  snapshot(): LogicalUnitSnapshot;
}

/** What snapshot() returns. */
export interface LogicalUnitSnapshot {
  id: string;
  profile: ProfileName;
  generation: number;
  aptpl: boolean;
  registrations: Array<{
    key: string;
    initiatorPort: string;
    relativeTargetPort: number;
    allTgPt: boolean;
  }>;
  reservation: {
    type: number;
    scope: number;
    holderKey: string | null;
    holder: string | null;
  } | null;
  spc2Holder: string | null;
  unitAttentions: Record<string, Array<{ asc: number; ascq: number }>>;
}

/** Relative target ports of an LU whose spec names none. */
export const DEFAULT_TARGET_PORTS: readonly number[] = [1, 2];

/** Commands that execute despite a pending unit attention (SAM; scsi-pr.md §7.12). */
const UA_EXEMPT = new Set([0x12 /* INQUIRY */, 0xa0 /* REPORT LUNS */, 0x03 /* REQUEST SENSE */]);
const PRIN = 0x5e;
const PROUT = 0x5f;
const RESERVE_6 = 0x16;
const RELEASE_6 = 0x17;
const RESERVE_10 = 0x56;
const RELEASE_10 = 0x57;
const REQUEST_SENSE = 0x03;
const INQUIRY = 0x12;
const REPORT_LUNS = 0xa0;
/** Opcodes run() handles itself, whatever the profile's command table says. */
const HANDLED_OPCODES = new Set([
  INQUIRY,
  REPORT_LUNS,
  REQUEST_SENSE,
  PRIN,
  PROUT,
  RESERVE_6,
  RESERVE_10,
  RELEASE_6,
  RELEASE_10,
]);
/** Unit attention queue depth per nexus; older entries beyond it are dropped, as devices do on overflow. */
const MAX_QUEUED_UNIT_ATTENTIONS = 16;

/** Shared by the LUs of one emulator, so REPORT LUNS can list a target's LUs. @internal */
export interface TargetDirectory {
  lunsOf(target: string): number[];
}

/** Builds an LU; used by createEmulator. @internal */
export function createLogicalUnit(
  spec: LogicalUnitSpec,
  options: { clock: () => number; directory: TargetDirectory; lun: number; target: string },
): EmulatedLogicalUnit {
  return new LogicalUnit(spec, options);
}

class LogicalUnit implements EmulatedLogicalUnit, LuContext {
  readonly id: string;
  readonly profile: ProfileName;
  readonly knobs: ProfileKnobs;
  readonly pr = new PrState();
  readonly targetPorts: readonly number[];
  readonly maxRegistrations: number;
  readonly acl: Readonly<Record<number, readonly TransportId[]>> | undefined;
  readonly spec: LogicalUnitSpec;
  readonly lun: number;
  readonly target: string;
  private readonly clock: () => number;
  private readonly directory: TargetDirectory;
  private readonly unitAttentions = new Map<string, Array<{ asc: number; ascq: number }>>();
  /** Nexuses that sent a command since the last power on; others get 29h/00h first. */
  private readonly knownNexuses = new Map<string, Initiator>();
  private powerCycled = false;
  private spc2Holder: string | undefined = undefined;
  private readonly abortListeners = new Set<(victims: Initiator[]) => void>();
  /** Sparse block store for READ/WRITE on disk profiles. */
  readonly blocks = new Map<number, Uint8Array>();
  /** Slots, drives and cartridges of a medium changer (peripheral device type 8). */
  readonly elements: ElementModel | undefined;

  constructor(
    spec: LogicalUnitSpec,
    options: { clock: () => number; directory: TargetDirectory; lun: number; target: string },
  ) {
    this.spec = spec;
    this.id = spec.id;
    this.profile = spec.profile;
    this.knobs = profileKnobs(spec.profile);
    this.targetPorts = [...(spec.targetPorts ?? DEFAULT_TARGET_PORTS)];
    this.maxRegistrations = spec.maxRegistrations ?? 64;
    this.acl = spec.acl
      ? Object.fromEntries(Object.entries(spec.acl).map(([port, list]) => [port, [...list]]))
      : undefined;
    this.clock = options.clock;
    this.directory = options.directory;
    this.lun = options.lun;
    this.target = options.target;
    this.elements =
      this.knobs.capabilities.peripheralDeviceType === 8
        ? new ElementModel(spec.elements)
        : undefined;
  }

  execute(initiator: Initiator, request: ScsiRequest): ScsiResponse {
    const started = this.clock();
    if (!this.targetPorts.includes(initiator.relativeTargetPort)) {
      // No such target port: the command never reaches the LU (SG_IO reports DID_NO_CONNECT).
      return {
        status: 0,
        sense: new Uint8Array(0),
        dataIn: new Uint8Array(0),
        resid: Math.max(0, request.dataInLength),
        hostStatus: 0x01,
        driverStatus: 0,
        durationMs: 0,
      };
    }
    const answer = this.dispatch(initiator, request);
    return toResponse(
      answer,
      request.dataInLength,
      this.knobs.fieldPointers,
      Math.max(0, this.clock() - started),
    );
  }

  private dispatch(initiator: Initiator, request: ScsiRequest): Answer {
    const nexus = nexusKeyOf(initiator);
    if (!this.knownNexuses.has(nexus)) {
      this.knownNexuses.set(nexus, initiator);
      if (this.powerCycled) this.unitAttentions.set(nexus, [{ asc: 0x29, ascq: 0x00 }]);
    }
    const cdb = request.cdb;
    const opcode = cdb[0];
    if (opcode === undefined) return INVALID_OPCODE;
    // LIO parses the CDB at submission and checks unit attentions only before execution.
    if (this.knobs.opcodeCheckBeforeUnitAttention && !this.supports(opcode)) return INVALID_OPCODE;
    if (!UA_EXEMPT.has(opcode)) {
      const ua = this.takeUnitAttention(nexus);
      if (ua) return check(0x06, ua.asc, ua.ascq);
    }
    try {
      return this.run(initiator, nexus, opcode, request);
    } catch (e) {
      // A CDB too short for its fields: what a device reports for a malformed CDB.
      if (e instanceof ScsiDecodeError)
        return check(0x05, 0x24, 0x00, { inCdb: true, byte: e.offset });
      throw e;
    }
  }

  /** Whether the LU implements `opcode` at all. */
  private supports(opcode: number): boolean {
    return HANDLED_OPCODES.has(opcode) || this.knobs.commands.has(opcode);
  }

  /** The unit attention to report now, removed (with the rest of the queue under LIO's rules), or undefined. */
  private takeUnitAttention(nexus: string): { asc: number; ascq: number } | undefined {
    const queue = this.unitAttentions.get(nexus);
    const ua = queue?.shift();
    if (queue && this.knobs.unitAttentionQueue === 'lio') queue.length = 0;
    return ua;
  }

  private run(initiator: Initiator, nexus: string, opcode: number, request: ScsiRequest): Answer {
    const cdb = request.cdb;
    switch (opcode) {
      case INQUIRY:
        return executeInquiry(this, initiator, cdb);
      case REPORT_LUNS:
        return executeReportLuns(cdb, this.directory.lunsOf(this.target));
      case REQUEST_SENSE:
        return this.requestSense(nexus, cdb);
      case PRIN:
        if (this.spc2Holder !== undefined) return CONFLICT;
        return executePrin(this, cdb);
      case PROUT:
        // spc2r20 5.5.1: while an SPC-2 reservation is held every PRIN/PROUT conflicts (§7.1 step 1).
        if (this.spc2Holder !== undefined) return CONFLICT;
        return executeProut(this, initiator, cdb, request.dataOut);
      case RESERVE_6:
      case RESERVE_10:
        return this.reserveSpc2(initiator, nexus);
      case RELEASE_6:
      case RELEASE_10:
        return this.releaseSpc2(initiator, nexus);
      default:
        break;
    }
    const access = this.knobs.commands.get(opcode);
    if (access === undefined) return INVALID_OPCODE;
    if (this.spc2Holder !== undefined && this.spc2Holder !== nexus) return CONFLICT;
    if (!this.accessAllowed(initiator, access)) return CONFLICT;
    return executeOrdinary(this, opcode, request);
  }

  /** §6.2: may `initiator` run a command of class `access` under the current reservation? */
  private accessAllowed(initiator: Initiator, access: string): boolean {
    const res = this.pr.reservation;
    if (!res || access === 'always') return true;
    const reg = this.pr.registrationOf(initiator);
    if (this.pr.isHolder(reg)) return true;
    const writeExclusiveFamily = res.type === 1 || res.type === 5 || res.type === 7;
    if (access === 'registered-or-we') return reg !== undefined || writeExclusiveFamily;
    const registrantsAllowed = res.type === 5 || res.type === 6 || isAllRegistrants(res.type);
    if (reg && registrantsAllowed) return true;
    // LIO, no data: passes for non-registrants under WE-family types; a registered non-holder under WE conflicts.
    if (access === 'no-data') return !reg && writeExclusiveFamily;
    // Remaining: non-registrants, and registrants under WE/EA. WE lets reads through; EA nothing.
    return access === 'read' && writeExclusiveFamily;
  }

  /** RESERVE(6)/(10) with CRH = 1 rules (scsi-pr.md §7.10). */
  private reserveSpc2(initiator: Initiator, nexus: string): Answer {
    if (this.spc2Holder !== undefined) return this.spc2Holder === nexus ? good() : CONFLICT;
    if (this.pr.registrations.length > 0) return this.crhException(initiator) ? good() : CONFLICT;
    this.spc2Holder = nexus;
    return good();
  }

  /** RELEASE(6)/(10): the holder releases; anyone else gets GOOD with no effect (SPC-2). */
  private releaseSpc2(initiator: Initiator, nexus: string): Answer {
    if (this.spc2Holder !== undefined) {
      if (this.spc2Holder === nexus) this.spc2Holder = undefined;
      return good();
    }
    if (this.pr.registrations.length > 0) return this.crhException(initiator) ? good() : CONFLICT;
    return good();
  }

  /**
   * CRH = 1: a PR holder, or a registrant while an RO/AR reservation exists, gets GOOD and no change (SPC); with
   * `holder-record` only the registration recorded as holding the reservation does (LIO).
   */
  private crhException(initiator: Initiator): boolean {
    if (!this.knobs.crh) return false;
    const reg = this.pr.registrationOf(initiator);
    const res = this.pr.reservation;
    if (!reg || !res) return false;
    if (this.knobs.crhException === 'holder-record') return res.internalHolder === reg;
    return this.pr.isHolder(reg) || res.type === 5 || res.type === 6;
  }

  /** REQUEST SENSE returns (and clears) the oldest pending unit attention, else NO SENSE. */
  private requestSense(nexus: string, cdb: Uint8Array): Answer {
    const descriptor = ((cdb[1] ?? 0) & 0x01) !== 0;
    // LIO: no descriptor-format sense (spc_emulate_request_sense), checked before any unit attention is touched.
    if (descriptor && !this.knobs.requestSenseDescriptor) return invalidCdbField(1, 0);
    const allocationLength = cdb[4] ?? 0;
    const ua = this.takeUnitAttention(nexus);
    const answer = ua ? check(0x06, ua.asc, ua.ascq) : check(0x00, 0x00, 0x00);
    if (answer.kind !== 'check') return answer;
    const data = senseBytes(answer, false, descriptor);
    if (this.knobs.requestSenseFillsAllocation) {
      const filled = new Uint8Array(allocationLength);
      filled.set(data.subarray(0, allocationLength));
      return good(filled);
    }
    return good(data.subarray(0, Math.min(data.length, allocationLength)));
  }

  queueUnitAttention(nexus: Initiator, asc: number, ascq: number): void {
    const key = nexusKeyOf(nexus);
    const queue = this.unitAttentions.get(key) ?? [];
    if (this.knobs.unitAttentionQueue === 'lio') lioQueueUnitAttention(queue, asc, ascq);
    else if (!queue.some((u) => u.asc === asc && u.ascq === ascq)) queue.push({ asc, ascq });
    while (queue.length > MAX_QUEUED_UNIT_ATTENTIONS) queue.shift();
    this.unitAttentions.set(key, queue);
  }

  knownNexusesOf(transportId: TransportId): Initiator[] {
    const port = initiatorPortOf(transportId);
    return [...this.knownNexuses.values()]
      .filter((n) => initiatorPortOf(n.transportId) === port)
      .sort(
        (a, b) =>
          this.targetPorts.indexOf(a.relativeTargetPort) -
          this.targetPorts.indexOf(b.relativeTargetPort),
      );
  }

  nexusesOf(reg: Registration): Initiator[] {
    if (!reg.allTgPt)
      return [{ transportId: reg.transportId, relativeTargetPort: reg.relativeTargetPort }];
    return this.targetPorts.map((relativeTargetPort) => ({
      transportId: reg.transportId,
      relativeTargetPort,
    }));
  }

  abortTasks(victims: Initiator[]): void {
    if (victims.length === 0) return;
    for (const listener of [...this.abortListeners]) listener(victims.map((v) => ({ ...v })));
  }

  onAbortTasks(listener: (victims: Initiator[]) => void): () => void {
    this.abortListeners.add(listener);
    return () => this.abortListeners.delete(listener);
  }

  powerCycle(): void {
    const { pr } = this;
    if (!pr.aptpl) {
      pr.registrations = [];
      pr.reservation = undefined;
    }
    // PRgeneration is 0 after power on whatever APTPL says (§7.11).
    pr.generation = 0;
    this.spc2Holder = undefined;
    this.unitAttentions.clear();
    this.knownNexuses.clear();
    this.powerCycled = true;
  }

  reset(): void {
    this.spc2Holder = undefined;
    if (this.knobs.generationResetOnLuReset) this.pr.generation = 0;
    const [asc, ascq] = this.knobs.luResetUnitAttention;
    for (const nexus of this.knownNexuses.values()) this.queueUnitAttention(nexus, asc, ascq);
  }

  nexusLoss(initiator: Initiator): void {
    const key = nexusKeyOf(initiator);
    if (this.spc2Holder === key) this.spc2Holder = undefined;
    this.queueUnitAttention(initiator, 0x29, 0x07);
  }

  snapshot(): LogicalUnitSnapshot {
    const { pr } = this;
    const hex = formatKey;
    const res = pr.reservation;
    const holder = res?.holder;
    return {
      id: this.id,
      profile: this.profile,
      generation: pr.generation,
      aptpl: pr.aptpl,
      registrations: pr.registrations.map((r) => ({
        key: hex(r.key),
        initiatorPort: r.initiatorPort,
        relativeTargetPort: r.relativeTargetPort,
        allTgPt: r.allTgPt,
      })),
      reservation: res
        ? {
            type: res.type,
            scope: res.scope,
            holderKey: isAllRegistrants(res.type) ? hex(0n) : holder ? hex(holder.key) : null,
            holder: holder
              ? `${initiatorPortOf(holder.transportId)}@${holder.relativeTargetPort}`
              : null,
          }
        : null,
      spc2Holder: this.spc2Holder ?? null,
      unitAttentions: Object.fromEntries(
        [...this.unitAttentions]
          .filter(([, q]) => q.length > 0)
          .map(([k, q]) => [k, q.map((u) => ({ ...u }))]),
      ),
    };
  }
}

/**
 * LIO core_scsi3_ua_allocate: the new unit attention is compared with the head of the queue only: a duplicate of it
 * is dropped; a 29h one goes to the head when the head is 2Ah or a lower 29h ASCQ (its `ascq > head asc` test for
 * other ASCs is copied as written); anything else goes to the tail.
 */
function lioQueueUnitAttention(
  queue: Array<{ asc: number; ascq: number }>,
  asc: number,
  ascq: number,
): void {
  const head = queue[0];
  if (!head) {
    queue.push({ asc, ascq });
    return;
  }
  if (head.asc === asc && head.ascq === ascq) return;
  const first =
    head.asc === 0x29
      ? asc === 0x29 && ascq > head.ascq
      : head.asc === 0x2a && (asc === 0x29 || ascq > head.asc);
  if (first) queue.unshift({ asc, ascq });
  else queue.push({ asc, ascq });
}
