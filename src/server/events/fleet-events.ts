import type { Logger } from 'pino';
import type { CallContext } from 'nice-grpc-common';
import type { Command } from '../../gen/prfleet/v1/agent.js';
import {
  ChangeCause,
  EventKind,
  type WatchRequest,
  type WatchResponse,
} from '../../gen/prfleet/v1/events.js';
import { Outcome, type CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { ErrorReason, unavailable } from '../../common/errors.js';
import { printable } from '../../common/printable.js';
import type { AgentRegistry } from '../agents/index.js';
import type { EventsConfig } from '../config.js';
import { loadKeyIndex } from '../fleet/key-index.js';
import type { AuditFindings } from '../fleet/deps.js';
import { withDispatch, type CommandRouter } from '../router.js';
import type { LuSerializer } from '../lu-serializer.js';
import type { HistoryEntryInput, Store } from '../store/index.js';
import { createMemoryPathBook, createStorePathBook, recordAgentEvents } from './agent-source.js';
import { createMemoryEventLog } from './memory-log.js';
import {
  createMemoryObservedStates,
  createStoreObservedStates,
  type ObservedStates,
} from './observed.js';
import { LuObserver } from './observer.js';
import { proutEventOfInput } from './prout-events.js';
import { createStoreEventLog } from './store-log.js';
import type { EventLog, NewFleetEvent } from './types.js';
import type { PathBook } from './agent-source.js';
import { eventKindName, watch, type WatchObserver } from './watch.js';

/** Counts for /metrics; every member optional (metrics are off unless configured). */
export interface EventsObserver extends WatchObserver {
  /** Events this instance recorded, by kind name (`prout`, `agent_connected`, …). */
  recorded(kind: string, count: number): void;
}

/** What {@link createFleetEvents} needs. */
export interface FleetEventsDeps {
  readonly store: Store | undefined;
  readonly registry: AgentRegistry;
  readonly router: CommandRouter;
  readonly config: EventsConfig;
  readonly log: Logger;
  readonly observer?: EventsObserver | undefined;
  /** The command pipeline's PROUT turns per LU: observation reads take the LU's turn. @default none */
  readonly luSerializer?: LuSerializer | undefined;
}

/** The server's event machinery: the log, its sources, the observation and the Watch handler. */
export interface FleetEvents {
  /** The log (for webhooks and other in-process consumers: subscribe with your own cursor). */
  readonly log: EventLog;
  /** Each LU's last observed state and standing findings (snapshots). */
  readonly observed: ObservedStates;
  /** The periodic and on-demand observation of LUs. */
  readonly observer: LuObserver;
  /** FleetService.Watch. */
  readonly watch: (request: WatchRequest, ctx: CallContext) => AsyncGenerator<WatchResponse>;
  /** Sees every command result this instance dispatched (unit attentions, PROUTs that changed an LU). */
  readonly onResult: (
    agentId: string,
    command: Command,
    result: CommandResult,
    luId: string,
  ) => void;
  /**
   * A PROUT's history entry was written (the command journal's completion): with a store its event is already
   * in the log (trigger), so watchers are woken; the memory store records the event here.
   */
  readonly onHistory: (entry: HistoryEntryInput) => void;
  /** Calls `listener` after each append of this instance (Redis wake-up of other instances); returns an unsubscribe. */
  readonly onAppended: (listener: () => void) => () => void;
  /** Another instance appended: read now instead of at the next poll. */
  readonly wakeFromRemote: () => void;
  /** Raises and clears findings after an audit (FleetDeps.onAuditComplete). */
  readonly onAudit: (audit: AuditFindings) => void;
  /** Starts the observation and retention. */
  start(): void;
  /** Ends watches (UNAVAILABLE SERVER_DRAINING: resume elsewhere), stops the observation. */
  drain(): Promise<void>;
  /** Waits for event writes in progress (before the store closes). */
  idle(): Promise<void>;
}

/** Unit attentions that say another nexus changed the LU's reservations: ASC 2Ah with ASCQ 03h–05h. */
function changesReservations(result: CommandResult): boolean {
  return result.unitAttentions.some(
    (ua) => ua.sense?.asc === 0x2a && [3, 4, 5].includes(ua.sense.ascq),
  );
}

/** Counts recorded events by kind for /metrics (nothing without metrics). */
function countingBy(
  observer: EventsObserver | undefined,
): (list: readonly { kind: EventKind }[]) => void {
  return (list) => {
    if (observer === undefined) return;
    const byKind = new Map<string, number>();
    for (const e of list) {
      const name = eventKindName(e.kind);
      byKind.set(name, (byKind.get(name) ?? 0) + 1);
    }
    for (const [kind, n] of byKind) observer.recorded(kind, n);
  };
}

/**
 * The log with every local append announced: this instance's watchers read at once, and `listeners` (the Redis
 * wake-up) tell the other instances to read. Appends inside a store transaction call `wake` after commit.
 */
function announcingLog(events: EventLog, listeners: ReadonlySet<() => void>): EventLog {
  const tell = () => {
    for (const listener of listeners) listener();
  };
  return {
    ...events,
    append: async (batch) => {
      const recorded = await events.append(batch);
      if (recorded.length > 0) tell();
      return recorded;
    },
    wake: () => {
      events.wake();
      tell();
    },
  };
}

/** Builds the event log (durable in the store, else in memory) and wires its sources. */
export function createFleetEvents(deps: FleetEventsDeps): FleetEvents {
  const { store, registry, log, config } = deps;
  const { events, listeners, counted, counting, observed, paths } = buildLogs(deps);
  const writes = new Set<Promise<unknown>>();
  const track = (work: Promise<unknown>) => {
    writes.add(work);
    void work.finally(() => writes.delete(work));
  };
  const append = (batch: NewFleetEvent[]) => {
    if (batch.length === 0) return;
    track(
      counting.append(batch).catch((err: unknown) => log.error({ err }, 'events: append failed')),
    );
  };
  const observer = new LuObserver({
    registry,
    router: deps.router,
    observed,
    keys: store === undefined ? undefined : () => loadKeyIndex(store),
    log,
    settings: {
      intervalMs: config.observeIntervalMs,
      concurrency: config.observeConcurrency,
      timeoutMs: 10_000,
    },
    onEvents: counted,
    turns: deps.luSerializer,
  });
  const stopAgents = recordAgentEvents(registry, counting, paths, log);
  const draining = new AbortController();
  let pruneTimer: NodeJS.Timeout | undefined;

  return {
    log: counting,
    observed,
    observer,
    watch: async function* (request, ctx) {
      const signal = AbortSignal.any([ctx.signal, draining.signal]);
      yield* watch({ events, observed, registry, observer: deps.observer }, request, {
        ...ctx,
        signal,
      });
      if (draining.signal.aborted && !ctx.signal.aborted)
        throw unavailable(
          ErrorReason.SERVER_DRAINING,
          'the server is shutting down: watch again (on another instance) after your last cursor',
        );
    },
    onResult: resultHandler({ registry, observer, append, counted, durable: store !== undefined }),
    onHistory: (entry) => {
      if (store === undefined) append([proutEventOfInput(entry)]);
      else counting.wake();
    },
    onAppended: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    wakeFromRemote: () => events.wake(),
    onAudit: (audit) =>
      track(
        observer
          .recordAudit(audit)
          .catch((err: unknown) => log.error({ err }, 'events: recording audit findings failed')),
      ),
    start() {
      observer.start();
      const prune = () =>
        track(events.prune().catch((err: unknown) => log.warn({ err }, 'events: pruning failed')));
      pruneTimer = setInterval(prune, 60_000);
      pruneTimer.unref();
    },
    async drain() {
      draining.abort();
      if (pruneTimer !== undefined) clearInterval(pruneTimer);
      stopAgents();
      await observer.close();
    },
    async idle() {
      while (writes.size > 0) await Promise.allSettled([...writes]);
    },
  };
}

/** The log and its stores: raw, announced (local appends wake other instances), and counted for /metrics. */
function buildLogs(deps: FleetEventsDeps) {
  const { store, config } = deps;
  const limits = {
    maxEvents: config.retainEvents,
    maxAgeMs: config.retainMs,
    maxLag: config.maxLag,
    pollMs: config.pollMs,
  };
  const events =
    store === undefined ? createMemoryEventLog(limits) : createStoreEventLog(store.db, limits);
  const listeners = new Set<() => void>();
  const counted = countingBy(deps.observer);
  const announcing = announcingLog(events, listeners);
  // What the Watch handler, webhooks and this file's sources append through: counted and announced.
  const counting: EventLog = {
    ...announcing,
    append: async (batch) => {
      const recorded = await announcing.append(batch);
      counted(recorded);
      return recorded;
    },
  };
  const observed =
    store === undefined
      ? createMemoryObservedStates(announcing)
      : createStoreObservedStates(store.db, announcing);
  const book =
    store === undefined
      ? createMemoryPathBook(announcing)
      : createStorePathBook(store.db, announcing);
  const paths: PathBook = {
    exchange: async (agentId, next, make) => {
      const recorded = await book.exchange(agentId, next, make);
      counted(recorded);
      return recorded;
    },
  };
  return { events, listeners, counted, counting, observed, paths };
}

/**
 * What a command result tells the events: each unit attention the agent consumed is an event, and one that says
 * another nexus changed the LU's reservations (2Ah/03h–05h) makes the observation read the LU; so does a PROUT
 * that returned GOOD. Both read through the nexus that sent or met it (see LuObserver.poke).
 */
function resultHandler(context: {
  readonly registry: AgentRegistry;
  readonly observer: LuObserver;
  readonly append: (batch: NewFleetEvent[]) => void;
  readonly counted: (list: readonly { kind: EventKind }[]) => void;
  /** With a store, PROUT events come from the history trigger: counted here. */
  readonly durable: boolean;
}): FleetEvents['onResult'] {
  const { registry, observer } = context;
  return (agentId, command, result, dispatchedLu) => {
    const luId = result.luId || dispatchedLu;
    const nexus = { agentId, path: result.path || command.path };
    if (result.unitAttentions.length > 0) {
      context.append(
        result.unitAttentions.map((ua) => {
          // The agent's words for the sense: one line of a watcher's output, whatever they hold.
          const words = printable(ua.sense?.description ?? '');
          return {
            kind: EventKind.EVENT_KIND_UNIT_ATTENTION,
            agentId,
            site: registry.get(agentId)?.hello.site ?? '',
            path: nexus.path,
            luId,
            actor: agentId,
            summary: `unit attention on ${agentId}:${nexus.path}: ${ua.sense === undefined ? 'unit attention' : words}`,
            detail: {
              $case: 'unitAttention' as const,
              value: { unitAttention: ua, description: words },
            },
          };
        }),
      );
      if (changesReservations(result))
        observer.poke(luId, ChangeCause.CHANGE_CAUSE_UNIT_ATTENTION, agentId, nexus);
    }
    if (command.kind?.$case !== 'prout') return;
    if (result.outcome === Outcome.OUTCOME_GOOD)
      observer.poke(luId, ChangeCause.CHANGE_CAUSE_PROUT, agentId, nexus);
    if (context.durable) context.counted([{ kind: EventKind.EVENT_KIND_PROUT }]);
  };
}

/**
 * The router with every result shown to `onResult` as it arrives (also after the caller gave up), like the
 * metrics' instrumentRouter. `onResult` must be quick and never throw.
 */
export function observeResults<R extends CommandRouter>(
  router: R,
  onResult: (agentId: string, command: Command, result: CommandResult, luId: string) => void,
): R {
  const dispatch: CommandRouter['dispatch'] = (agentId, command, options) =>
    router.dispatch(agentId, command, {
      ...options,
      onResult: (result) => {
        try {
          onResult(agentId, command, result, options.luId ?? '');
        } catch {
          // An observer's failure must not touch the command's result.
        }
        options.onResult?.(result);
      },
    });
  return withDispatch(router, dispatch);
}
