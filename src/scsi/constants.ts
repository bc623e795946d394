/**
 * SCSI code points used by prfleet, named after SPC-4/SAM-5/SMC-3 (scsi-pr.md §1, §9, §10.3, §11) and the Linux
 * headers. Each is a const object plus a type of its values, so `Object.values(PrType)` works in tests.
 */

/** Name lookup helper: `names[code]` or a fallback naming the code in hex. */
function nameOf(names: Readonly<Record<number, string>>, code: number, what: string): string {
  return names[code] ?? `${what} 0x${code.toString(16)}`;
}

/** Operation codes (CDB byte 0). Opcode 2Bh is POSITION TO ELEMENT on changers (LOCATE(10) on tape). */
export const Opcode = {
  TEST_UNIT_READY: 0x00,
  REWIND: 0x01,
  REQUEST_SENSE: 0x03,
  READ_BLOCK_LIMITS: 0x05,
  INITIALIZE_ELEMENT_STATUS: 0x07,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  WRITE_FILEMARKS_6: 0x10,
  SPACE_6: 0x11,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  RESERVE_6: 0x16,
  RELEASE_6: 0x17,
  ERASE_6: 0x19,
  MODE_SENSE_6: 0x1a,
  LOAD_UNLOAD: 0x1b,
  RECEIVE_DIAGNOSTIC_RESULTS: 0x1c,
  SEND_DIAGNOSTIC: 0x1d,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  POSITION_TO_ELEMENT: 0x2b,
  READ_POSITION: 0x34,
  INITIALIZE_ELEMENT_STATUS_WITH_RANGE: 0x37,
  WRITE_BUFFER: 0x3b,
  READ_BUFFER: 0x3c,
  LOG_SELECT: 0x4c,
  LOG_SENSE: 0x4d,
  MODE_SELECT_10: 0x55,
  RESERVE_10: 0x56,
  RELEASE_10: 0x57,
  MODE_SENSE_10: 0x5a,
  PERSISTENT_RESERVE_IN: 0x5e,
  PERSISTENT_RESERVE_OUT: 0x5f,
  READ_16: 0x88,
  READ_ATTRIBUTE: 0x8c,
  WRITE_ATTRIBUTE: 0x8d,
  WRITE_16: 0x8a,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  SECURITY_PROTOCOL_IN: 0xa2,
  MAINTENANCE_IN: 0xa3,
  MAINTENANCE_OUT: 0xa4,
  MOVE_MEDIUM: 0xa5,
  EXCHANGE_MEDIUM: 0xa6,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  SERVICE_ACTION_IN_12: 0xab,
  SECURITY_PROTOCOL_OUT: 0xb5,
  READ_ELEMENT_STATUS: 0xb8,
  /** Short alias of PERSISTENT_RESERVE_IN. */
  PRIN: 0x5e,
  /** Short alias of PERSISTENT_RESERVE_OUT. */
  PROUT: 0x5f,
} as const;
/** An operation code listed in Opcode. */
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

const OPCODE_NAMES: Record<number, string> = {};
for (const [name, code] of Object.entries(Opcode)) {
  if (name !== 'PRIN' && name !== 'PROUT')
    OPCODE_NAMES[code] = name.replace(/_/g, ' ').replace(/ (\d+)$/, '($1)');
}
/** SPC name of an opcode, e.g. 0x5f → 'PERSISTENT RESERVE OUT', 0x28 → 'READ(10)'; unknown → 'opcode 0xc1'. */
export function opcodeName(opcode: number): string {
  return nameOf(OPCODE_NAMES, opcode, 'opcode');
}

/** Persistent reservation TYPE codes (scsi-pr.md §1; 0h, 2h, 4h obsolete; 9h–Fh reserved). */
export const PrType = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const;
/** A defined persistent reservation type. */
export type PrType = (typeof PrType)[keyof typeof PrType];

const PR_TYPE_SHORT: Record<number, string> = {
  1: 'WE',
  3: 'EA',
  5: 'WE-RO',
  6: 'EA-RO',
  7: 'WE-AR',
  8: 'EA-AR',
};
// sg_persist's wording for the same codes.
const PR_TYPE_LONG: Record<number, string> = {
  1: 'Write Exclusive',
  3: 'Exclusive Access',
  5: 'Write Exclusive, registrants only',
  6: 'Exclusive Access, registrants only',
  7: 'Write Exclusive, all registrants',
  8: 'Exclusive Access, all registrants',
};
/** Short type name: 'WE', 'EA', 'WE-RO', 'EA-RO', 'WE-AR', 'EA-AR'; anything else → 'type 0x9'. */
export function prTypeName(type: number): string {
  return nameOf(PR_TYPE_SHORT, type, 'type');
}
/** Long type name as sg_persist prints it, e.g. 'Exclusive Access, registrants only'; unknown → 'type 0x9'. */
export function prTypeLongName(type: number): string {
  return nameOf(PR_TYPE_LONG, type, 'type');
}
/** Type in messages: 'WE (1)'; a code SPC-4 does not define reads '0x63 (99, undefined)', not 'type type 0x63'. */
export function prTypeWords(type: number): string {
  return isPrType(type)
    ? `${prTypeName(type)} (${type})`
    : `0x${type.toString(16)} (${type}, undefined)`;
}
/** True for the defined TYPE codes 1, 3, 5, 6, 7, 8. */
export function isPrType(type: number): type is PrType {
  return PR_TYPE_SHORT[type] !== undefined;
}
/** True for WE-AR (7) and EA-AR (8): every registrant is a holder (scsi-pr.md §6.1). */
export function isAllRegistrantsType(type: number): boolean {
  return (
    type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS ||
    type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
  );
}
/** True for WE-RO (5) and EA-RO (6). */
export function isRegistrantsOnlyType(type: number): boolean {
  return (
    type === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY ||
    type === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
  );
}

/** PERSISTENT RESERVE OUT service actions (CDB byte 1 bits 4–0). */
export const ProutSa = {
  REGISTER: 0x0,
  RESERVE: 0x1,
  RELEASE: 0x2,
  CLEAR: 0x3,
  PREEMPT: 0x4,
  PREEMPT_AND_ABORT: 0x5,
  REGISTER_AND_IGNORE_EXISTING_KEY: 0x6,
  REGISTER_AND_MOVE: 0x7,
  REPLACE_LOST_RESERVATION: 0x8,
} as const;
/** A defined PROUT service action. */
export type ProutSa = (typeof ProutSa)[keyof typeof ProutSa];

const PROUT_SA_NAMES: Record<number, string> = {};
for (const [name, code] of Object.entries(ProutSa)) PROUT_SA_NAMES[code] = name.replace(/_/g, ' ');
/** SPC name of a PROUT service action, e.g. 6 → 'REGISTER AND IGNORE EXISTING KEY'; unknown → 'service action 0x1f'. */
export function proutSaName(serviceAction: number): string {
  return nameOf(PROUT_SA_NAMES, serviceAction, 'service action');
}

/** PERSISTENT RESERVE IN service actions (CDB byte 1 bits 4–0; 04h–1Fh reserved). */
export const PrinSa = {
  READ_KEYS: 0x0,
  READ_RESERVATION: 0x1,
  REPORT_CAPABILITIES: 0x2,
  READ_FULL_STATUS: 0x3,
} as const;
/** A defined PRIN service action. */
export type PrinSa = (typeof PrinSa)[keyof typeof PrinSa];

const PRIN_SA_NAMES: Record<number, string> = {};
for (const [name, code] of Object.entries(PrinSa)) PRIN_SA_NAMES[code] = name.replace(/_/g, ' ');
/** SPC name of a PRIN service action, e.g. 3 → 'READ FULL STATUS'; unknown → 'service action 0x4'. */
export function prinSaName(serviceAction: number): string {
  return nameOf(PRIN_SA_NAMES, serviceAction, 'service action');
}

/** SCOPE codes: only LU_SCOPE (0h) is defined in SPC-4; 2h (element) is obsolete. */
export const Scope = {
  LU: 0x0,
  /** Obsolete element scope, still listed by media-changer manuals (scsi-pr.md §1). */
  ELEMENT: 0x2,
} as const;
/** A SCOPE code listed in Scope. */
export type Scope = (typeof Scope)[keyof typeof Scope];

/** SCOPE name: 0 → 'LU_SCOPE', 2 → 'ELEMENT_SCOPE'; anything else → 'scope 0x1'. */
export function scopeName(scope: number): string {
  return nameOf({ 0: 'LU_SCOPE', 2: 'ELEMENT_SCOPE' }, scope, 'scope');
}

/** SAM status byte values (scsi-pr.md §9.1). */
export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;
/** A defined SAM status. */
export type ScsiStatus = (typeof ScsiStatus)[keyof typeof ScsiStatus];

const STATUS_NAMES: Record<number, string> = {};
for (const [name, code] of Object.entries(ScsiStatus)) STATUS_NAMES[code] = name.replace(/_/g, ' ');
/** SAM name of a status byte, e.g. 0x18 → 'RESERVATION CONFLICT'; unknown → 'status 0x22'. */
export function statusName(status: number): string {
  return nameOf(STATUS_NAMES, status, 'status');
}

/** SENSE KEY values (SPC-4 table 27). */
export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  VENDOR_SPECIFIC: 0x9,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  VOLUME_OVERFLOW: 0xd,
  MISCOMPARE: 0xe,
  COMPLETED: 0xf,
} as const;
/** A defined sense key. */
export type SenseKey = (typeof SenseKey)[keyof typeof SenseKey];

const SENSE_KEY_NAMES: Record<number, string> = { 0xc: 'EQUAL' };
for (const [name, code] of Object.entries(SenseKey))
  SENSE_KEY_NAMES[code] = name.replace(/_/g, ' ');
/** SPC name of a sense key, e.g. 5 → 'ILLEGAL REQUEST'; above 0Fh → 'sense key 0x10'. */
export function senseKeyName(senseKey: number): string {
  return nameOf(SENSE_KEY_NAMES, senseKey, 'sense key');
}

/** Linux host_status (DID_*) values, include/scsi/scsi_status.h (scsi-pr.md §10.3). */
export const HostStatus = {
  DID_OK: 0x00,
  DID_NO_CONNECT: 0x01,
  DID_BUS_BUSY: 0x02,
  DID_TIME_OUT: 0x03,
  DID_BAD_TARGET: 0x04,
  DID_ABORT: 0x05,
  DID_PARITY: 0x06,
  DID_ERROR: 0x07,
  DID_RESET: 0x08,
  DID_BAD_INTR: 0x09,
  DID_PASSTHROUGH: 0x0a,
  DID_SOFT_ERROR: 0x0b,
  DID_IMM_RETRY: 0x0c,
  DID_REQUEUE: 0x0d,
  DID_TRANSPORT_DISRUPTED: 0x0e,
  DID_TRANSPORT_FAILFAST: 0x0f,
  DID_TARGET_FAILURE: 0x10,
  /** Reservation conflict on kernels before about 6.1 (scsi-pr.md §10.3). */
  DID_NEXUS_FAILURE: 0x11,
  DID_ALLOC_FAILURE: 0x12,
  DID_MEDIUM_ERROR: 0x13,
  DID_TRANSPORT_MARGINAL: 0x14,
} as const;
/** A Linux DID_* value. */
export type HostStatus = (typeof HostStatus)[keyof typeof HostStatus];

const HOST_STATUS_NAMES: Record<number, string> = {};
for (const [name, code] of Object.entries(HostStatus)) HOST_STATUS_NAMES[code] = name;
/** Linux name of a host_status, e.g. 0x11 → 'DID_NEXUS_FAILURE'; unknown → 'host status 0x20'. */
export function hostStatusName(hostStatus: number): string {
  return nameOf(HOST_STATUS_NAMES, hostStatus, 'host status');
}

/** Linux driver_status bit set when sense data was copied (include/scsi/sg.h). */
export const DRIVER_SENSE = 0x08;

/** PERIPHERAL DEVICE TYPE (INQUIRY byte 0 bits 4–0). */
export const PeripheralType = {
  DISK: 0x00,
  TAPE: 0x01,
  PRINTER: 0x02,
  PROCESSOR: 0x03,
  WRITE_ONCE: 0x04,
  CD_DVD: 0x05,
  SCANNER: 0x06,
  OPTICAL: 0x07,
  MEDIUM_CHANGER: 0x08,
  COMMUNICATIONS: 0x09,
  STORAGE_ARRAY: 0x0c,
  ENCLOSURE: 0x0d,
  SIMPLIFIED_DISK: 0x0e,
  OPTICAL_CARD: 0x0f,
  BRIDGE: 0x10,
  OBJECT_STORAGE: 0x11,
  AUTOMATION_DRIVE_INTERFACE: 0x12,
  SECURITY_MANAGER: 0x13,
  ZONED_BLOCK: 0x14,
  WELL_KNOWN_LU: 0x1e,
  UNKNOWN: 0x1f,
} as const;
/** A peripheral device type listed in PeripheralType. */
export type PeripheralType = (typeof PeripheralType)[keyof typeof PeripheralType];

// sg_inq's wording (sg3_utils sg_lib_pdt_strs).
const PDT_NAMES: Record<number, string> = {
  0x00: 'disk',
  0x01: 'tape',
  0x02: 'printer',
  0x03: 'processor',
  0x04: 'write once optical disk',
  0x05: 'cd/dvd',
  0x06: 'scanner',
  0x07: 'optical memory device',
  0x08: 'medium changer',
  0x09: 'communications',
  0x0c: 'storage array controller',
  0x0d: 'enclosure services device',
  0x0e: 'simplified direct access device',
  0x0f: 'optical card reader/writer device',
  0x10: 'bridge controller commands',
  0x11: 'object based storage',
  0x12: 'automation/drive interface',
  0x13: 'security manager device',
  0x14: 'host managed zoned block',
  0x1e: 'well known logical unit',
  0x1f: 'unknown or no device type',
};
/** Device type words as sg_inq prints them, e.g. 8 → 'medium changer'; others → 'device type 0x15'. */
export function peripheralTypeName(type: number): string {
  return nameOf(PDT_NAMES, type, 'device type');
}

/** PROTOCOL IDENTIFIER values (TransportID byte 0 bits 3–0; VPD 83h byte 0 bits 7–4), scsi-pr.md §4. */
export const ProtocolId = {
  FC: 0x0,
  SPI: 0x1,
  SSA: 0x2,
  IEEE_1394: 0x3,
  SRP: 0x4,
  ISCSI: 0x5,
  SAS: 0x6,
  ADT: 0x7,
  ATA: 0x8,
  UAS: 0x9,
  SOP: 0xa,
  PCIE: 0xb,
  NONE: 0xf,
} as const;
/** A protocol identifier listed in ProtocolId. */
export type ProtocolId = (typeof ProtocolId)[keyof typeof ProtocolId];

const PROTOCOL_NAMES: Record<number, string> = {
  0x0: 'Fibre Channel',
  0x1: 'SPI',
  0x2: 'SSA',
  0x3: 'IEEE 1394',
  0x4: 'SRP',
  0x5: 'iSCSI',
  0x6: 'SAS',
  0x7: 'ADT',
  0x8: 'ATA',
  0x9: 'UAS',
  0xa: 'SOP',
  0xb: 'PCIe',
  0xf: 'none',
};
/** Protocol name, e.g. 6 → 'SAS'; unknown → 'protocol 0xc'. */
export function protocolIdName(protocolId: number): string {
  return nameOf(PROTOCOL_NAMES, protocolId, 'protocol');
}
