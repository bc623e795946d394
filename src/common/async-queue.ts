/**
 * A bounded FIFO that one consumer reads with `for await`. `push` refuses (returns false) when full, so the
 * producer can answer RESOURCE_EXHAUSTED instead of buffering without limit; `pushUrgent` ignores the capacity
 * for the few control messages that must never be refused (Cancel, Reconnect). `close()` lets the consumer
 * drain what is queued and then end; `close(error)` makes it throw `error` after draining.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: ((value: void) => void) | undefined;
  private closed = false;
  private closeError: unknown;
  /** Producers waiting for the queue to shrink (whenSizeAtMost); allocated when one waits. */
  private roomWaiters: { readonly max: number; readonly resolve: () => void }[] | undefined;

  constructor(
    /** Items `push` accepts before refusing. */
    readonly capacity: number,
  ) {}

  /** Items waiting to be read. */
  get size(): number {
    return this.items.length;
  }

  /** True after close(). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Appends `item`; false (nothing queued) when the queue is full or closed. */
  push(item: T): boolean {
    if (this.closed || this.items.length >= this.capacity) return false;
    this.items.push(item);
    this.wake();
    return true;
  }

  /** Appends `item` even when full; false only when closed. */
  pushUrgent(item: T): boolean {
    if (this.closed) return false;
    this.items.push(item);
    this.wake();
    return true;
  }

  /**
   * Resolves once at most `max` items wait to be read (at once when that is so already), or the queue is closed:
   * a producer that awaits it before pushing more is paced by its reader (and so, for a gRPC stream, by HTTP/2).
   */
  whenSizeAtMost(max: number): Promise<void> {
    if (this.items.length <= max || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => (this.roomWaiters ??= []).push({ max, resolve }));
  }

  private releaseRoom(): void {
    const waiting = this.roomWaiters;
    if (waiting === undefined) return;
    const size = this.items.length;
    this.roomWaiters = undefined;
    for (const w of waiting) {
      if (this.closed || size <= w.max) w.resolve();
      else (this.roomWaiters ??= []).push(w);
    }
  }

  /** Ends the queue after the queued items; with `error`, the reader throws it after draining. */
  close(error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = error;
    this.wake();
    this.releaseRoom();
    this.onClose?.();
  }

  /** Called once by close(): lets a reader that waits on something else (a full socket) hear of it. */
  onClose: (() => void) | undefined;

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  /**
   * Removes and returns the next item without waiting when `accept(item)` says so (else leaves it and returns
   * undefined): lets the reader coalesce items already queued behind the one it just read.
   */
  takeIf(accept: (item: T) => boolean): T | undefined {
    const head = this.items[0];
    if (head === undefined || !accept(head)) return undefined;
    this.items.shift();
    this.releaseRoom();
    return head;
  }

  /**
   * Removes and returns the next item without waiting, or undefined when none is queued. With
   * {@link whenReadable} it is the iterator's loop without an async generator: a reader that waits on many
   * queues at once (one per connected agent) keeps one pending promise each instead of a generator's state.
   */
  take(): T | undefined {
    const item = this.items.shift();
    if (item !== undefined) this.releaseRoom();
    return item;
  }

  /**
   * Resolves once an item is queued or the queue is closed (at once when so already); after close() and
   * draining, take() returns undefined and {@link closeReason} says how it ended. One reader at a time.
   */
  whenReadable(): Promise<void> {
    if (this.items.length > 0 || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.waiter = resolve;
    });
  }

  /**
   * {@link whenReadable} without a promise: calls `wake` once an item is queued or the queue is closed, and
   * returns true; returns false (nothing kept) when that is so already. `wake` runs inside push() or close():
   * it should only schedule the read. For a reader driven by callbacks, which keeps no promise while it waits
   * (an idle agent's writer). One reader at a time, as with whenReadable.
   */
  callWhenReadable(wake: () => void): boolean {
    if (this.items.length > 0 || this.closed) return false;
    this.waiter = wake;
    return true;
  }

  /** The error given to close(error), if any (the iterator throws it after draining). */
  get closeReason(): unknown {
    return this.closeError;
  }

  /** Yields items in order until closed and drained. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      const item = this.take();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.closed) {
        if (this.closeError !== undefined) throw this.closeError;
        return;
      }
      await this.whenReadable();
    }
  }
}
