import type { Logger } from 'pino';
import {
  eventKindFromJSON,
  eventKindToJSON,
  type FleetEvent,
} from '../../gen/prfleet/v1/events.js';
import { eventToJson } from '../../common/event-json.js';
import { enrich, type FleetContext } from '../events/context.js';
import {
  AGENT_KINDS,
  CursorAheadError,
  CursorExpiredError,
  type EventFilter,
  type EventLog,
} from '../events/types.js';
import { signWebhook, WEBHOOK_HEADERS } from './sign.js';
import type { WebhookRecord, WebhookStore } from './store.js';
import { delay } from '../../common/delay.js';

/** Delivery settings (PRFLEET_WEBHOOKS_*, docs/events.md). */
export interface WebhookSettings {
  /** Accept http:// receivers (tests). @default false */
  readonly allowHttp: boolean;
  /** One attempt's time limit, ms. @default 10000 */
  readonly timeoutMs: number;
  /** Attempts per event before it is dead-lettered. @default 10 */
  readonly maxAttempts: number;
  /** An event still failing this long after its first attempt is dead-lettered, ms. @default 24 h */
  readonly maxAgeMs: number;
  /** First retry delay, doubled per attempt up to backoffMaxMs, each with jitter (50–100 %). @default 1000 */
  readonly backoffMs: number;
  /** Longest retry delay, ms. @default 300000 */
  readonly backoffMaxMs: number;
  /**
   * Webhooks this instance delivers at once (each has at most one request in flight, so this bounds requests
   * too). A webhook beyond it is left to another instance, or waits for a free place. @default 64
   */
  readonly concurrency: number;
  /** How long an instance's claim on a webhook lasts unless renewed, ms. @default 30000 */
  readonly leaseMs: number;
  /** How often this instance looks for webhooks nobody delivers (new ones, expired leases), ms. @default 2000 */
  readonly scanMs: number;
}

/** Defaults of {@link WebhookSettings}. */
export const WEBHOOK_DEFAULTS: WebhookSettings = {
  allowHttp: false,
  timeoutMs: 10_000,
  maxAttempts: 10,
  maxAgeMs: 24 * 3600_000,
  backoffMs: 1_000,
  backoffMaxMs: 300_000,
  concurrency: 64,
  leaseMs: 30_000,
  scanMs: 2_000,
};

/** Counts for /metrics (optional). */
export interface WebhookObserver {
  /** An attempt's outcome; `seconds`: from the event's recording to this attempt's end. */
  delivery(outcome: 'ok' | 'failed' | 'dead_lettered', seconds: number): void;
}

/** What the dispatcher needs. */
export interface WebhookDispatcherDeps {
  readonly store: WebhookStore;
  readonly events: EventLog;
  readonly context: FleetContext;
  /** This instance's id: the lease owner. */
  readonly owner: string;
  readonly settings: WebhookSettings;
  readonly log: Logger;
  readonly observer?: WebhookObserver | undefined;
}

/** The result of one HTTP attempt. */
type Attempt = { ok: true } | { ok: false; error: string };

/** The delay before retry number `attempts` (1 = after the first failure): exponential, capped, jittered. */
export function retryDelayMs(attempts: number, settings: WebhookSettings): number {
  const base = Math.min(
    settings.backoffMaxMs,
    settings.backoffMs * 2 ** Math.min(attempts - 1, 30),
  );
  return Math.round(base * (0.5 + Math.random() / 2));
}

/**
 * The webhook's filter as the log's filter plus a site/loader test (the same meaning as Watch's). An event whose
 * LU or agent the inventory does not know now (agents still reconnecting after a restart) passes: delivered
 * outside its filter rather than lost, since a webhook's cursor, unlike a watcher, never comes back for it.
 */
export function webhookFilter(
  record: Pick<WebhookRecord, 'filter'>,
  context: FleetContext,
): { filter: EventFilter; predicate: (e: FleetEvent) => boolean } {
  const f = record.filter;
  const loaders = new Set(f.loaderIds);
  const knownLu = (luId: string) => context.sitesOf(luId).length > 0;
  const predicate = (event: FleetEvent) => {
    if (loaders.size > 0) {
      if (event.luId === '') return false;
      const loader = event.loaderId || context.loaderOf(event.luId);
      if (loader === '' ? knownLu(event.luId) : !loaders.has(loader)) return false;
    }
    if (f.site === '') return true;
    const agentSite = event.agentId === '' ? '' : event.site || context.siteOf(event.agentId);
    if (agentSite === f.site) return true;
    const unknownAgent = event.agentId !== '' && agentSite === '';
    if (AGENT_KINDS.has(event.kind)) return unknownAgent;
    if (event.luId === '') return false;
    return knownLu(event.luId)
      ? context.sitesOf(event.luId).includes(f.site)
      : unknownAgent || event.agentId === '';
  };
  return {
    filter: { kinds: f.kinds.map(eventKindFromJSON), luIds: f.luIds, agentIds: f.agentIds },
    predicate,
  };
}

/**
 * Delivers events to webhooks: each webhook this instance holds the lease of gets its own loop, in cursor order,
 * one event at a time with retries (so order holds), apart from every other webhook and from the command path
 * (it only reads the event log): a slow receiver holds up only its own webhook. At most
 * {@link WebhookSettings.concurrency} webhooks per instance, so at most that many requests in flight.
 */
export class WebhookDispatcher {
  private readonly loops = new Map<string, AbortController>();
  private readonly stopping = new AbortController();
  private waiters = new Set<() => void>();
  private scanTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private readonly running = new Set<Promise<void>>();

  private warnedFull = false;
  private following: AbortController | undefined;

  constructor(private readonly deps: WebhookDispatcherDeps) {}

  /** Starts looking for webhooks to deliver, and following the log. */
  start(): void {
    this.scanTimer = setInterval(() => this.scan(), this.deps.settings.scanMs);
    this.scanTimer.unref();
    this.scan();
  }

  /** Looks for webhooks at once (one was added or removed here). */
  scan(): void {
    if (this.stopping.signal.aborted || this.scanning !== undefined) return;
    this.scanning = this.scanOnce()
      .catch((err: unknown) => this.deps.log.warn({ err }, 'webhooks: scan failed'))
      .finally(() => (this.scanning = undefined));
  }

  /** Stops every loop (in-flight requests are aborted: those events are delivered again later) and releases leases. */
  async close(): Promise<void> {
    this.stopping.abort();
    if (this.scanTimer !== undefined) clearInterval(this.scanTimer);
    this.wakeAll();
    await this.scanning;
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private track(work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }

  private wakeAll(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  /**
   * One subscription per instance while it delivers any webhook, only to wake idle loops when anything is
   * recorded (an instance without webhooks does not poll the log).
   */
  private followWhileDelivering(): void {
    if (this.following !== undefined || this.stopping.signal.aborted) return;
    const ac = new AbortController();
    this.following = ac;
    this.track(
      this.follow(AbortSignal.any([ac.signal, this.stopping.signal])).finally(() => {
        if (this.following === ac) this.following = undefined;
      }),
    );
  }

  private async follow(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        for await (const _ of this.deps.events.subscribe({
          signal,
          maxLag: Number.MAX_SAFE_INTEGER,
        }))
          this.wakeAll();
      } catch (err) {
        this.deps.log.debug({ err }, 'webhooks: event subscription ended; following again');
        await delay(1_000, signal);
      }
    }
  }

  /** Resolves when an event is recorded, after `ms` at most, or on stop. */
  private idle(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      // Whichever comes first clears the others: a woken wait leaves no timer or listener behind.
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }

  private async scanOnce(): Promise<void> {
    const { store, owner, settings } = this.deps;
    const hooks = await store.list();
    const ids = new Set(hooks.map((h) => h.id));
    for (const [id, ac] of this.loops) if (!ids.has(id)) ac.abort();
    for (const hook of hooks) {
      if (this.loops.has(hook.id) || this.stopping.signal.aborted) continue;
      if (this.loops.size >= settings.concurrency) {
        if (!this.warnedFull)
          this.deps.log.warn(
            { concurrency: settings.concurrency, webhooks: hooks.length },
            'webhooks: more webhooks than this instance delivers at once (PRFLEET_WEBHOOKS_CONCURRENCY): the rest wait for another instance or a free place',
          );
        this.warnedFull = true;
        break;
      }
      if (!(await store.lease(hook.id, owner, settings.leaseMs))) continue;
      // Re-read under the lease: the previous holder may have moved the cursor since the list.
      const [fresh] = await store.list(hook.id);
      if (fresh === undefined) continue;
      const ac = new AbortController();
      this.loops.set(hook.id, ac);
      this.track(this.loopThenRelease(fresh, ac));
      this.followWhileDelivering();
    }
  }

  private async loopThenRelease(hook: WebhookRecord, ac: AbortController): Promise<void> {
    try {
      await this.runLoop(hook, AbortSignal.any([ac.signal, this.stopping.signal]));
    } catch (err) {
      this.deps.log.warn({ err, webhook: hook.id }, 'webhooks: delivery loop failed');
    } finally {
      this.loops.delete(hook.id);
      if (this.loops.size === 0) this.following?.abort();
      // Given up at once (shutdown, removal, lost lease), so another instance need not wait it out.
      await this.deps.store.release(hook.id, this.deps.owner).catch(() => {});
    }
  }

  /** Keeps the lease while the loop runs; aborts the loop when it is lost. */
  private keepLease(id: string, loop: AbortController, signal: AbortSignal): () => void {
    const { store, owner, settings } = this.deps;
    const timer = setInterval(() => {
      if (signal.aborted) return;
      store.lease(id, owner, settings.leaseMs).then(
        (held) => {
          if (!held) loop.abort();
        },
        (err: unknown) =>
          this.deps.log.warn({ err, webhook: id }, 'webhooks: lease renewal failed'),
      );
    }, settings.leaseMs / 3);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Delivers the webhook's events in order until the signal aborts or the lease is lost. */
  private async runLoop(hook: WebhookRecord, outer: AbortSignal): Promise<void> {
    const loop = new AbortController();
    const signal = AbortSignal.any([outer, loop.signal]);
    const stopLease = this.keepLease(hook.id, loop, signal);
    const { filter, predicate } = webhookFilter(hook, this.deps.context);
    let cursor = hook.cursor;
    let retry = hook.retry;
    try {
      while (!signal.aborted) {
        const page = await this.page(hook, cursor, filter, signal);
        if (page === undefined) return;
        for (const event of page.events) {
          if (!predicate(event)) continue;
          const pending = retry?.cursor === Number(event.cursor) ? retry : undefined;
          if (!(await this.deliver(hook, event, pending, signal))) return;
          retry = undefined;
          cursor = Number(event.cursor);
        }
        if (page.scannedThrough > cursor) {
          if (!(await this.deps.store.skipTo(hook.id, this.deps.owner, page.scannedThrough)))
            return;
          cursor = page.scannedThrough;
        }
        if (page.events.length === 0) await this.idle(this.deps.settings.scanMs, signal);
      }
    } finally {
      stopLease();
    }
  }

  /** The next events after `cursor`; past events retention removed when it must (logged and recorded). */
  private async page(
    hook: WebhookRecord,
    cursor: number,
    filter: EventFilter,
    signal: AbortSignal,
  ): Promise<{ events: FleetEvent[]; scannedThrough: number } | undefined> {
    try {
      return await this.deps.events.readAfter(cursor, filter, 100);
    } catch (error) {
      if (!(error instanceof CursorExpiredError || error instanceof CursorAheadError)) throw error;
      const to =
        error instanceof CursorExpiredError ? error.oldestResumable : await this.deps.events.head();
      this.deps.log.error(
        { webhook: hook.id, cursor, to },
        'webhooks: events to deliver are gone from the log (retention): skipping ahead',
      );
      if (signal.aborted) return undefined;
      return { events: [], scannedThrough: to };
    }
  }

  /**
   * Delivers one event, retrying until it is accepted or given up on (dead letter). False when the loop must
   * stop (lease lost, stopping): the event is then delivered again by whoever holds the lease next.
   */
  private async deliver(
    hook: WebhookRecord,
    event: FleetEvent,
    pending: WebhookRecord['retry'],
    signal: AbortSignal,
  ): Promise<boolean> {
    const { store, owner, settings, observer } = this.deps;
    const cursor = Number(event.cursor);
    const body = JSON.stringify(eventToJson(enrich(event, this.deps.context)));
    let attempts = pending?.attempts ?? 0;
    const since = pending?.since.getTime() ?? Date.now();
    const age = () => (Date.now() - (event.time?.getTime() ?? Date.now())) / 1000;
    for (;;) {
      if (signal.aborted) return false;
      attempts += 1;
      const result = await this.attempt(hook, event, body, attempts, signal);
      if (signal.aborted) return false;
      if (result.ok) {
        if (!(await store.delivered(hook.id, owner, cursor))) return false;
        observer?.delivery('ok', age());
        return true;
      }
      const giveUp = attempts >= settings.maxAttempts || Date.now() - since >= settings.maxAgeMs;
      const kind = eventKindToJSON(event.kind);
      const recorded = await store.failed(hook.id, owner, {
        cursor,
        error: result.error,
        deadLetter: giveUp ? { kind } : undefined,
      });
      if (!recorded) return false;
      observer?.delivery('failed', age());
      if (giveUp) {
        observer?.delivery('dead_lettered', age());
        this.deps.log.warn(
          { webhook: hook.id, cursor, attempts, error: result.error },
          'webhooks: event dead-lettered',
        );
        return true;
      }
      await delay(retryDelayMs(attempts, settings), signal);
    }
  }

  /** One signed POST. */
  private async attempt(
    hook: WebhookRecord,
    event: FleetEvent,
    body: string,
    attempt: number,
    signal: AbortSignal,
  ): Promise<Attempt> {
    const { timeoutMs } = this.deps.settings;
    const timestamp = Math.floor(Date.now() / 1000);
    try {
      const response = await fetch(hook.url, {
        method: 'POST',
        body,
        redirect: 'manual',
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'prfleet-webhooks/1',
          [WEBHOOK_HEADERS.eventId]: String(event.cursor),
          [WEBHOOK_HEADERS.eventKind]: eventKindToJSON(event.kind),
          [WEBHOOK_HEADERS.webhookId]: hook.id,
          [WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [WEBHOOK_HEADERS.signature]: signWebhook(hook.secret, timestamp, body),
          [WEBHOOK_HEADERS.attempt]: String(attempt),
        },
      });
      // The answer's body is not needed; dropping it frees the connection.
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) return { ok: true };
      const redirect = response.status >= 300 && response.status < 400;
      return {
        ok: false,
        error: `HTTP ${response.status}${redirect ? ' (redirects are not followed)' : ''}`,
      };
    } catch (error) {
      if (error instanceof Error && error.name === 'TimeoutError')
        return { ok: false, error: `timeout after ${timeoutMs} ms` };
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      return {
        ok: false,
        error: cause?.code ?? cause?.message ?? (error as Error).message ?? String(error),
      };
    }
  }
}
