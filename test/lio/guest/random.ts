/**
 * Random part of the in-VM suite: seeded random PERSISTENT RESERVE sequences (test/lio/random-sequences.ts) on
 * the LIO LU through SG_IO and on its emulated `lio` twin, compared command by command like the conformance
 * scenarios. The LU and twin are reused while sequences agree (the cleanup prologue makes each start clean) and
 * replaced after a difference. Prints a result line only for a sequence that differs or fails, then one summary.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createSgioTransport } from '../../../agent/transport/sgio.js';
import { formatLine } from '../protocol.js';
import { randomSequences } from '../random-sequences.js';
import { allowedOpcodesFor, closePair, openPair, runOne, type Pair } from './conformance.js';
import { createLioTopology } from './lio-configfs.js';

/** Options of runRandomPart. */
export interface RandomPartOptions {
  readonly seed: number;
  /** Sequences to run. */
  readonly count: number;
  /** Nexuses per LU. @default 3 */
  readonly nexuses?: number;
  /** Whether the LU lio-setup.sh made is still untouched (else it is recreated first). */
  readonly freshPrimary: boolean;
  /** Out dir for transcripts; undefined = console only. */
  readonly outDir?: string;
  readonly print: (line: string) => void;
}

/** Runs the sequences; returns the number that differed or failed. */
export async function runRandomPart(options: RandomPartOptions): Promise<number> {
  const started = performance.now();
  const topology = createLioTopology({ nexuses: options.nexuses ?? 3 });
  if (options.outDir) await mkdir(join(options.outDir, 'transcripts'), { recursive: true });
  const sequences = await randomSequences(options.seed, options.count);
  const transport = createSgioTransport({ allowedOpcodes: allowedOpcodesFor(sequences) });
  let fresh = options.freshPrimary;
  let pair: Pair | undefined;
  const newPair = async (): Promise<Pair> => {
    await closePair(pair);
    pair = undefined;
    const lu = fresh ? await topology.primary() : await topology.recreatePrimary();
    fresh = false;
    return openPair(lu, transport);
  };
  const stats = { ran: 0, commands: 0, differing: 0, luMs: 0, lioMs: 0, emulatorMs: 0 };
  let stopped: string | undefined;
  let previous: string | undefined;
  for (const sequence of sequences) {
    const reused = pair !== undefined;
    const t0 = performance.now();
    pair ??= await newPair();
    stats.luMs += performance.now() - t0;
    let line = await runOne(sequence, pair, false, options);
    // State the prologue cannot undo is the previous sequence's leftover: report it, run again on a fresh LU.
    if (reused && line.reason?.includes('cleanup prologue failed')) {
      options.print(
        formatLine({
          t: 'info',
          name: 'carry-over',
          after: previous,
          before: sequence.id,
          reason: line.reason,
        }),
      );
      pair = await newPair();
      line = await runOne(sequence, pair, false, options);
    }
    previous = sequence.id;
    stats.ran++;
    stats.commands += line.commands ?? 0;
    stats.lioMs += line.phases?.lio ?? 0;
    stats.emulatorMs += line.phases?.emulator ?? 0;
    if (line.diff === undefined && line.lio === 'pass') continue;
    stats.differing++;
    options.print(formatLine(line));
    await closePair(pair);
    pair = undefined;
    // A sequence has no expectations of its own: failing on LIO means the transport or the LU broke (e.g. a
    // PREEMPT AND ABORT the twin refused but LIO ran, and hung). Later sequences would only time out.
    if (line.lio === 'fail') {
      stopped = `${sequence.id}: ${line.reason ?? 'failed'}`;
      break;
    }
  }
  await closePair(pair);
  options.print(
    formatLine({
      t: 'info',
      name: 'random',
      seed: options.seed,
      sequences: options.count,
      ...stats,
      luMs: Math.round(stats.luMs),
      ...(stopped !== undefined ? { stopped } : {}),
      ms: Math.round(performance.now() - started),
    }),
  );
  return stats.differing;
}
