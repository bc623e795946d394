import { EventKind, type FleetEvent } from '../../gen/prfleet/v1/events.js';

/**
 * An event to append: everything but the cursor and the time, which the log assigns. `detail` and the
 * context fields (site, loader, LU, agent, path, actor, summary) are the producer's.
 */
export type NewFleetEvent = Omit<Partial<FleetEvent>, 'cursor' | 'time'> & {
  readonly kind: EventKind;
};

/** Which events a reader wants; empty or absent fields match everything, set fields must all match. */
export interface EventFilter {
  /** Only these kinds. */
  readonly kinds?: readonly EventKind[] | undefined;
  /** Only events naming one of these LUs. */
  readonly luIds?: readonly string[] | undefined;
  /** Only events naming one of these agents. */
  readonly agentIds?: readonly string[] | undefined;
}

/** One read of the log. */
export interface EventPage {
  /** Matching events after the cursor, oldest first. */
  readonly events: FleetEvent[];
  /**
   * Every event up to this cursor was considered (matching or not): the next read continues after it. Equal to
   * the last event's cursor when the page is full; otherwise the log's head as it stood before the read.
   */
  readonly scannedThrough: number;
}

/** What {@link EventLog.subscribe} takes. */
export interface SubscribeOptions {
  /** Which events. */
  readonly filter?: EventFilter | undefined;
  /** A finer test applied after `filter` (site and loader resolved against the inventory). */
  readonly predicate?: ((event: FleetEvent) => boolean) | undefined;
  /** Start after this cursor (0: the oldest retained); undefined: from the head (only new events). */
  readonly after?: number | undefined;
  /** Ends the iteration (the iterator returns quietly). */
  readonly signal?: AbortSignal | undefined;
  /**
   * Events recorded since the subscription began that it may leave unread before it is ended with
   * {@link WatcherTooSlowError}. @default the log's maxLag (PRFLEET_EVENTS_MAX_LAG, 10,000)
   */
  readonly maxLag?: number | undefined;
}

/**
 * The fleet's event log: append-only, ordered by a cursor (the store's sequence), bounded by retention.
 * Durable with a store (PostgreSQL/PGlite: every instance sharing the database reads every event), in memory
 * without one. Consumers (Watch, webhooks, an SSE view) keep their own cursor and read or subscribe after it.
 */
export interface EventLog {
  /** 'store' (durable, shared by instances) or 'memory' (this process, bounded, lost on restart). */
  readonly kind: 'store' | 'memory';
  /** Appends events in order; resolves with them as recorded (cursor and time set). */
  append(events: readonly NewFleetEvent[]): Promise<FleetEvent[]>;
  /**
   * Up to `limit` matching events after `cursor`. Throws {@link CursorExpiredError} when events after `cursor`
   * were already removed by retention, {@link CursorAheadError} for a cursor beyond the head.
   */
  readAfter(cursor: number, filter?: EventFilter, limit?: number): Promise<EventPage>;
  /** The newest cursor (0 when the log is empty and nothing was ever recorded). */
  head(): Promise<number>;
  /** The oldest cursor a reader may resume after (events after it are all retained). */
  oldestResumable(): Promise<number>;
  /**
   * Every matching event after `after`, then new ones as they are recorded, until `signal` aborts. Throws
   * CursorExpiredError / CursorAheadError like readAfter, and {@link WatcherTooSlowError} when the consumer
   * falls more than maxLag events behind: it may subscribe again after the last cursor it got.
   */
  subscribe(options: SubscribeOptions): AsyncIterable<FleetEvent>;
  /** Removes events beyond retention; returns how many. Called periodically by the server. */
  prune(): Promise<number>;
  /** Wakes subscribers to read (another instance appended: a Redis message). Cheap; may be called often. */
  wake(): void;
  /** Stops polling; open subscriptions end. */
  close(): void;
}

/** Retention and subscription bounds. */
export interface EventLogLimits {
  /** Keep at most this many events. @default 100,000 (PRFLEET_EVENTS_RETAIN) */
  readonly maxEvents: number;
  /** Keep events at most this long. @default 7 days (PRFLEET_EVENTS_RETAIN_MS) */
  readonly maxAgeMs: number;
  /** Default {@link SubscribeOptions.maxLag}. @default 10,000 (PRFLEET_EVENTS_MAX_LAG) */
  readonly maxLag: number;
  /** How often subscribers look for events other instances appended. @default 250 ms */
  readonly pollMs: number;
}

/** Default limits. */
export const EVENT_LOG_DEFAULTS: EventLogLimits = {
  maxEvents: 100_000,
  maxAgeMs: 7 * 24 * 3600_000,
  maxLag: 10_000,
  pollMs: 250,
};

/** Events after `cursor` were removed by retention: start again from a snapshot. */
export class CursorExpiredError extends Error {
  constructor(
    readonly cursor: number,
    readonly oldestResumable: number,
  ) {
    super(
      `cursor ${cursor} is older than the event log's retention (the oldest cursor to resume after is ${oldestResumable}): watch again with a snapshot`,
    );
    this.name = 'CursorExpiredError';
  }
}

/** The cursor is beyond the newest event (another database, or a memory log that restarted). */
export class CursorAheadError extends Error {
  constructor(
    /** As the caller sent it: a bigint when no number holds it exactly. */
    readonly cursor: number | bigint,
    readonly head: number,
  ) {
    super(
      `cursor ${cursor} is ahead of the event log (newest ${head}): it comes from another log or one that was reset; watch again with a snapshot`,
    );
    this.name = 'CursorAheadError';
  }
}

/** The subscriber read too slowly and fell more than `maxLag` events behind. */
export class WatcherTooSlowError extends Error {
  constructor(
    /** The last cursor the subscriber was given: resume after it. */
    readonly cursor: number,
    readonly maxLag: number,
  ) {
    super(
      `watcher fell more than ${maxLag} events behind and was ended; resume after cursor ${cursor}`,
    );
    this.name = 'WatcherTooSlowError';
  }
}

/** True when `event` passes `filter`. */
export function matchesFilter(event: FleetEvent, filter: EventFilter | undefined): boolean {
  if (filter === undefined) return true;
  if (filter.kinds?.length && !filter.kinds.includes(event.kind)) return false;
  if (filter.luIds?.length && !filter.luIds.includes(event.luId)) return false;
  if (filter.agentIds?.length && !filter.agentIds.includes(event.agentId)) return false;
  return true;
}

/** The kinds about an agent and its paths (filtered by the agent's site; they name no LU's loader). */
export const AGENT_KINDS: ReadonlySet<EventKind> = new Set([
  EventKind.EVENT_KIND_AGENT_CONNECTED,
  EventKind.EVENT_KIND_AGENT_DISCONNECTED,
  EventKind.EVENT_KIND_PATH_APPEARED,
  EventKind.EVENT_KIND_PATH_LOST,
  EventKind.EVENT_KIND_PATHS_CHURNED,
]);

/**
 * A caller's cursor (a uint64 on the wire) as a cursor of `log`. One above 2^53 is ahead of any log (cursors count
 * events; the PostgreSQL log's are bigints): refused as {@link CursorAheadError} quoting it exactly, rather than
 * rounded to a number that a PostgreSQL query then refused as out of range (AddWebhook answered INTERNAL).
 */
export async function cursorOf(log: EventLog, cursor: bigint): Promise<number> {
  if (cursor <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(cursor);
  throw new CursorAheadError(cursor, await log.head());
}
