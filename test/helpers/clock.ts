import type { Clock } from '../../src/common/clock.js';

/**
 * A clock that moves only when the test says so: `now()` is fixed, and timers and sleeps fire (in time order)
 * when `advance` passes them. Liveness, rotation, deadline and retry tests drive time with it instead of waiting.
 */
export class ManualClock implements Clock {
  private nowMs: number;
  private readonly timers = new Set<{ at: number; seq: number; fn: () => void }>();
  private seq = 0;

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  timeout(fn: () => void, ms: number): () => void {
    const timer = { at: this.nowMs + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return () => this.timers.delete(timer);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const cancel = this.timeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Timers and sleeps not yet fired. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`, firing each timer due on the way at its own time, and lets the promise
   * callbacks they start run before the next one (a sleep's continuation may set the next timer).
   */
  async advance(ms: number): Promise<void> {
    const until = this.nowMs + ms;
    for (;;) {
      await settle();
      const next = this.nextDue(until);
      if (next === undefined) break;
      this.timers.delete(next);
      this.nowMs = Math.max(this.nowMs, next.at);
      next.fn();
    }
    this.nowMs = until;
    await settle();
  }

  private nextDue(until: number): { at: number; seq: number; fn: () => void } | undefined {
    let next: { at: number; seq: number; fn: () => void } | undefined;
    for (const t of this.timers)
      if (
        t.at <= until &&
        (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))
      )
        next = t;
    return next;
  }
}

/** Lets pending promise callbacks (and those they queue) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await new Promise((resolve) => setImmediate(resolve));
}
