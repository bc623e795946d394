/** Counting semaphore: bounds how many paths an agent works on at once (style.md §5). */
export interface Semaphore {
  /** Waits for a permit. Permits are handed out in request order. */
  acquire(): Promise<void>;
  /** Returns a permit taken by acquire(). */
  release(): void;
  /** Permits currently taken. */
  readonly inUse: number;
}

/** Creates a semaphore with `permits` permits (at least 1). */
export function createSemaphore(permits: number): Semaphore {
  if (!Number.isInteger(permits) || permits < 1)
    throw new RangeError(`permits ${permits} must be an integer ≥ 1`);
  let inUse = 0;
  const waiters: (() => void)[] = [];
  return {
    get inUse() {
      return inUse;
    },
    acquire() {
      if (inUse < permits) {
        inUse++;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => waiters.push(resolve));
    },
    release() {
      const next = waiters.shift();
      // The permit passes straight to the next waiter, so inUse stays the same.
      if (next) next();
      else inUse--;
    },
  };
}
