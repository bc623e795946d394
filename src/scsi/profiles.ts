/**
 * Device profiles as data: every place where SPC-4, Linux LIO, the Quantum SuperLoader 3 changer and an LTO drive
 * answer differently is one knob here (scsi-pr.md §12, last paragraph). The engine reads knobs; it never asks
 * "is this LIO?". They live beside the codec rather than in the emulator because a real (sgio) agent's discovery
 * needs them too, and such an agent loads nothing of the emulator.
 */

/** Name of a device profile an emulated logical unit follows. */
export type ProfileName = 'spc4' | 'lio' | 'superloader-changer' | 'lto-drive';

/** Every profile name, in a stable order (for tests that run all of them). */
export const PROFILE_NAMES: readonly ProfileName[] = [
  'spc4',
  'lio',
  'superloader-changer',
  'lto-drive',
];

/** What the server needs to refuse unsupported commands up front. */
export interface ProfileCapabilities {
  /** Supported PROUT service actions (SPC codes). */
  proutServiceActions: number[];
  /** Supported PRIN service actions (SPC codes). */
  prinServiceActions: number[];
  /** Supported reservation types (SPC codes). */
  types: number[];
  /** SPEC_I_PT supported (SIP_C). */
  specIPt: boolean;
  /** ALL_TG_PT supported (ATP_C). */
  allTgPt: boolean;
  /** APTPL supported (PTPL_C). */
  aptpl: boolean;
  /** PERIPHERAL DEVICE TYPE: 8 changer, 1 tape, 0 disk. */
  peripheralDeviceType: number;
}

/**
 * How a command is treated while a persistent reservation is held by someone else (scsi-pr.md §6.2):
 * `always` passes for everyone; `registered-or-we` passes for registrants and under WE-family types;
 * `read` / `write` follow the read-class / write-class columns of the table; `no-data` is LIO's rule for a command
 * without data that no table row names (core_scsi3_pr_seq_non_holder classes by data direction: it passes for
 * non-registrants under WE-family types, like a read, but a registered non-holder under WE or EA conflicts, like a
 * write).
 */
export type AccessClass = 'always' | 'registered-or-we' | 'read' | 'write' | 'no-data';

/** How one error case is answered (the SPC rule, or a device's departure). */
export type ErrorFlavour =
  | 'reservation-conflict'
  | 'invalid-field-in-cdb'
  | 'invalid-field-in-parameter-list'
  | 'invalid-release'
  | 'not-ready';

/** The knobs of one profile. All fields are data; see docs/emulator.md for the table of differences. */
export interface ProfileKnobs {
  readonly name: ProfileName;
  readonly capabilities: ProfileCapabilities;
  /** Standard INQUIRY identity defaults. */
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  /** INQUIRY VERSION byte (03h SPC, 05h SPC-3, 06h SPC-4). */
  readonly inquiryVersion: number;
  /** INQUIRY RMB bit (removable medium). */
  readonly removable: boolean;
  /** Commands (opcode → access class) this LU implements besides PRIN/PROUT/RESERVE/RELEASE; the §6.2 table. */
  readonly commands: ReadonlyMap<number, AccessClass>;
  /** PARAMETER LIST LENGTH the device insists on for every PROUT (SuperLoader: 24), or undefined for SPC rules. */
  readonly fixedParameterListLength: number | undefined;
  /** REPORT CAPABILITIES CRH bit; also decides RESERVE(6)/RELEASE(6) vs PR handling (§7.10). */
  readonly crh: boolean;
  /** REPORT CAPABILITIES ALLOW COMMANDS field (0–5). */
  readonly allowCommands: number;
  /** RELEASE by the holder with the wrong TYPE/SCOPE: SPC 26h/04h, LIO RC (§7.4). */
  readonly releaseWrongType: ErrorFlavour;
  /** RESERVE/RELEASE/CLEAR/REGISTER AND MOVE from an unregistered nexus while no reservation exists (§12). */
  readonly unregisteredWithoutReservation: ErrorFlavour;
  /** SCOPE ≠ LU_SCOPE on RESERVE/PREEMPT: SPC 24h/00h, LIO 26h/00h (§7.3). */
  readonly badScope: ErrorFlavour;
  /** REGISTER AND MOVE while no reservation exists: SPC RC (caller is not the holder), LIO 24h/00h (§7.8). */
  readonly moveWithoutReservation: ErrorFlavour;
  /** PRgeneration +1 when a registration is removed by REGISTER with SARK 0 (SPC yes, LIO no; §7.2). */
  readonly generationOnUnregister: boolean;
  /** PRgeneration +1 per registration a SPEC_I_PT REGISTER creates (LIO) instead of +1 per command (§7.2). */
  readonly generationPerSpecIPtRegistration: boolean;
  /** SPEC_I_PT allowed with REGISTER AND IGNORE EXISTING KEY (LIO: no, 26h/00h; §12). */
  readonly specIPtWithRegisterAndIgnore: boolean;
  /** Minimum PRIN allocation length per service action below which the device answers 24h/00h (LIO; §8.2). */
  readonly prinMinimumAllocationLength: ReadonlyMap<number, number>;
  /**
   * READ FULL STATUS truncation: `bytes` (SPC: every descriptor counted in ADDITIONAL LENGTH, the data cut to the
   * allocation length) or `transport-id-fits` (LIO core_scsi3_pri_read_full_status: a descriptor is written while
   * its TransportID length plus the descriptors before it fit the allocation length; it forgets the 8-byte header
   * and the 24-byte descriptor header, and ADDITIONAL LENGTH counts only the descriptors written).
   */
  readonly fullStatusTruncation: 'bytes' | 'transport-id-fits';
  /**
   * SPEC_I_PT with ALL_TG_PT = 0: each named initiator is registered through the `receiving` target port (SPC-4),
   * or through `initiator-nexus`: the first target port through which that initiator port has an I_T nexus (LIO
   * core_scsi3_decode_spec_i_port takes the first LUN export whose TPG has an ACL for it).
   */
  readonly specIPtTargetPort: 'receiving' | 'initiator-nexus';
  /**
   * REGISTER / REGISTER AND IGNORE EXISTING KEY from a nexus registered with ALL_TG_PT = 1 must set ALL_TG_PT = 1
   * again, else 24h/00h (LIO core_scsi3_emulate_pro_register); SPC-4 ignores the bit for a registered nexus.
   */
  readonly allTgPtMustRepeat: boolean;
  /**
   * CRH = 1 exception for RESERVE/RELEASE(6/10) (§7.10): `spc` (the PR holder, or any registrant while an RO/AR
   * reservation exists) or `holder-record` (LIO target_check_scsi2_reservation_conflict reads pr_res_holder and
   * pr_res_type of the caller's own registration, which only the registration that reserved carries; every other
   * registrant gets RESERVATION CONFLICT, under RO and AR types too).
   */
  readonly crhException: 'spc' | 'holder-record';
  /**
   * Standard INQUIRY and VPD layout: `compact` (36 bytes; VPD 00h/80h/83h with NAA, T10 vendor id and two
   * target-port designators) or `lio` (target_core_spc.c: 96 bytes with SCCS, TPGS, 3PC, CMDQUE and version
   * descriptors; VPD 00h lists 80h 83h 86h B0h–B3h; NUL-terminated serial; NAA 6 derived from the serial; LU
   * group and SCSI name string designators).
   */
  readonly inquiryLayout: 'compact' | 'lio';
  /**
   * REQUEST SENSE transfers the whole allocation length: the sense data, then zeros (LIO spc_emulate_request_sense
   * copies a zeroed 96-byte buffer and completes with the full length; beyond 96 bytes it leaves the initiator's
   * buffer alone, modelled as zeros). SPC: only the sense data.
   */
  readonly requestSenseFillsAllocation: boolean;
  /** LIO's AR internal holder: PREEMPT naming that registration's key replaces the AR reservation (§7.6). */
  readonly arInternalHolder: boolean;
  /** PREEMPT under an AR reservation with SARK ≠ 0 keeps the caller's registration even if its key matches. */
  readonly arPreemptSkipsCaller: boolean;
  /** CLEAR turns APTPL off (LIO writes "no registrations" to its APTPL file, so PTPL_A reads 0). */
  readonly clearResetsAptpl: boolean;
  /** PRgeneration set to 0 by a logical unit reset, not only power on (SuperLoader manual: "power on or reset"). */
  readonly generationResetOnLuReset: boolean;
  /** Unit attention queued by a logical unit reset (ASC/ASCQ). */
  readonly luResetUnitAttention: readonly [number, number];
  /** ILLEGAL REQUEST sense carries a SENSE KEY SPECIFIC field pointer (LIO's PR code sets none). */
  readonly fieldPointers: boolean;
  /**
   * READ KEYS / READ RESERVATION cut by the allocation length: `bytes` (SPC: the first bytes of the full data) or
   * `whole-entries` (LIO core_scsi3_pri_read_keys / _read_reservation: the whole allocation length is transferred,
   * but a key is written only when its 8 bytes fit, the reservation key and type only when 22 bytes fit; the rest
   * stays zero).
   */
  readonly prinTruncation: 'bytes' | 'whole-entries';
  /**
   * LIO 6.1 bug: a SPEC_I_PT TransportID naming the sending initiator port registers it a second time
   * (core_scsi3_decode_spec_i_port looks for an existing registration before the sender's own is added), so READ
   * KEYS and READ FULL STATUS list it twice. SPC: the sender is registered once.
   */
  readonly bugSpecIPtRegistersSenderTwice: boolean;
  /**
   * Unit attention queue per nexus: `spc` (first in, first reported, each reported once, duplicates dropped) or
   * `lio` (core_scsi3_ua_allocate compares a new one with the head only and puts a 29h one at the head by
   * priority; a failing command or REQUEST SENSE reports the head and discards the rest, UA_INTLCK_CTRL 00b).
   */
  readonly unitAttentionQueue: 'spc' | 'lio';
  /**
   * An unsupported operation code is answered 20h/00h before a pending unit attention, which stays (LIO: the CDB
   * is parsed at submission, the unit attention checked only before execution). SPC: the unit attention first.
   */
  readonly opcodeCheckBeforeUnitAttention: boolean;
  /** REQUEST SENSE with DESC = 1 gets descriptor-format sense (SPC), or 24h/00h and nothing cleared (LIO). */
  readonly requestSenseDescriptor: boolean;
  /**
   * A PROUT service action table 6.3 does not name (08h, 1Fh) while a reservation exists, from anyone but the
   * registration that reserved (under AR types the other registrants too): RESERVATION CONFLICT (LIO
   * core_scsi3_pr_seq_non_holder returns -EINVAL, which its caller reads as a conflict) instead of reaching the
   * service-action check (24h/00h, SPC). Measured on LIO 6.1.
   */
  readonly unknownServiceActionConflicts: boolean;
  /**
   * Under a registrants-only reservation (WE-RO, EA-RO) a registered non-holder's PROUT passes the table 6.3 check
   * whatever its service action, so RESERVE and REGISTER AND MOVE reach their own checks: RC there for a valid
   * request, but 24h/00h for a reserved TYPE and 26h/00h for a bad SCOPE or parameter list (LIO
   * core_scsi3_pr_seq_non_holder: its reg_only rule lets registered nexuses through after the table). Found by the
   * random differential run on LIO 6.1. SPC: table 6.3 conflicts first.
   */
  readonly registrantsOnlyAdmitsRegistrants: boolean;
}

const WE = 1;
const EA = 3;
const WE_RO = 5;
const EA_RO = 6;
const WE_AR = 7;
const EA_AR = 8;

/** Commands every profile answers; their class follows LIO's rendering of spc4r17 table 45 (scsi-pr.md §6.2). */
const SPC_COMMANDS: ReadonlyArray<readonly [number, AccessClass]> = [
  [0x00, 'always'], // TEST UNIT READY
  [0x03, 'always'], // REQUEST SENSE
  [0x12, 'always'], // INQUIRY
  [0xa0, 'always'], // REPORT LUNS
  [0x4d, 'always'], // LOG SENSE
  [0x1a, 'registered-or-we'], // MODE SENSE(6)
  [0x5a, 'registered-or-we'], // MODE SENSE(10)
  [0x15, 'write'], // MODE SELECT(6)
  [0x55, 'write'], // MODE SELECT(10)
];

/** Direct-access block device (LIO rd_mcp / fileio backstores): SBC read and write classes. */
const DISK_COMMANDS: ReadonlyArray<readonly [number, AccessClass]> = [
  [0x25, 'always'], // READ CAPACITY(10)
  [0x9e, 'always'], // SERVICE ACTION IN(16): READ CAPACITY(16)
  [0x28, 'read'], // READ(10)
  [0x2a, 'write'], // WRITE(10)
  [0x88, 'read'], // READ(16)
  [0x8a, 'write'], // WRITE(16)
  [0x35, 'write'], // SYNCHRONIZE CACHE(10)
];

/**
 * Sequential-access device (SSC): data from the medium is read-class; anything that writes or moves the medium
 * is write-class, because another host's positioning would corrupt the holder's job.
 */
const TAPE_COMMANDS: ReadonlyArray<readonly [number, AccessClass]> = [
  [0x08, 'read'], // READ(6)
  [0x0a, 'write'], // WRITE(6)
  [0x10, 'write'], // WRITE FILEMARKS(6)
  [0x01, 'write'], // REWIND
  [0x11, 'write'], // SPACE(6)
  [0x2b, 'write'], // LOCATE(10)
  [0x1b, 'write'], // LOAD UNLOAD
  [0x19, 'write'], // ERASE(6)
  [0x1e, 'write'], // PREVENT ALLOW MEDIUM REMOVAL
  [0x34, 'read'], // READ POSITION
  [0x05, 'always'], // READ BLOCK LIMITS
];

/**
 * Medium changer (SMC): the brief's classing (SMC-3 itself was not read, scsi-pr.md §6.2 "unverified"): element
 * moves and anything that changes the changer's state are writes; READ ELEMENT STATUS is a read.
 */
const CHANGER_COMMANDS: ReadonlyArray<readonly [number, AccessClass]> = [
  [0xa5, 'write'], // MOVE MEDIUM
  [0xa6, 'write'], // EXCHANGE MEDIUM
  [0x07, 'write'], // INITIALIZE ELEMENT STATUS
  [0x2b, 'write'], // POSITION TO ELEMENT
  [0x1e, 'write'], // PREVENT ALLOW MEDIUM REMOVAL
  [0xb8, 'read'], // READ ELEMENT STATUS
];

/**
 * LIO's classes for the disk commands its PR check does not name (core_scsi3_pr_seq_non_holder): by data direction,
 * so READ CAPACITY(10)/(16) are reads (RESERVATION CONFLICT under EA types for non-holders) and SYNCHRONIZE CACHE
 * has no data.
 */
const LIO_DISK_CLASSES: ReadonlyArray<readonly [number, AccessClass]> = [
  [0x25, 'read'], // READ CAPACITY(10)
  [0x9e, 'read'], // SERVICE ACTION IN(16): READ CAPACITY(16)
  [0x35, 'no-data'], // SYNCHRONIZE CACHE(10)
];

function commandTable(...parts: ReadonlyArray<ReadonlyArray<readonly [number, AccessClass]>>) {
  return new Map<number, AccessClass>(parts.flat());
}

const SPC_PRIN_MINIMUM = new Map<number, number>();
/** LIO rejects allocation lengths below the header size (target_core_pr.c core_scsi3_pri_*). */
const LIO_PRIN_MINIMUM = new Map<number, number>([
  [0, 8],
  [1, 8],
  [2, 6],
  [3, 8],
]);

const spc4: ProfileKnobs = {
  name: 'spc4',
  capabilities: {
    proutServiceActions: [0, 1, 2, 3, 4, 5, 6, 7],
    prinServiceActions: [0, 1, 2, 3],
    types: [WE, EA, WE_RO, EA_RO, WE_AR, EA_AR],
    specIPt: true,
    allTgPt: true,
    aptpl: true,
    peripheralDeviceType: 0,
  },
  vendor: 'PRFLEET',
  product: 'SPC4 EMULATOR',
  revision: '0001',
  inquiryVersion: 0x06,
  removable: false,
  commands: commandTable(SPC_COMMANDS, DISK_COMMANDS),
  fixedParameterListLength: undefined,
  crh: true,
  allowCommands: 1,
  releaseWrongType: 'invalid-release',
  unregisteredWithoutReservation: 'reservation-conflict',
  badScope: 'invalid-field-in-cdb',
  moveWithoutReservation: 'reservation-conflict',
  generationOnUnregister: true,
  generationPerSpecIPtRegistration: false,
  specIPtWithRegisterAndIgnore: true,
  prinMinimumAllocationLength: SPC_PRIN_MINIMUM,
  fullStatusTruncation: 'bytes',
  specIPtTargetPort: 'receiving',
  allTgPtMustRepeat: false,
  crhException: 'spc',
  inquiryLayout: 'compact',
  requestSenseFillsAllocation: false,
  arInternalHolder: false,
  arPreemptSkipsCaller: false,
  clearResetsAptpl: false,
  generationResetOnLuReset: false,
  luResetUnitAttention: [0x29, 0x03],
  fieldPointers: true,
  prinTruncation: 'bytes',
  bugSpecIPtRegistersSenderTwice: false,
  unitAttentionQueue: 'spc',
  opcodeCheckBeforeUnitAttention: false,
  requestSenseDescriptor: true,
  unknownServiceActionConflicts: false,
  registrantsOnlyAdmitsRegistrants: false,
};

/**
 * Linux LIO target_core_pr.c / target_core_spc.c with a fileio backstore, as tcm_loop exports it. Checked byte for
 * byte against kernel 6.1 in the test VM (test/lio, docs/lio-testbed.md).
 */
const lio: ProfileKnobs = {
  ...spc4,
  name: 'lio',
  vendor: 'LIO-ORG',
  product: 'FILEIO',
  revision: '4.0',
  // Measured on LIO 6.1 via tcm_loop: standard INQUIRY VERSION 06h (spc_emulate_inquiry_std).
  inquiryVersion: 0x06,
  releaseWrongType: 'reservation-conflict',
  unregisteredWithoutReservation: 'not-ready',
  badScope: 'invalid-field-in-parameter-list',
  moveWithoutReservation: 'invalid-field-in-cdb',
  generationOnUnregister: false,
  generationPerSpecIPtRegistration: true,
  specIPtWithRegisterAndIgnore: false,
  prinMinimumAllocationLength: LIO_PRIN_MINIMUM,
  fullStatusTruncation: 'transport-id-fits',
  specIPtTargetPort: 'initiator-nexus',
  allTgPtMustRepeat: true,
  crhException: 'holder-record',
  inquiryLayout: 'lio',
  // Measured on LIO 6.1 via tcm_loop: REQUEST SENSE with allocation length 96 → 96 bytes, resid 0.
  requestSenseFillsAllocation: true,
  arInternalHolder: true,
  arPreemptSkipsCaller: true,
  clearResetsAptpl: true,
  fieldPointers: false,
  commands: commandTable(SPC_COMMANDS, DISK_COMMANDS, LIO_DISK_CLASSES),
  prinTruncation: 'whole-entries',
  bugSpecIPtRegistersSenderTwice: true,
  unitAttentionQueue: 'lio',
  opcodeCheckBeforeUnitAttention: true,
  requestSenseDescriptor: false,
  unknownServiceActionConflicts: true,
  registrantsOnlyAdmitsRegistrants: true,
};

/** Quantum SuperLoader 3 changer LUN (Software Interface Guide pp. 69–91). */
const superloaderChanger: ProfileKnobs = {
  ...spc4,
  name: 'superloader-changer',
  capabilities: {
    proutServiceActions: [0, 1, 2, 3, 4, 5, 6],
    prinServiceActions: [0, 1],
    types: [WE, EA, WE_RO, EA_RO],
    specIPt: false,
    allTgPt: false,
    aptpl: true,
    peripheralDeviceType: 8,
  },
  vendor: 'QUANTUM',
  product: 'UHDL',
  revision: '0001',
  inquiryVersion: 0x03,
  removable: true,
  commands: commandTable(SPC_COMMANDS, CHANGER_COMMANDS),
  fixedParameterListLength: 24,
  allowCommands: 0,
  generationResetOnLuReset: true,
};

/**
 * LTO tape drive (IBM ULTRIUM-HH8 identity). PR behaviour is the SPC-4 profile: IBM's LTO SCSI reference states
 * SPC-4 PR with all six types; no drive-specific departures were read, so none are invented.
 */
const ltoDrive: ProfileKnobs = {
  ...spc4,
  name: 'lto-drive',
  capabilities: { ...spc4.capabilities, peripheralDeviceType: 1 },
  vendor: 'IBM',
  product: 'ULTRIUM-HH8',
  revision: 'K4K1',
  removable: true,
  commands: commandTable(SPC_COMMANDS, TAPE_COMMANDS),
};

const PROFILES: Readonly<Record<ProfileName, ProfileKnobs>> = {
  spc4,
  lio,
  'superloader-changer': superloaderChanger,
  'lto-drive': ltoDrive,
};

/** The knobs of a profile (read-only data). */
export function profileKnobs(name: ProfileName): ProfileKnobs {
  return PROFILES[name];
}

/** True when `name` is a known profile name. */
export function isProfileName(name: string): name is ProfileName {
  return Object.hasOwn(PROFILES, name);
}

/** What a profile supports, for refusing unsupported commands before sending anything (fresh copy). */
export function profileCapabilities(name: ProfileName): ProfileCapabilities {
  const c = PROFILES[name].capabilities;
  return {
    ...c,
    proutServiceActions: [...c.proutServiceActions],
    prinServiceActions: [...c.prinServiceActions],
    types: [...c.types],
  };
}

/**
 * The profile a device most likely follows, from its standard INQUIRY identity (trailing spaces ignored,
 * case-insensitive); undefined when nothing matches, so callers probe instead of guessing.
 */
export function profileForInquiry(
  vendor: string,
  product: string,
  pdt: number,
): ProfileName | undefined {
  const v = vendor.trim().toUpperCase();
  const p = product.trim().toUpperCase();
  if (v === 'LIO-ORG') return 'lio';
  if (v === 'QUANTUM' && p === 'UHDL' && pdt === 8) return 'superloader-changer';
  if (pdt === 1 && p.includes('ULTRIUM')) return 'lto-drive';
  if (v === 'PRFLEET' && p === 'SPC4 EMULATOR') return 'spc4';
  return undefined;
}
