import type { Logger } from 'pino';
import { systemClock, type Clock } from '../../common/clock.js';
import { recordMissingHistory } from '../durable.js';
import type { Store } from '../store/index.js';

/** Waits before each attempt to append the missing entries; the last one repeats until it succeeds. */
const HEAL_DELAYS_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

/** Appends, while the server runs, the history entries a completion could not write. */
export interface HistoryHealer {
  /** A PROUT's journal entry was completed without its history entry: append it once the store takes it. */
  readonly gap: () => void;
  /** Stops retrying (shutdown; the next start appends what is still missing). */
  readonly stop: () => void;
}

/**
 * The journal says which PROUTs lack a history entry (recordMissingHistory, the same pass a start makes), so a
 * gap left by a database that was away for longer than the completion's own retries is closed within seconds of
 * its return instead of at the next restart. Appends skip an entry another server appended meanwhile.
 */
export function createHistoryHealer(
  store: Store,
  log: Logger,
  clock: Clock = systemClock,
): HistoryHealer {
  const stopped = new AbortController();
  let running = false;
  let again = false;
  const run = async () => {
    for (let attempt = 0; !stopped.signal.aborted; attempt++) {
      await clock.sleep(
        HEAL_DELAYS_MS[Math.min(attempt, HEAL_DELAYS_MS.length - 1)]!,
        stopped.signal,
      );
      if (stopped.signal.aborted) return;
      again = false;
      try {
        await recordMissingHistory(store, log);
        if (!again) return;
        attempt = -1;
      } catch (err) {
        log.warn({ err, attempt }, 'history: appending the missing entries failed; retrying');
      }
    }
  };
  return {
    gap: () => {
      again = true;
      if (running || stopped.signal.aborted) return;
      running = true;
      void run().finally(() => {
        running = false;
      });
    },
    stop: () => stopped.abort(),
  };
}
