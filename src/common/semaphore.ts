import { onAbort } from './abort-listeners.js';

/** One queued acquire: granted, or dropped when its signal aborted. */
interface Waiter {
  /** Hands the slot over. */
  grant(): void;
  /** True once its signal aborted (skipped by release). */
  cancelled: boolean;
}

/**
 * A counting semaphore: at most `limit` holders at once, waiters served in arrival order. Acquire, release and an
 * aborted wait are O(1), so tens of thousands of waiters (an audit queues every read at once) stay cheap.
 */
export class Semaphore {
  private active = 0;
  /** Waiters from `head` on; slots before it are spent (compacted now and then). */
  private queue: (Waiter | undefined)[] = [];
  private head = 0;

  constructor(
    /** Holders allowed at once (at least 1). */
    readonly limit: number,
  ) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`invalid semaphore limit: ${limit}`);
  }

  /** Takes a free slot now (true), or none (false: {@link acquire} waits for one). */
  tryAcquire(): boolean {
    if (this.active >= this.limit) return false;
    this.active += 1;
    return true;
  }

  /** Waits for a slot; rejects with the signal's reason if `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.active < this.limit) {
      this.active += 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      let dispose = (): void => {};
      const waiter: Waiter = {
        cancelled: false,
        grant: () => {
          dispose();
          resolve();
        },
      };
      if (signal !== undefined) {
        dispose = onAbort(signal, () => {
          waiter.cancelled = true;
          reject(signal.reason);
        });
      }
      this.queue.push(waiter);
    });
  }

  /** Frees a slot (hands it straight to the next waiter still waiting). */
  release(): void {
    while (this.head < this.queue.length) {
      const next = this.queue[this.head];
      this.queue[this.head] = undefined;
      this.head += 1;
      if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      if (next !== undefined && !next.cancelled) {
        next.grant();
        return;
      }
    }
    this.active -= 1;
  }
}
