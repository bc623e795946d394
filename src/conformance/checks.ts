/**
 * A step's expectation checked against the device's answer: status and sense, data-in bytes, the PRIN header's
 * PRgeneration, the keys, the reservation, READ FULL STATUS descriptors and REPORT CAPABILITIES. Each check
 * returns the first difference as "expected …, got …", or undefined when the answer matches.
 */
import {
  decodeCapabilities,
  decodeFullStatus,
  decodeReadKeys,
  decodeReadReservation,
  decodeSense,
  formatKey,
  formatTransportId,
  toHex,
  transportIdEquals,
  type ScsiResponse,
  type TransportId,
} from '../scsi/index.js';
import { profileCapabilities, type ProfileName } from '../emulator/index.js';
import type { Expectation, ScenarioCommand } from './scenario.js';

/** What the checks need from the run besides the answer. */
export interface CheckContext {
  /** PRgenerations read by labelled steps (generationDelta's `from`). */
  readonly generations: ReadonlyMap<string, number>;
  /** The nexuses' identities, when discovered. */
  readonly identities:
    ReadonlyArray<{ transportId: TransportId; relativeTargetPort: number }> | undefined;
  /** The device's profile (REPORT CAPABILITIES `matchesProfile`). */
  readonly profile: ProfileName;
}

type Expected<K extends keyof Expectation> = NonNullable<Expectation[K]>;

/** The first failed expectation, as "expected …, got …", or undefined. */
export function checkResponse(
  command: ScenarioCommand,
  e: Expectation,
  r: ScsiResponse,
  context: CheckContext,
): string | undefined {
  if (r.hostStatus !== 0) return `transport error: host status 0x${r.hostStatus.toString(16)}`;
  const header = prinHeader(command, r);
  return (
    statusProblem(e, r) ??
    dataInProblem(e, r) ??
    headerProblem(e, header, context.generations) ??
    (e.keys ? keysProblem(e.keys, r) : undefined) ??
    (e.reservation !== undefined ? reservationProblem(e.reservation, r) : undefined) ??
    (e.fullStatus ? fullStatusProblem(e.fullStatus, r, context.identities) : undefined) ??
    (e.capabilities ? capabilitiesProblem(e.capabilities, r, context.profile) : undefined)
  );
}

/** The SCSI status (and sense, for CHECK CONDITION) against the expected one. */
export function statusProblem(e: Expectation, r: ScsiResponse): string | undefined {
  const wantStatus = e.sense ? 'check-condition' : (e.status ?? 'good');
  if (wantStatus === 'any') return undefined;
  const status = statusWord(r.status);
  if (status !== wantStatus) {
    const want = e.sense ? `CHECK CONDITION ${senseWords(e.sense)}` : wantStatus;
    return `expected ${want}, got ${status}${status === 'check-condition' ? ` ${senseText(r)}` : ''}`;
  }
  if (e.sense) {
    const got = senseText(r);
    const want = senseWords(e.sense);
    if (got !== want) return `expected sense ${want}, got ${got}`;
  }
  return undefined;
}

function statusWord(status: number): string {
  if (status === 0) return 'good';
  if (status === 2) return 'check-condition';
  if (status === 0x18) return 'reservation-conflict';
  return `0x${status.toString(16)}`;
}

function senseWords(sense: Expected<'sense'>): string {
  return `${hex2(sense.key)}/${hex2(sense.asc)}/${hex2(sense.ascq)}`;
}

/** KEY/ASC/ASCQ of the answer's sense, in hex. */
function senseText(r: ScsiResponse): string {
  try {
    const s = decodeSense(r.sense);
    return `${hex2(s.senseKey)}/${hex2(s.asc)}/${hex2(s.ascq)}`;
  } catch {
    return `undecodable sense ${toHex(r.sense)}`;
  }
}

/** The data-in length and bytes. */
function dataInProblem(e: Expectation, r: ScsiResponse): string | undefined {
  if (e.dataInLength !== undefined && r.dataIn.length !== e.dataInLength) {
    return `expected ${e.dataInLength} data-in bytes, got ${r.dataIn.length}`;
  }
  if (e.dataInHex !== undefined && toHex(r.dataIn) !== e.dataInHex.toLowerCase()) {
    return `expected data-in ${e.dataInHex.toLowerCase()}, got ${toHex(r.dataIn)}`;
  }
  if (e.dataInAt !== undefined) {
    const want = e.dataInAt.hex.toLowerCase();
    const got = toHex(r.dataIn.subarray(e.dataInAt.offset, e.dataInAt.offset + want.length / 2));
    if (got !== want) return `expected data-in bytes ${want} at ${e.dataInAt.offset}, got ${got}`;
  }
  return undefined;
}

/** The PRIN header's PRgeneration (absolute or relative to a labelled step) and ADDITIONAL LENGTH. */
function headerProblem(
  e: Expectation,
  header: PrinHeader | undefined,
  generations: ReadonlyMap<string, number>,
): string | undefined {
  if (e.generation !== undefined && header?.generation !== e.generation) {
    return `expected PRgeneration ${e.generation}, got ${String(header?.generation)}`;
  }
  if (e.generationDelta) {
    const from = generations.get(e.generationDelta.from);
    if (from === undefined)
      return `no PRgeneration was recorded under label ${e.generationDelta.from}`;
    const want = (from + e.generationDelta.delta) >>> 0;
    if (header?.generation !== want) {
      return `expected PRgeneration ${want} (${e.generationDelta.from} ${from} + ${e.generationDelta.delta}), got ${String(header?.generation)}`;
    }
  }
  if (e.additionalLength !== undefined && header?.additionalLength !== e.additionalLength) {
    return `expected ADDITIONAL LENGTH ${e.additionalLength}, got ${String(header?.additionalLength)}`;
  }
  return undefined;
}

/** READ KEYS: the registered keys, as a sorted multiset. */
function keysProblem(keys: Expected<'keys'>, r: ScsiResponse): string | undefined {
  const got = decodeReadKeys(r.dataIn).keys.map(formatKey).sort();
  const want = keys.map(formatKey).sort();
  if (got.join(',') !== want.join(','))
    return `expected keys [${want.join(', ')}], got [${got.join(', ')}]`;
  return undefined;
}

/** READ RESERVATION: the holder's key and type, or none. */
function reservationProblem(
  reservation: { key: bigint; type: number } | null,
  r: ScsiResponse,
): string | undefined {
  const got = decodeReadReservation(r.dataIn).reservation;
  const text = (x: { key: bigint; type: number } | null): string =>
    x ? `${formatKey(x.key)} type ${x.type}` : 'none';
  if (text(got ? { key: got.key, type: got.type } : null) !== text(reservation)) {
    return `expected reservation ${text(reservation)}, got ${text(got)}`;
  }
  return undefined;
}

/** READ FULL STATUS: descriptor count, ALL_TG_PT bits, ports, holders, and decodable TransportIDs. */
function fullStatusProblem(
  want: Expected<'fullStatus'>,
  r: ScsiResponse,
  identities: CheckContext['identities'],
): string | undefined {
  const d = decodeFullStatus(r.dataIn).descriptors;
  if (want.count !== undefined && d.length !== want.count) {
    return `expected ${want.count} READ FULL STATUS descriptors, got ${d.length}`;
  }
  if (want.allTgPt && d.map((x) => x.allTgPt).join() !== want.allTgPt.join()) {
    return `expected ALL_TG_PT [${want.allTgPt.join()}], got [${d.map((x) => x.allTgPt).join()}]`;
  }
  if (want.portsOfNexuses) {
    const got = d
      .map((x) => x.relativeTargetPort)
      .sort()
      .join(', ');
    const ports = want.portsOfNexuses
      .map((n) => identities?.[n]?.relativeTargetPort ?? `?${n}`)
      .sort()
      .join(', ');
    if (got !== ports) return `expected relative target ports [${ports}], got [${got}]`;
  }
  if (want.holderKeys) {
    const got = d
      .filter((x) => x.holder)
      .map((x) => formatKey(x.reservationKey))
      .sort()
      .join(', ');
    const holders = want.holderKeys.map(formatKey).sort().join(', ');
    if (got !== holders) return `expected R_HOLDER keys [${holders}], got [${got}]`;
  }
  if (identities) {
    for (const x of d) {
      const known = identities.some((i) => transportIdEquals(i.transportId, x.transportId));
      if (!known && !formatTransportId(x.transportId))
        return 'undecodable TransportID in READ FULL STATUS';
    }
  }
  return undefined;
}

/** REPORT CAPABILITIES: a well-formed answer, PTPL_A, and the profile's capabilities. */
function capabilitiesProblem(
  want: Expected<'capabilities'>,
  r: ScsiResponse,
  profile: ProfileName,
): string | undefined {
  const c = decodeCapabilities(r.dataIn);
  if (c.length !== 8) return `expected REPORT CAPABILITIES LENGTH 8, got ${c.length}`;
  if (c.allowCommands > 5) return `ALLOW COMMANDS ${c.allowCommands} is above 5`;
  if (c.supportedTypes.some((t) => ![1, 3, 5, 6, 7, 8].includes(t))) {
    return `type mask has undefined bits: [${c.supportedTypes.join()}]`;
  }
  if (want.ptplA !== undefined && c.ptplA !== want.ptplA) {
    return `expected PTPL_A ${want.ptplA ? 1 : 0}, got ${c.ptplA ? 1 : 0}`;
  }
  if (want.matchesProfile) {
    const p = profileCapabilities(profile);
    const got = `types [${c.supportedTypes.join()}] SIP_C ${+c.sipC} ATP_C ${+c.atpC} PTPL_C ${+c.ptplC}`;
    const expected = `types [${p.types.join()}] SIP_C ${+p.specIPt} ATP_C ${+p.allTgPt} PTPL_C ${+p.aptpl}`;
    if (got !== expected) return `expected ${expected} (profile ${profile}), got ${got}`;
  }
  return undefined;
}

/** PRGENERATION and ADDITIONAL LENGTH of a PRIN answer. */
interface PrinHeader {
  generation: number;
  additionalLength: number;
}

/** The PRIN header of a READ KEYS / READ RESERVATION / READ FULL STATUS answer, else undefined. */
export function prinHeader(command: ScenarioCommand, r: ScsiResponse): PrinHeader | undefined {
  const sa =
    command.kind === 'read-keys'
      ? 0
      : command.kind === 'read-reservation'
        ? 1
        : command.kind === 'read-full-status'
          ? 3
          : command.kind === 'prin'
            ? command.serviceAction
            : -1;
  if (r.status !== 0 || r.dataIn.length < 8 || ![0, 1, 3].includes(sa)) return undefined;
  const view = new DataView(r.dataIn.buffer, r.dataIn.byteOffset, r.dataIn.byteLength);
  return { generation: view.getUint32(0), additionalLength: view.getUint32(4) };
}

/** `n` as two hex digits. */
export function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
