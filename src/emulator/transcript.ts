/**
 * Transcripts: what one or more I_T nexuses sent to one LU and what it answered, as JSON lines, so any transport
 * (SG_IO on a real device, the emulator, the agent's emulated transport) can record a session and the emulator can
 * replay it. Format (docs/emulator.md "Transcripts"):
 *
 *   {"type":"header","format":"prfleet-transcript","version":1,"profile":"lio","lu":"lun0","nexuses":[…]}
 *   {"type":"command","step":0,"nexus":0,"cdb":"5e00…","dataOut":"","dataInLength":8192,"timeoutMs":60000,
 *    "status":0,"sense":"","dataIn":"00000000…","resid":8184,"hostStatus":0,"driverStatus":0,"durationMs":3}
 *   {"type":"event","step":1,"event":"power-cycle"}
 *
 * Bytes are lower-case hex without separators; `step` counts lines after the header from 0.
 */
import {
  parseTransportId,
  formatTransportId,
  type ScsiRequest,
  type ScsiResponse,
} from '../scsi/index.js';
import { createEmulator } from './emulator.js';
import type { Initiator } from './pr-state.js';
import { isProfileName, type ProfileName } from '../scsi/profiles.js';

/** One I_T nexus of a transcript; `transportId` in formatTransportId form when known. */
export interface TranscriptNexus {
  transportId?: string;
  relativeTargetPort?: number;
  /** Device node or emulated path name the nexus was driven through. */
  path?: string;
}

/** First line of a transcript. */
export interface TranscriptHeader {
  type: 'header';
  format: 'prfleet-transcript';
  version: 1;
  /** Profile the recorded LU follows (a ProfileName, or 'unknown'). */
  profile: string;
  /** LU name (emulator id, or a device identity such as `naa.6001405…`). */
  lu: string;
  /** Unit serial number (VPD 80h), so a replay can answer INQUIRY alike. */
  serial?: string;
  nexuses: TranscriptNexus[];
  /** Free text: where and how it was recorded. */
  note?: string;
}

/** One command and its answer. */
export interface TranscriptCommand {
  type: 'command';
  step: number;
  /** Index into the header's nexuses. */
  nexus: number;
  cdb: string;
  dataOut: string;
  dataInLength: number;
  timeoutMs: number;
  status: number;
  sense: string;
  dataIn: string;
  resid: number;
  hostStatus: number;
  driverStatus: number;
  durationMs: number;
}

/** Something that happened to the LU or a nexus between commands (emulator-only controls, or observed). */
export interface TranscriptEvent {
  type: 'event';
  step: number;
  event: 'power-cycle' | 'reset' | 'nexus-loss';
  /** For nexus-loss: the nexus index. */
  nexus?: number;
}

/** A parsed transcript. */
export interface Transcript {
  header: TranscriptHeader;
  entries: Array<TranscriptCommand | TranscriptEvent>;
}

/** Records commands into a transcript; `toJsonLines()` gives the file text (ending in a newline). */
export interface TranscriptRecorder {
  /** Records one command sent through nexus `nexus` and the response. */
  command(nexus: number, request: ScsiRequest, response: ScsiResponse): void;
  /** Records a power cycle, LU reset or nexus loss. */
  event(event: TranscriptEvent['event'], nexus?: number): void;
  transcript(): Transcript;
  toJsonLines(): string;
}

/** Thrown by parseTranscript for text that is not a transcript; names the 1-based line. */
export class TranscriptParseError extends Error {
  override readonly name = 'TranscriptParseError';
  readonly line: number;
  /** `message` names the problem; `line` is 1-based. */
  constructor(message: string, line: number) {
    super(`transcript line ${line}: ${message}`);
    this.line = line;
  }
}

function hex(bytes: Uint8Array | undefined): string {
  let s = '';
  for (const b of bytes ?? []) s += b.toString(16).padStart(2, '0');
  return s;
}

function unhex(text: string, field: string, line: number): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text))
    throw new TranscriptParseError(`${field} is not hex: ${text.slice(0, 40)}`, line);
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Creates a recorder; header fields as in TranscriptHeader (type/format/version are filled in). `onLine` receives
 * each JSON line as it is recorded, the header first (a recorder that streams to a file loses nothing on a crash);
 * with `retain: false` entries are not kept in memory (a long-lived streaming recorder), so transcript() and
 * toJsonLines() give the header only.
 */
export function createTranscriptRecorder(
  header: {
    profile: string;
    lu: string;
    nexuses: TranscriptNexus[];
    serial?: string;
    note?: string;
  },
  options: { onLine?: (line: string) => void; retain?: boolean } = {},
): TranscriptRecorder {
  const head: TranscriptHeader = {
    type: 'header',
    format: 'prfleet-transcript',
    version: 1,
    ...header,
  };
  const entries: Array<TranscriptCommand | TranscriptEvent> = [];
  let step = 0;
  const add = (entry: TranscriptCommand | TranscriptEvent): void => {
    if (options.retain !== false) entries.push(entry);
    step++;
    options.onLine?.(JSON.stringify(entry));
  };
  options.onLine?.(JSON.stringify(head));
  return {
    command(nexus, request, response) {
      add({
        type: 'command',
        step,
        nexus,
        cdb: hex(request.cdb),
        dataOut: hex(request.dataOut),
        dataInLength: request.dataInLength,
        timeoutMs: request.timeoutMs,
        status: response.status,
        sense: hex(response.sense),
        dataIn: hex(response.dataIn),
        resid: response.resid,
        hostStatus: response.hostStatus,
        driverStatus: response.driverStatus,
        durationMs: response.durationMs,
      });
    },
    event(event, nexus) {
      add(
        nexus === undefined
          ? { type: 'event', step, event }
          : { type: 'event', step, event, nexus },
      );
    },
    transcript() {
      return { header: structuredCloneish(head), entries: entries.map((e) => ({ ...e })) };
    },
    toJsonLines() {
      return formatTranscript({ header: head, entries });
    },
  };
}

function structuredCloneish(h: TranscriptHeader): TranscriptHeader {
  return { ...h, nexuses: h.nexuses.map((n) => ({ ...n })) };
}

/** Serializes a transcript as JSON lines (header first, newline-terminated). */
export function formatTranscript(t: Transcript): string {
  return [t.header, ...t.entries].map((x) => JSON.stringify(x)).join('\n') + '\n';
}

function num(o: Record<string, unknown>, field: string, line: number): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new TranscriptParseError(
      `${field} must be a non-negative integer, got ${JSON.stringify(v)}`,
      line,
    );
  }
  return v;
}

function str(o: Record<string, unknown>, field: string, line: number): string {
  const v = o[field];
  if (typeof v !== 'string')
    throw new TranscriptParseError(`${field} must be a string, got ${JSON.stringify(v)}`, line);
  return v;
}

/** Parses JSON-lines text; throws TranscriptParseError naming the line for anything malformed. Blank lines are skipped. */
export function parseTranscript(text: string): Transcript {
  const lines = text.split('\n');
  let header: TranscriptHeader | undefined;
  const entries: Array<TranscriptCommand | TranscriptEvent> = [];
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    if (raw.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new TranscriptParseError('not JSON', line);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new TranscriptParseError('not a JSON object', line);
    }
    const o = value as Record<string, unknown>;
    if (!header) {
      if (o['type'] !== 'header' || o['format'] !== 'prfleet-transcript' || o['version'] !== 1) {
        throw new TranscriptParseError(
          'first line must be a prfleet-transcript version 1 header',
          line,
        );
      }
      const nexuses = o['nexuses'];
      if (!Array.isArray(nexuses) || nexuses.some((n) => typeof n !== 'object' || n === null)) {
        throw new TranscriptParseError('nexuses must be an array of objects', line);
      }
      header = {
        type: 'header',
        format: 'prfleet-transcript',
        version: 1,
        profile: str(o, 'profile', line),
        lu: str(o, 'lu', line),
        nexuses: (nexuses as Array<Record<string, unknown>>).map((n) => {
          const out: TranscriptNexus = {};
          if (n['transportId'] !== undefined) out.transportId = str(n, 'transportId', line);
          if (n['relativeTargetPort'] !== undefined)
            out.relativeTargetPort = num(n, 'relativeTargetPort', line);
          if (n['path'] !== undefined) out.path = str(n, 'path', line);
          return out;
        }),
      };
      if (o['serial'] !== undefined) header.serial = str(o, 'serial', line);
      if (o['note'] !== undefined) header.note = str(o, 'note', line);
      continue;
    }
    const step = entries.length;
    if (o['type'] === 'event') {
      const event = o['event'];
      if (event !== 'power-cycle' && event !== 'reset' && event !== 'nexus-loss') {
        throw new TranscriptParseError(`unknown event ${JSON.stringify(event)}`, line);
      }
      const entry: TranscriptEvent = { type: 'event', step, event };
      if (o['nexus'] !== undefined) entry.nexus = num(o, 'nexus', line);
      if (event === 'nexus-loss' && entry.nexus === undefined)
        throw new TranscriptParseError('nexus-loss needs nexus', line);
      entries.push(entry);
      continue;
    }
    if (o['type'] !== 'command')
      throw new TranscriptParseError(`unknown type ${JSON.stringify(o['type'])}`, line);
    const entry: TranscriptCommand = {
      type: 'command',
      step,
      nexus: num(o, 'nexus', line),
      cdb: str(o, 'cdb', line).toLowerCase(),
      dataOut: (o['dataOut'] === undefined ? '' : str(o, 'dataOut', line)).toLowerCase(),
      dataInLength: num(o, 'dataInLength', line),
      timeoutMs: o['timeoutMs'] === undefined ? 60000 : num(o, 'timeoutMs', line),
      status: num(o, 'status', line),
      sense: str(o, 'sense', line).toLowerCase(),
      dataIn: str(o, 'dataIn', line).toLowerCase(),
      resid: num(o, 'resid', line),
      hostStatus: o['hostStatus'] === undefined ? 0 : num(o, 'hostStatus', line),
      driverStatus: o['driverStatus'] === undefined ? 0 : num(o, 'driverStatus', line),
      durationMs: o['durationMs'] === undefined ? 0 : num(o, 'durationMs', line),
    };
    unhex(entry.cdb, 'cdb', line);
    unhex(entry.dataOut, 'dataOut', line);
    unhex(entry.sense, 'sense', line);
    unhex(entry.dataIn, 'dataIn', line);
    if (header.nexuses.length > 0 && entry.nexus >= header.nexuses.length) {
      throw new TranscriptParseError(
        `nexus ${entry.nexus} is not in the header (${header.nexuses.length} nexuses)`,
        line,
      );
    }
    entries.push(entry);
  }
  if (!header) throw new TranscriptParseError('empty transcript', 1);
  return { header, entries };
}

/** Where a replay first differed from the transcript. */
export interface ReplayMismatch {
  step: number;
  field: 'status' | 'sense' | 'dataIn' | 'resid' | 'hostStatus';
  /** Expected (recorded) and actual (emulator) values; byte fields as hex, numbers as 0x-hex. */
  expected: string;
  actual: string;
  message: string;
}

/** Result of replayTranscript. */
export type ReplayResult =
  { ok: true; steps: number } | ({ ok: false; steps: number } & ReplayMismatch);

/** Options of replayTranscript. */
export interface ReplayOptions {
  /** Profile to replay against. @default the header's profile */
  profile?: ProfileName;
  /** Response fields compared. @default ['status', 'sense', 'dataIn', 'resid'] */
  fields?: Array<ReplayMismatch['field']>;
}

/** The emulator nexus for transcript nexus `i`: the recorded TransportID, else a made-up SAS address. */
function replayNexus(n: TranscriptNexus | undefined, i: number): Initiator {
  let transportId = undefined;
  if (n?.transportId !== undefined) {
    try {
      transportId = parseTransportId(n.transportId);
    } catch {
      transportId = undefined;
    }
  }
  return {
    transportId: transportId ?? {
      protocol: 'sas',
      sasAddress: 0x5001405000000a00n + BigInt(i + 1),
    },
    relativeTargetPort: n?.relativeTargetPort ?? i + 1,
  };
}

/**
 * Replays a transcript against a fresh emulated LU of the header's profile and reports the first step whose
 * answer differs (durations are never compared). Throws Error when the profile is unknown and none is given.
 */
export function replayTranscript(t: Transcript, options: ReplayOptions = {}): ReplayResult {
  const profile = options.profile ?? t.header.profile;
  if (!isProfileName(profile)) throw new Error(`cannot replay: unknown profile ${profile}`);
  const fields = options.fields ?? ['status', 'sense', 'dataIn', 'resid'];
  const maxIndex = Math.max(0, ...t.entries.map((e) => (e.nexus ?? 0) + 1));
  const count = Math.max(t.header.nexuses.length, maxIndex);
  const nexuses = Array.from({ length: count }, (_, i) => replayNexus(t.header.nexuses[i], i));
  const targetPorts = [...new Set([1, 2, ...nexuses.map((n) => n.relativeTargetPort)])].sort(
    (a, b) => a - b,
  );
  const lu = createEmulator().addLogicalUnit({
    id: t.header.lu,
    profile,
    serial: t.header.serial ?? 'transcript',
    targetPorts,
  });
  let steps = 0;
  for (const entry of t.entries) {
    if (entry.type === 'event') {
      if (entry.event === 'power-cycle') lu.powerCycle();
      else if (entry.event === 'reset') lu.reset();
      else lu.nexusLoss(nexuses[entry.nexus ?? 0] as Initiator);
      steps++;
      continue;
    }
    const request: ScsiRequest = {
      cdb: unhex(entry.cdb, 'cdb', 0),
      ...(entry.dataOut ? { dataOut: unhex(entry.dataOut, 'dataOut', 0) } : {}),
      dataInLength: entry.dataInLength,
      timeoutMs: entry.timeoutMs,
    };
    const response = lu.execute(nexuses[entry.nexus] as Initiator, request);
    const actual: Record<ReplayMismatch['field'], string> = {
      status: `0x${response.status.toString(16).padStart(2, '0')}`,
      sense: hex(response.sense),
      dataIn: hex(response.dataIn),
      resid: String(response.resid),
      hostStatus: `0x${response.hostStatus.toString(16).padStart(2, '0')}`,
    };
    const expected: Record<ReplayMismatch['field'], string> = {
      status: `0x${entry.status.toString(16).padStart(2, '0')}`,
      sense: entry.sense,
      dataIn: entry.dataIn,
      resid: String(entry.resid),
      hostStatus: `0x${entry.hostStatus.toString(16).padStart(2, '0')}`,
    };
    for (const field of fields) {
      if (actual[field] !== expected[field]) {
        return {
          ok: false,
          steps,
          step: entry.step,
          field,
          expected: expected[field],
          actual: actual[field],
          message: `step ${entry.step} (nexus ${entry.nexus}, cdb ${entry.cdb}): ${field} expected ${expected[field] || '(empty)'}, got ${actual[field] || '(empty)'}`,
        };
      }
    }
    steps++;
  }
  return { ok: true, steps };
}

/** The TranscriptNexus describing an emulator initiator. */
export function transcriptNexusOf(initiator: Initiator, path?: string): TranscriptNexus {
  const out: TranscriptNexus = {
    transportId: formatTransportId(initiator.transportId),
    relativeTargetPort: initiator.relativeTargetPort,
  };
  if (path !== undefined) out.path = path;
  return out;
}
