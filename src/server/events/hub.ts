import type { FleetEvent } from '../../gen/prfleet/v1/events.js';
import {
  CursorAheadError,
  matchesFilter,
  WatcherTooSlowError,
  type EventLog,
  type EventLogLimits,
  type SubscribeOptions,
} from './types.js';

/** What the hub reads: a log's storage side. */
export type EventSource = Pick<EventLog, 'readAfter' | 'head'>;

/** Events the tail cache keeps for live subscribers (older ones are read from the source). */
const CACHE_EVENTS = 4_096;
/** Events one read takes. */
const BATCH = 500;

/**
 * Subscriptions over a log: one tail reader per process follows the head (woken by local appends, a Redis
 * message or a poll every pollMs while anyone subscribes) into a small cache, so N live subscribers cost one
 * read per new batch, not N; a subscriber behind the cache reads the source itself. A subscriber never holds
 * up anybody: it pulls at its own pace and is ended when it falls more than maxLag events behind.
 */
export class SubscriptionHub {
  private cache: FleetEvent[] = [];
  /** The cache holds every event with cursor in (cacheFrom, cacheTo]; -1 before the first tail read. */
  private cacheFrom = -1;
  private cacheTo = -1;
  private waiters = new Set<() => void>();
  private subscribers = 0;
  private timer: NodeJS.Timeout | undefined;
  private tailing: Promise<void> | undefined;
  private wakeAgain = false;
  private closed = false;

  constructor(
    private readonly source: EventSource,
    private readonly limits: EventLogLimits,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  /** Makes the tail reader look now (after a local append, or a message from another instance). */
  wake(): void {
    if (this.subscribers === 0 || this.closed) return;
    if (this.tailing !== undefined) {
      this.wakeAgain = true;
      return;
    }
    this.tailing = this.tail()
      .catch((error: unknown) => this.onError(error))
      .finally(() => {
        this.tailing = undefined;
        if (this.wakeAgain) {
          this.wakeAgain = false;
          this.wake();
        }
      });
  }

  private async tail(): Promise<void> {
    if (this.cacheTo < 0) {
      const head = await this.source.head();
      this.cacheFrom = this.cacheTo = head;
    }
    for (;;) {
      const page = await this.source.readAfter(this.cacheTo, undefined, BATCH);
      if (page.scannedThrough <= this.cacheTo) break;
      this.cache.push(...page.events);
      this.cacheTo = page.scannedThrough;
      if (this.cache.length > CACHE_EVENTS) {
        const drop = this.cache.length - CACHE_EVENTS;
        this.cacheFrom = Number(this.cache[drop - 1]!.cursor);
        this.cache = this.cache.slice(drop);
      }
      this.notify();
      if (page.events.length < BATCH) break;
    }
  }

  private notify(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  /** Resolves on the next tail advance, or when `signal` aborts. */
  private nextAdvance(signal: AbortSignal | undefined): Promise<void> {
    // Aborted during the read before: an 'abort' listener added now would never fire, and the subscriber would
    // hang until the next event, holding up a shutdown that waits for it.
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private acquire(): void {
    this.subscribers += 1;
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.wake(), this.limits.pollMs);
      this.timer.unref();
    }
  }

  private release(): void {
    this.subscribers -= 1;
    if (this.subscribers === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
      // The cache stops following the head: the next subscriber starts it afresh.
      this.cache = [];
      this.cacheFrom = this.cacheTo = -1;
    }
  }

  /** Matching events after `after` from the cache, or undefined when the cache does not reach back to it. */
  private fromCache(
    after: number,
    options: SubscribeOptions,
  ): { events: FleetEvent[]; through: number } | undefined {
    if (this.cacheTo < 0 || after < this.cacheFrom) return undefined;
    const events: FleetEvent[] = [];
    for (const e of this.cache) {
      if (Number(e.cursor) > after && matchesFilter(e, options.filter)) events.push(e);
      if (events.length >= BATCH) return { events, through: Number(e.cursor) };
    }
    return { events, through: Math.max(after, this.cacheTo) };
  }

  private async readSource(
    cursor: number,
    options: SubscribeOptions,
  ): Promise<{ events: FleetEvent[]; through: number }> {
    const p = await this.source.readAfter(cursor, options.filter, BATCH);
    return { events: p.events, through: p.scannedThrough };
  }

  /** See {@link EventLog.subscribe}. */
  async *subscribe(options: SubscribeOptions): AsyncGenerator<FleetEvent, void, undefined> {
    const { signal } = options;
    const maxLag = options.maxLag ?? this.limits.maxLag;
    const head = await this.source.head();
    let cursor = options.after ?? head;
    if (cursor > head) throw new CursorAheadError(cursor, head);
    // Lag counts only events recorded after the subscription began: catching up on an old cursor is allowed.
    const startedAt = head;
    let delivered = cursor;
    this.acquire();
    try {
      this.wake();
      while (!signal?.aborted && !this.closed) {
        const cached = this.fromCache(cursor, options);
        const page = cached ?? (await this.readSource(cursor, options));
        for (const event of page.events) {
          if (signal?.aborted) return;
          if (this.cacheTo - Math.max(delivered, startedAt) > maxLag)
            throw new WatcherTooSlowError(delivered, maxLag);
          if (options.predicate === undefined || options.predicate(event)) yield event;
          delivered = Number(event.cursor);
        }
        const advanced = page.through > cursor;
        cursor = Math.max(cursor, page.through);
        // Everything up to here was handed over or filtered out: none of it is left unread.
        delivered = Math.max(delivered, cursor);
        if (!advanced || (cached !== undefined && cursor >= this.cacheTo)) {
          await this.nextAdvance(signal);
        }
      }
    } finally {
      this.release();
    }
  }

  /** Ends every subscription (they return) and stops polling. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.notify();
  }
}
