/**
 * `prfleet-agent --record DIR`: a transport wrapper that writes the PR and identity commands the agent runs to
 * transcripts (the src/emulator transcript format, one file per opened path), so a field problem can be replayed
 * against a profile (`prfleet replay FILE --profile P`). Optionally masks reservation keys.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createTranscriptRecorder } from '../src/emulator/transcript.js';
import type { ScsiRequest, ScsiResponse } from '../src/scsi/exchange.js';
import { formatTransportId, type TransportId } from '../src/scsi/index.js';
import type { DeviceSource } from './agent.js';
import type { ScsiDevice, ScsiTransport } from './transport/transport.js';

/** What is recorded: TEST UNIT READY, REQUEST SENSE, INQUIRY, PRIN, PROUT, REPORT LUNS (never medium data). */
const RECORDED_OPCODES = new Set([0x00, 0x03, 0x12, 0x5e, 0x5f, 0xa0]);
const PRIN = 0x5e;
const PROUT = 0x5f;

/** Options of recordingTransport. */
export interface RecordOptions {
  /** Directory the transcripts go to (created if missing). */
  readonly dir: string;
  /** Replace every reservation key by a stand-in (the same key always gets the same one; 0 stays 0). */
  readonly maskKeys?: boolean;
  /** Wall clock for file names. @default Date.now */
  readonly now?: () => number;
  /** Told when a transcript cannot be written (recording stops for that file; commands go on). */
  readonly onError?: (error: unknown, file: string) => void;
}

/**
 * Key masking that replay survives: each key maps to an HMAC-derived stand-in, consistently in CDB data-out and
 * PRIN data-in, so the emulator registers and reports the same stand-ins. A key cut short by the allocation length
 * gets the prefix of a known key's stand-in when one matches, else zeros.
 */
class KeyMask {
  private readonly secret = randomBytes(32);
  private readonly known = new Map<string, Uint8Array>();

  private of(key: Uint8Array): Uint8Array {
    if (key.every((b) => b === 0)) return key;
    const hex = Buffer.from(key).toString('hex');
    let masked = this.known.get(hex);
    if (!masked) {
      masked = new Uint8Array(
        createHmac('sha256', this.secret).update(key).digest().subarray(0, 8),
      );
      if (masked.every((b) => b === 0)) masked[7] = 1; // never turn a key into 0 (it means "no key")
      this.known.set(hex, masked);
    }
    return masked;
  }

  /** Masks the key at `offset` in place (as much of it as `bytes` holds). */
  maskAt(bytes: Uint8Array, offset: number): void {
    const part = bytes.subarray(offset, Math.min(offset + 8, bytes.length));
    if (part.length === 0) return;
    if (part.length === 8) {
      part.set(this.of(part));
      return;
    }
    const prefix = Buffer.from(part).toString('hex');
    const full = [...this.known.keys()].find((k) => k.startsWith(prefix));
    if (full) part.set((this.known.get(full) as Uint8Array).subarray(0, part.length));
    else part.fill(0);
  }

  /** A copy of `request` with RESERVATION KEY and SERVICE ACTION RESERVATION KEY of a PROUT masked. */
  request(request: ScsiRequest): ScsiRequest {
    if (request.cdb[0] !== PROUT || !request.dataOut) return request;
    const dataOut = new Uint8Array(request.dataOut);
    this.maskAt(dataOut, 0);
    this.maskAt(dataOut, 8);
    return { ...request, dataOut };
  }

  /** A copy of `response` with the keys of READ KEYS / READ RESERVATION / READ FULL STATUS data masked. */
  response(request: ScsiRequest, response: ScsiResponse): ScsiResponse {
    if (request.cdb[0] !== PRIN || response.status !== 0) return response;
    const data = new Uint8Array(response.dataIn);
    const sa = (request.cdb[1] ?? 0) & 0x1f;
    if (sa === 0) for (let at = 8; at < data.length; at += 8) this.maskAt(data, at);
    else if (sa === 1 && data.length > 8) this.maskAt(data, 8);
    else if (sa === 3) {
      const view = new DataView(data.buffer);
      for (let at = 8; at < data.length;) {
        this.maskAt(data, at);
        if (at + 24 > data.length) break;
        at += 24 + view.getUint32(at + 20);
      }
    }
    return { ...response, dataIn: data };
  }
}

function nexusOf(
  path: string,
  port: TransportId | undefined,
): { path: string; transportId?: string } {
  return port ? { path, transportId: formatTransportId(port) } : { path };
}

/** A file name for `path` (e.g. /dev/sg0 → dev_sg0-20261207T095800123Z.jsonl). */
function fileNameOf(path: string, now: number): string {
  const base = path.replace(/^\/+/, '').replace(/[^A-Za-z0-9._-]+/g, '_') || 'device';
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace('.', '');
  return `${base}-${stamp}.jsonl`;
}

/**
 * Wraps a device source so each opened path streams what it runs to its own transcript in `options.dir`; the
 * header names the path and, when discovery listed it, its initiator port (so READ FULL STATUS replays).
 */
export function recordingSource(source: DeviceSource, options: RecordOptions): DeviceSource {
  const initiatorPorts = new Map<string, TransportId>();
  const transport = recordingTransport(source.transport, options, (path) =>
    initiatorPorts.get(path),
  );
  return {
    transport,
    async listTargets() {
      const targets = await source.listTargets();
      for (const t of targets) if (t.initiatorPort) initiatorPorts.set(t.path, t.initiatorPort);
      return targets;
    },
    ...(source.close ? { close: () => source.close?.() } : {}),
  };
}

/** Wraps `inner` so each opened device streams what it runs to its own transcript in `options.dir`. */
function recordingTransport(
  inner: ScsiTransport,
  options: RecordOptions,
  initiatorPortOf: (path: string) => TransportId | undefined,
): ScsiTransport {
  mkdirSync(options.dir, { recursive: true });
  const mask = options.maskKeys ? new KeyMask() : undefined;
  const now = options.now ?? Date.now;
  return {
    kind: inner.kind,
    async open(path, openOptions) {
      const device = await inner.open(path, openOptions);
      const file = join(options.dir, fileNameOf(path, now()));
      let failed = false;
      // Appended synchronously, line by line: entries keep the device's order and a crash loses nothing.
      const write = (line: string): void => {
        if (failed) return;
        try {
          appendFileSync(file, `${line}\n`);
        } catch (e) {
          failed = true;
          options.onError?.(e, file);
        }
      };
      const recorder = createTranscriptRecorder(
        {
          profile: 'unknown',
          lu: path,
          nexuses: [nexusOf(path, initiatorPortOf(path))],
          note: `prfleet-agent --record${mask ? ' (reservation keys masked)' : ''}`,
        },
        { onLine: write, retain: false },
      );
      const recorded: ScsiDevice = {
        path: device.path,
        close: () => device.close(),
        async execute(request, execOptions) {
          const response = await device.execute(request, execOptions);
          if (RECORDED_OPCODES.has(request.cdb[0] ?? -1)) {
            recorder.command(
              0,
              mask ? mask.request(request) : request,
              mask ? mask.response(request, response) : response,
            );
          }
          return response;
        },
      };
      return recorded;
    },
  };
}
