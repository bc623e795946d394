/**
 * Differential check of a real LIO run against the emulator's `lio` profile: the same scenario, the same
 * commands, byte for byte the same answers (status, sense; data-in and resid when the status is GOOD). Pure: used in the VM and unit-tested
 * on the host.
 */
import type { Transcript, TranscriptCommand } from '../../src/emulator/index.js';

/** The first difference between two transcripts of the same scenario. */
export interface TranscriptMismatch {
  /** Index of the command in the transcript (prologue commands included). */
  readonly step: number;
  /** Nexus the command went through. */
  readonly nexus: number;
  /** CDB of the command, hex. */
  readonly cdb: string;
  /** 'request' when the two runs did not even send the same command; otherwise the response field. */
  readonly field: 'request' | 'length' | 'status' | 'sense' | 'dataIn' | 'resid';
  /** LIO's value (hex for bytes). */
  readonly lio: string;
  /** The emulator's value. */
  readonly emulator: string;
}

const FIELDS = ['status', 'sense', 'dataIn', 'resid'] as const;

function commandsOf(t: Transcript): TranscriptCommand[] {
  return t.entries.filter((e): e is TranscriptCommand => e.type === 'command');
}

/**
 * Compares two transcripts command by command; undefined when every command got the same answer. `limit` compares
 * only the first `limit` commands (used when LIO stopped answering: the known PREEMPT AND ABORT hang).
 */
export function compareTranscripts(
  lio: Transcript,
  emulator: Transcript,
  limit?: number,
): TranscriptMismatch | undefined {
  const a = commandsOf(lio).slice(0, limit);
  const b = commandsOf(emulator).slice(0, limit);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined || y === undefined) {
      const present = (x ?? y) as TranscriptCommand;
      return {
        step: i,
        nexus: present.nexus,
        cdb: present.cdb,
        field: 'length',
        lio: x ? `${a.length} commands` : `ended after ${a.length} commands`,
        emulator: y ? `${b.length} commands` : `ended after ${b.length} commands`,
      };
    }
    if (
      x.nexus !== y.nexus ||
      x.cdb !== y.cdb ||
      x.dataOut !== y.dataOut ||
      x.dataInLength !== y.dataInLength
    ) {
      return {
        step: i,
        nexus: x.nexus,
        cdb: x.cdb,
        field: 'request',
        lio: `nexus ${x.nexus} cdb ${x.cdb} data-out ${x.dataOut || '-'} alloc ${x.dataInLength}`,
        emulator: `nexus ${y.nexus} cdb ${y.cdb} data-out ${y.dataOut || '-'} alloc ${y.dataInLength}`,
      };
    }
    for (const field of FIELDS) {
      // SAM defines data-in only for GOOD: on CHECK CONDITION or RESERVATION CONFLICT tcm_loop reports resid 0
      // and the buffer is whatever the initiator put there, so only status and sense are compared then.
      if ((field === 'dataIn' || field === 'resid') && (x.status !== 0 || y.status !== 0)) continue;
      if (x[field] !== y[field]) {
        const show = (v: string | number): string =>
          typeof v === 'number' ? `0x${v.toString(16)}` : v || '(none)';
        return {
          step: i,
          nexus: x.nexus,
          cdb: x.cdb,
          field,
          lio: show(x[field]),
          emulator: show(y[field]),
        };
      }
    }
  }
  return undefined;
}

/** One line for a mismatch: scenario, step, command and both values. */
export function formatMismatch(scenario: string, m: TranscriptMismatch): string {
  return `${scenario}: command ${m.step} (nexus ${m.nexus}, cdb ${m.cdb}) ${m.field} differs: LIO ${m.lio} vs emulator ${m.emulator}`;
}
