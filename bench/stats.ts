/** Latency statistics and per-process CPU readings for the benchmark. */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

/** Summary of a latency sample, in milliseconds. */
export interface LatencySummary {
  /** Number of samples. */
  readonly n: number;
  /** Median. */
  readonly p50: number;
  /** 99th percentile (nearest rank). */
  readonly p99: number;
  /** Mean. */
  readonly mean: number;
  /** Smallest. */
  readonly min: number;
  /** Largest. */
  readonly max: number;
}

/** Nearest-rank percentile of an ascending-sorted array (`q` in 0..1). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? NaN;
}

/** Summarizes latencies given in milliseconds. */
export function summarize(samplesMs: readonly number[]): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    n: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    mean: sorted.length > 0 ? sum / sorted.length : NaN,
    min: sorted[0] ?? NaN,
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

/** Linux USER_HZ: /proc/<pid>/stat counts CPU time in these ticks (100 on every mainstream architecture). */
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time (user + system) a process has used so far, in milliseconds; NaN when /proc is not readable. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'; utime and stime are
    // fields 14 and 15 of proc(5), i.e. the 12th and 13th after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Formats milliseconds for the report: µs below 1 ms. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`;
}

/** `--thrash=<MiB>` of an in-process bench's arguments (0 when absent). */
export function thrashMiBOf(argv: readonly string[]): number {
  return Number(/^--thrash=(\d+)$/.exec(argv.join(' '))?.[1] ?? 0);
}

/**
 * CPU per call of `call` in this process, `rounds` rounds of `calls`, after the caller's warm-up: with
 * `thrashMiB` > 0 that much memory is written between two calls (its own CPU not counted), so each call starts
 * with caches as a busy server leaves them. Returns the per-round figures (µs) and the line that prints them.
 */
export async function measureInProcess(
  what: string,
  call: () => Promise<unknown>,
  { calls, rounds, thrashMiB }: { calls: number; rounds: number; thrashMiB: number },
): Promise<{ perCallUs: number[]; line: string }> {
  const junk = new Uint8Array(thrashMiB * 1024 * 1024);
  let thrashCpuUs = 0;
  const thrash = (i: number) => {
    if (junk.length === 0) return;
    const before = process.cpuUsage();
    for (let at = 0; at < junk.length; at += 64) junk[at] = i;
    const spent = process.cpuUsage(before);
    thrashCpuUs += spent.user + spent.system;
  };
  const perCallUs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    thrashCpuUs = 0;
    const before = process.cpuUsage();
    for (let i = 0; i < calls; i++) {
      thrash(i);
      await call();
    }
    const spent = process.cpuUsage(before);
    perCallUs.push((spent.user + spent.system - thrashCpuUs) / calls);
  }
  const sorted = [...perCallUs].sort((a, b) => a - b);
  const thrashed = thrashMiB > 0 ? `, ${thrashMiB} MiB written between calls` : '';
  const line =
    `${what} (${calls} calls × ${rounds} rounds${thrashed}, load ${loadavg()[0]?.toFixed(1)}): CPU per call ` +
    `${perCallUs.map((us) => us.toFixed(1)).join(' / ')} µs, median ${sorted[Math.floor(rounds / 2)]?.toFixed(1)} µs`;
  return { perCallUs, line };
}
