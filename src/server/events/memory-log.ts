import { FleetEvent } from '../../gen/prfleet/v1/events.js';
import { SubscriptionHub } from './hub.js';
import {
  CursorAheadError,
  CursorExpiredError,
  EVENT_LOG_DEFAULTS,
  matchesFilter,
  type EventFilter,
  type EventLog,
  type EventLogLimits,
  type EventPage,
  type NewFleetEvent,
} from './types.js';

/**
 * The event log of a server without a durable store (PRFLEET_STORE=memory): this process only, bounded by
 * the same retention, lost on restart (a watcher resuming after a restart gets CursorAheadError and starts
 * from a snapshot). Another instance never sees these events.
 */
export function createMemoryEventLog(limits: Partial<EventLogLimits> = {}): EventLog {
  const settings = { ...EVENT_LOG_DEFAULTS, ...limits };
  let events: FleetEvent[] = [];
  let head = 0;
  let prunedThrough = 0;

  function check(cursor: number): void {
    if (cursor < prunedThrough) throw new CursorExpiredError(cursor, prunedThrough);
    if (cursor > head) throw new CursorAheadError(cursor, head);
  }

  function prune(): number {
    const cutoff = Date.now() - settings.maxAgeMs;
    let drop = Math.max(0, events.length - settings.maxEvents);
    while (drop < events.length && events[drop]!.time!.getTime() < cutoff) drop += 1;
    if (drop === 0) return 0;
    prunedThrough = Number(events[drop - 1]!.cursor);
    events = events.slice(drop);
    return drop;
  }

  const log: EventLog = {
    kind: 'memory',
    append(batch: readonly NewFleetEvent[]) {
      const now = new Date();
      const recorded = batch.map((e) =>
        FleetEvent.fromPartial({ ...e, cursor: BigInt(++head), time: now }),
      );
      events.push(...recorded);
      if (events.length > settings.maxEvents) prune();
      hub.wake();
      return Promise.resolve(recorded);
    },
    readAfter(cursor: number, filter?: EventFilter, limit = 500): Promise<EventPage> {
      try {
        check(cursor);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      const out: FleetEvent[] = [];
      // Cursors are dense in memory: the first event after `cursor` sits at a known index.
      const start = Math.max(0, cursor - prunedThrough);
      for (let i = start; i < events.length; i += 1) {
        const e = events[i]!;
        if (matchesFilter(e, filter)) out.push(e);
        if (out.length >= limit)
          return Promise.resolve({ events: out, scannedThrough: Number(e.cursor) });
      }
      return Promise.resolve({ events: out, scannedThrough: head });
    },
    head: () => Promise.resolve(head),
    oldestResumable: () => Promise.resolve(prunedThrough),
    subscribe: (options) => hub.subscribe(options),
    prune: () => Promise.resolve(prune()),
    wake: () => hub.wake(),
    close: () => hub.close(),
  };
  const hub = new SubscriptionHub(log, settings);
  return log;
}
