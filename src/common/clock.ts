import { delay } from './delay.js';

/**
 * Time as the time-driven parts see it (liveness, stream rotation, deadlines, retries): given to them explicitly
 * (constructor or factory options, {@link systemClock} by default) so a test can drive them with a manual clock
 * instead of waiting for real timers.
 */
export interface Clock {
  /** Epoch milliseconds (Date.now() for the system clock). */
  now(): number;
  /** Runs `fn` once after `ms`; the timer does not hold the process. Returns a function that cancels it. */
  timeout(fn: () => void, ms: number): () => void;
  /** Waits `ms`, or less when `signal` aborts; resolves then, never rejects (the contract of {@link delay}). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock: Date.now, unref'd setTimeout, {@link delay}. */
export const systemClock: Clock = {
  now: Date.now,
  timeout(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
  sleep: delay,
};
