/**
 * The prfleet reservation-key layout (docs/keys.md) and best-effort readings of foreign keys met on devices.
 *
 * Pure: bigint in, values out. A reservation key is 8 bytes, big-endian in the PROUT parameter list (SPC-4
 * 6.16.2), so byte 0 here is the most significant byte of the bigint.
 *
 * prfleet layout, version 1:
 *
 * | byte | meaning                                                             |
 * |------|---------------------------------------------------------------------|
 * | 0    | magic 'P' (0x50)                                                    |
 * | 1    | layout version (0x01)                                               |
 * | 2–3  | site code, assigned by the key registry (1–65535)                   |
 * | 4–5  | host id, assigned by the key registry within the site (1–65535)     |
 * | 6    | purpose (high nibble, 1–15) and serial (low nibble, 0–15)           |
 * | 7    | check byte: CRC-8/SMBUS over bytes 0–6                              |
 */
import { formatKey, parseKey } from '../scsi/keys.js';

/** Byte 0 of every prfleet key: ASCII 'P'. */
export const KEY_MAGIC = 0x50;
/** Byte 1 of keys this code writes. */
export const KEY_LAYOUT_VERSION = 1;
/** Largest site code and host id (16-bit fields; 0 is never assigned). */
export const MAX_SITE_CODE = 0xffff;
/** Largest host id within a site. */
export const MAX_HOST_ID = 0xffff;
/** Largest serial: keys per (host id, purpose) before the registry moves the agent to a fresh host id. */
export const MAX_SERIAL = 0x0f;

const UINT64_MAX = (1n << 64n) - 1n;

/** What a key is for; the code is the high nibble of byte 6. */
export const KEY_PURPOSES = {
  backup: 1,
  restore: 2,
  admin: 3,
  maintenance: 4,
  test: 5,
} as const;

/** Name of a key purpose. */
export type KeyPurpose = keyof typeof KEY_PURPOSES;

/** Every purpose name, in code order. */
export const KEY_PURPOSE_NAMES = Object.keys(KEY_PURPOSES) as KeyPurpose[];

/** Thrown for a value that cannot be a key or a layout field; `field` names it. */
export class KeyLayoutError extends Error {
  override readonly name = 'KeyLayoutError';
  /** The field at fault, e.g. "siteCode". */
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

/** The fields of a prfleet key. */
export interface KeyFields {
  /** Site code, 1–65535. */
  readonly siteCode: number;
  /** Host id within the site, 1–65535. */
  readonly hostId: number;
  /** What the key is for. */
  readonly purpose: KeyPurpose;
  /** Serial within (site, host id, purpose), 0–15. */
  readonly serial: number;
}

/** A key that reads as the prfleet layout with a valid check byte. */
export interface PrfleetKeyLayout extends KeyFields {
  /** Layout version from byte 1. */
  readonly version: number;
  /** Raw purpose code (high nibble of byte 6). */
  readonly purposeCode: number;
}

/** Why a key is not a prfleet key. */
export type NotPrfleetReason = 'magic' | 'version' | 'purpose' | 'zero-field' | 'check-byte';

/** Throws KeyLayoutError unless `key` is a uint64 bigint. */
export function assertKey(key: bigint, field = 'key'): void {
  if (typeof key !== 'bigint' || key < 0n || key > UINT64_MAX) {
    throw new KeyLayoutError(field, `invalid ${field}: ${String(key)} is not a uint64`);
  }
}

/** The 8 bytes of a key, most significant first (the order it travels in a PROUT parameter list). */
export function keyToBytes(key: bigint): Uint8Array {
  assertKey(key);
  const bytes = new Uint8Array(8);
  let rest = key;
  for (let i = 7; i >= 0; i--) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}

/** A key from its 8 bytes, most significant first. Throws KeyLayoutError unless given exactly 8 bytes. */
export function keyFromBytes(bytes: Uint8Array): bigint {
  if (bytes.length !== 8) {
    throw new KeyLayoutError('key', `invalid key: ${bytes.length} bytes, a reservation key has 8`);
  }
  let key = 0n;
  for (const b of bytes) key = (key << 8n) | BigInt(b);
  return key;
}

/** A key as 16 lower-case hex digits without prefix (the store's column format). */
export function keyToHex(key: bigint): string {
  assertKey(key);
  return key.toString(16).padStart(16, '0');
}

// Printing and parsing a key have one home, the codec (src/scsi/keys.ts): re-exported for the layout's users.
export { formatKey, parseKey };

/**
 * CRC-8/SMBUS over `bytes`: polynomial 0x07, init 0x00, no reflection, no final xor (reveng CRC catalogue,
 * check value 0xF4 for "123456789"). It catches every single-byte error and every burst of up to 8 bits.
 */
export function crc8(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

function checkRange(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new KeyLayoutError(field, `invalid ${field}: ${value} is not in ${min}..${max}`);
  }
}

/** Builds a prfleet key (layout version 1) from its fields. Throws KeyLayoutError naming a bad field. */
export function encodeKey(fields: KeyFields): bigint {
  checkRange('siteCode', fields.siteCode, 1, MAX_SITE_CODE);
  checkRange('hostId', fields.hostId, 1, MAX_HOST_ID);
  checkRange('serial', fields.serial, 0, MAX_SERIAL);
  const purposeCode = KEY_PURPOSES[fields.purpose];
  if (purposeCode === undefined) {
    throw new KeyLayoutError(
      'purpose',
      `invalid purpose: ${JSON.stringify(fields.purpose)} is not one of ${KEY_PURPOSE_NAMES.join(', ')}`,
    );
  }
  const bytes = new Uint8Array(8);
  bytes[0] = KEY_MAGIC;
  bytes[1] = KEY_LAYOUT_VERSION;
  bytes[2] = fields.siteCode >> 8;
  bytes[3] = fields.siteCode & 0xff;
  bytes[4] = fields.hostId >> 8;
  bytes[5] = fields.hostId & 0xff;
  bytes[6] = (purposeCode << 4) | fields.serial;
  bytes[7] = crc8(bytes.subarray(0, 7));
  return keyFromBytes(bytes);
}

/** Name of a purpose code, or undefined for a reserved code. */
export function purposeName(code: number): KeyPurpose | undefined {
  return KEY_PURPOSE_NAMES.find((name) => KEY_PURPOSES[name] === code);
}

/**
 * Reads `key` as the prfleet layout. Returns the fields when magic, version, purpose, non-zero site/host and
 * check byte all hold, else the first reason it does not.
 */
export function decodeKeyLayout(
  key: bigint,
):
  | { readonly ok: true; readonly layout: PrfleetKeyLayout }
  | { readonly ok: false; readonly reason: NotPrfleetReason } {
  const b = keyToBytes(key);
  if (b[0] !== KEY_MAGIC) return { ok: false, reason: 'magic' };
  if (b[1] !== KEY_LAYOUT_VERSION) return { ok: false, reason: 'version' };
  if (crc8(b.subarray(0, 7)) !== b[7]) return { ok: false, reason: 'check-byte' };
  const byte6 = b[6] as number;
  const purpose = purposeName(byte6 >> 4);
  if (purpose === undefined) return { ok: false, reason: 'purpose' };
  const siteCode = ((b[2] as number) << 8) | (b[3] as number);
  const hostId = ((b[4] as number) << 8) | (b[5] as number);
  if (siteCode === 0 || hostId === 0) return { ok: false, reason: 'zero-field' };
  return {
    ok: true,
    layout: {
      version: KEY_LAYOUT_VERSION,
      siteCode,
      hostId,
      purpose,
      purposeCode: byte6 >> 4,
      serial: byte6 & 0x0f,
    },
  };
}

/**
 * A best-effort reading of a key that is not in this registry. `kind` says which layout it matched;
 * `confidence` says how sure the match is (`pattern`: a documented fixed pattern matched; `heuristic`: the
 * value is merely consistent with the layout). `summary` is one line for people, naming the source.
 */
export type ForeignKeyReading =
  | { readonly kind: 'zero'; readonly confidence: 'pattern'; readonly summary: string }
  | {
      readonly kind: 'prfleet-unregistered';
      readonly confidence: 'pattern';
      readonly layout: PrfleetKeyLayout;
      readonly summary: string;
    }
  | {
      readonly kind: 'vxfen-coordinator';
      readonly confidence: 'pattern';
      readonly clusterId: number;
      readonly nodeId: number;
      readonly text: string;
      readonly summary: string;
    }
  | {
      readonly kind: 'vxfen-vcs-data' | 'vxfen-cvm-data';
      readonly confidence: 'pattern';
      readonly nodeId: number;
      readonly text: string;
      readonly summary: string;
    }
  | { readonly kind: 'linux-nfsd-mds'; readonly confidence: 'pattern'; readonly summary: string }
  | {
      readonly kind: 'fence-scsi';
      readonly confidence: 'heuristic';
      readonly clusterHash: number;
      readonly nodeId: number;
      readonly summary: string;
    }
  | {
      readonly kind: 'ascii';
      readonly confidence: 'heuristic';
      readonly text: string;
      readonly summary: string;
    }
  | {
      readonly kind: 'small-integer';
      readonly confidence: 'heuristic';
      readonly value: number;
      readonly summary: string;
    }
  | { readonly kind: 'unknown'; readonly confidence: 'heuristic'; readonly summary: string };

const isPrintable = (b: number): boolean => b >= 0x20 && b <= 0x7e;
const asciiOf = (bytes: Uint8Array): string => String.fromCharCode(...bytes);
const HEX_UPPER = /^[0-9A-F]+$/;

// Linux fs/nfsd/blocklayout.c: #define NFSD_MDS_PR_KEY 0x0100000000000000ULL (the pNFS SCSI layout server).
const NFSD_MDS_PR_KEY = 0x0100000000000000n;

/**
 * Reads a key by the layouts documented in docs/keys.md, most specific first. Every reading cites its source
 * there; anything else is `ascii`, `small-integer` or `unknown`.
 */
export function readForeignKey(key: bigint): ForeignKeyReading {
  const b = keyToBytes(key);
  const hex = formatKey(key);
  if (key === 0n)
    return {
      kind: 'zero',
      confidence: 'pattern',
      summary: 'zero: no key (SPC: 0 means unregistered)',
    };

  const layout = decodeKeyLayout(key);
  if (layout.ok) {
    const l = layout.layout;
    return {
      kind: 'prfleet-unregistered',
      confidence: 'pattern',
      layout: l,
      summary: `prfleet layout v${l.version} with a valid check byte (site ${l.siteCode}, host ${l.hostId}, ${l.purpose} #${l.serial}) but unknown to this registry`,
    };
  }

  // Veritas data disks: byte 0 = 'A' + LLT node id, then "VCS" (failover disk group) or "PGR" (CVM parallel);
  // the remaining bytes vary (disk-group count for PGR), so only bytes 0-3 are matched.
  const tag = asciiOf(b.subarray(1, 4));
  const nodeId = (b[0] as number) - 0x41;
  if ((tag === 'VCS' || tag === 'PGR') && nodeId >= 0 && nodeId < 26) {
    const kind = tag === 'VCS' ? 'vxfen-vcs-data' : 'vxfen-cvm-data';
    const text = asciiOf(b.map((c) => (isPrintable(c) ? c : 0x2e))); // unprintable bytes shown as '.'
    return {
      kind,
      confidence: 'pattern',
      nodeId,
      text,
      summary: `Veritas I/O fencing data-disk key "${text}" (${tag === 'VCS' ? 'VCS failover' : 'CVM parallel'} disk group): node id ${nodeId}`,
    };
  }
  if (b.every(isPrintable)) {
    const text = asciiOf(b);
    // Veritas vxfen coordinator disks: 'V' 'F', cluster id as 4 hex digits, node id as 2 hex digits (ASCII).
    if (text.startsWith('VF') && HEX_UPPER.test(text.slice(2))) {
      const clusterId = Number.parseInt(text.slice(2, 6), 16);
      const nodeId = Number.parseInt(text.slice(6, 8), 16);
      return {
        kind: 'vxfen-coordinator',
        confidence: 'pattern',
        clusterId,
        nodeId,
        text,
        summary: `Veritas I/O fencing coordinator key "${text}": cluster id ${clusterId}, node id ${nodeId}`,
      };
    }
    return {
      kind: 'ascii',
      confidence: 'heuristic',
      text,
      summary: `ASCII text "${text}" (a name chosen by a person or a tool)`,
    };
  }

  if (key === NFSD_MDS_PR_KEY) {
    return {
      kind: 'linux-nfsd-mds',
      confidence: 'pattern',
      summary: 'Linux nfsd pNFS SCSI layout server key (NFSD_MDS_PR_KEY)',
    };
  }

  const high = Number(key >> 32n);
  const low = Number(key & 0xffff_ffffn);
  if (high === 0) {
    // fence_scsi (ClusterLabs fence-agents): "%.4s%.4d" % (md5(cluster name) hex, node id) read as hex, so the
    // upper 16 bits are a cluster-name hash and the lower 16 bits show the node id in decimal digits.
    const clusterHash = low >>> 16;
    const nodeDigits = (low & 0xffff).toString(16).padStart(4, '0');
    if (clusterHash !== 0 && /^[0-9]{4}$/.test(nodeDigits) && Number(nodeDigits) > 0) {
      return {
        kind: 'fence-scsi',
        confidence: 'heuristic',
        clusterHash,
        nodeId: Number(nodeDigits),
        summary: `may be a Pacemaker fence_scsi key: cluster-name hash 0x${clusterHash.toString(16).padStart(4, '0')}, node id ${Number(nodeDigits)}`,
      };
    }
    return {
      kind: 'small-integer',
      confidence: 'heuristic',
      value: low,
      summary: `small integer ${low} (hand-chosen, as in sg_persist(8) or mpathpersist reservation_key examples)`,
    };
  }
  return { kind: 'unknown', confidence: 'heuristic', summary: `unknown layout ${hex}` };
}
