/**
 * An unbounded-by-type, closable async queue used as the agent's outgoing stream. nice-grpc half-closes a call
 * when the request iterable completes (grpc-ts-notes §2.8), so the queue stays open for the session's lifetime.
 */
export interface AsyncQueue<T> extends AsyncIterable<T> {
  /** Adds an item; false when the queue is closed (the item is dropped). */
  push(item: T): boolean;
  /** Ends iteration after the items already queued. */
  close(): void;
  /** True after close(). */
  readonly closed: boolean;
  /** Items waiting to be read. */
  readonly size: number;
}

/** Creates an empty AsyncQueue. Only one consumer may iterate it. */
export function createAsyncQueue<T>(): AsyncQueue<T> {
  const items: T[] = [];
  let closed = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    get closed() {
      return closed;
    },
    get size() {
      return items.length;
    },
    push(item) {
      if (closed) return false;
      items.push(item);
      notify();
      return true;
    },
    close() {
      closed = true;
      notify();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (items.length > 0) {
          yield items.shift() as T;
          continue;
        }
        if (closed) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}
