/**
 * The few, compact lines the VM prints on its serial console for the host-side test (the console costs tens of
 * ms per line under TCG): `PRFLEET-LIO <json>`, one per scenario or check. Full transcripts go to the out dir.
 */

/** Prefix of every result line. */
export const LINE_PREFIX = 'PRFLEET-LIO ';

/** One conformance scenario on LIO, with its differential check against the emulator's lio profile. */
export interface ScenarioLine {
  t: 'scenario';
  id: string;
  /** The scenario's own expectations on LIO: pass, fail, or skip (with `reason`). */
  lio: 'pass' | 'fail' | 'skip';
  /** Differential check: undefined = every command answered identically; else the first difference. */
  diff?: string;
  /** The emulator run's own expectations (for the record; a failure there is the emulator's or the scenario's). */
  emulator?: 'pass' | 'fail' | 'skip';
  /** LIO failure message or skip reason. */
  reason?: string;
  /** A known LIO bug this scenario met (testbed README), e.g. 'lio-bug-preempt-abort-hang'. */
  known?: string;
  /** Commands sent to LIO (prologue included). */
  commands?: number;
  /** Where the time went, ms: LU (re)creation with its identity reads, the LIO run, the emulator run + comparison. */
  phases?: { lu: number; lio: number; emulator: number };
  ms: number;
}

/** One check of the gRPC part (server + sgio agent + client in the VM). */
export interface CheckLine {
  t: 'check';
  part: string;
  name: string;
  ok: boolean;
  detail?: string;
  ms?: number;
}

/** Start and end markers, and free-form facts (timings, versions). */
export interface InfoLine {
  t: 'info';
  name: string;
  [field: string]: unknown;
}

/** Any result line. */
export type ResultLine = ScenarioLine | CheckLine | InfoLine;

/** Formats one line (bigint-safe: keys print as hex strings). */
export function formatLine(line: ResultLine): string {
  return (
    LINE_PREFIX +
    JSON.stringify(line, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))
  );
}

/** Extracts result lines from console output (other lines are ignored; run-vm.sh may prefix timestamps). */
export function parseLines(output: string): ResultLine[] {
  const lines: ResultLine[] = [];
  for (const raw of output.split('\n')) {
    const at = raw.indexOf(LINE_PREFIX);
    if (at < 0) continue;
    try {
      lines.push(JSON.parse(raw.slice(at + LINE_PREFIX.length).trim()) as ResultLine);
    } catch {
      // A line garbled by interleaved kernel messages: the test then misses that result and fails on it.
    }
  }
  return lines;
}
