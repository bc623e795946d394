import { Status, type CallContext } from 'nice-grpc-common';
import { ErrorInfo, RichServerError } from 'nice-grpc-error-details';
import {
  AgentSnapshot,
  EventKind,
  eventKindToJSON,
  LuSnapshot,
  type FleetEvent,
  type WatchRequest,
  type WatchResponse,
} from '../../gen/prfleet/v1/events.js';
import { ERROR_DOMAIN, invalidArgument } from '../../common/errors.js';
import { isConnected, type AgentRegistry } from '../agents/index.js';
import { pathsByLu } from '../devices.js';
import { enrich, registryContext, type FleetContext } from './context.js';
import type { ObservedStates } from './observed.js';
import {
  AGENT_KINDS,
  CursorAheadError,
  CursorExpiredError,
  cursorOf,
  WatcherTooSlowError,
  type EventFilter,
  type EventLog,
} from './types.js';

/** ErrorInfo reasons of Watch. */
export const WatchErrorReason = {
  /** The cursor is older than the retention: watch again with `snapshot`. */
  CURSOR_EXPIRED: 'CURSOR_EXPIRED',
  /** The cursor is beyond the newest event (another log, or a memory log that restarted). */
  CURSOR_AHEAD: 'CURSOR_AHEAD',
  /** The watcher read too slowly and was ended; resume after metadata `cursor`. */
  WATCHER_TOO_SLOW: 'WATCHER_TOO_SLOW',
} as const;

/** Counts for /metrics (optional). */
export interface WatchObserver {
  /** A watch started (+1) or ended (-1). */
  watchers(delta: number): void;
  /** A watch was ended for falling behind. */
  endedSlow(): void;
}

/** What the Watch handler needs. */
export interface WatchDeps {
  readonly events: EventLog;
  readonly observed: ObservedStates;
  readonly registry: AgentRegistry;
  readonly observer?: WatchObserver | undefined;
}

const KNOWN_KINDS = new Set(
  Object.values(EventKind).filter((v): v is EventKind => typeof v === 'number' && Number(v) > 0),
);

/** The request's filter: kinds, LU and agent ids go to the log; site and loader are tested per event. */
function filterOf(
  request: WatchRequest,
  context: FleetContext,
): {
  filter: EventFilter;
  predicate: ((event: FleetEvent) => boolean) | undefined;
} {
  const bad = request.kinds.findIndex((k) => !KNOWN_KINDS.has(k));
  if (bad >= 0)
    throw invalidArgument(`kinds[${bad}]`, `${String(request.kinds[bad])} is not an event kind`);
  const loaders = new Set(request.loaderIds);
  const site = request.site;
  const predicate =
    site === '' && loaders.size === 0
      ? undefined
      : (event: FleetEvent) => {
          if (loaders.size > 0 && (event.luId === '' || !loaders.has(context.loaderOf(event.luId))))
            return false;
          if (site === '') return true;
          if (event.agentId !== '' && context.siteOf(event.agentId) === site) return true;
          // An agent's own news (connection, paths) belongs to its site; what happens to an LU concerns
          // every site that sees it.
          if (AGENT_KINDS.has(event.kind)) return false;
          return event.luId !== '' && context.sitesOf(event.luId).includes(site);
        };
  return {
    filter: { kinds: request.kinds, luIds: request.luIds, agentIds: request.agentIds },
    predicate,
  };
}

/** Watch's errors as gRPC statuses with an ErrorInfo a client can branch on. */
export function watchErrorToRpc(error: unknown): unknown {
  const info = (reason: string, metadata: Record<string, string>) =>
    ErrorInfo.fromPartial({ reason, domain: ERROR_DOMAIN, metadata });
  if (error instanceof CursorExpiredError)
    return new RichServerError(Status.FAILED_PRECONDITION, error.message, [
      info(WatchErrorReason.CURSOR_EXPIRED, {
        cursor: String(error.cursor),
        oldest_cursor: String(error.oldestResumable),
      }),
    ]);
  if (error instanceof CursorAheadError)
    return new RichServerError(Status.OUT_OF_RANGE, error.message, [
      info(WatchErrorReason.CURSOR_AHEAD, {
        cursor: String(error.cursor),
        head: String(error.head),
      }),
    ]);
  if (error instanceof WatcherTooSlowError)
    return new RichServerError(Status.RESOURCE_EXHAUSTED, error.message, [
      info(WatchErrorReason.WATCHER_TOO_SLOW, {
        cursor: String(error.cursor),
        max_lag: String(error.maxLag),
      }),
    ]);
  return error;
}

/** The selected LUs and agents as last observed, and the cursor the events after it start from. */
async function snapshotOf(
  deps: WatchDeps,
  request: WatchRequest,
  context: FleetContext,
  predicate: ((event: FleetEvent) => boolean) | undefined,
): Promise<{ response: WatchResponse; cursor: number }> {
  const cursor = await deps.events.head();
  const agentIds = new Set(request.agentIds);
  const luIds = new Set(request.luIds);
  const agents = deps.registry
    .list()
    .filter((a) => agentIds.size === 0 || agentIds.has(a.hello.agentId))
    .filter((a) => request.site === '' || a.hello.site === request.site);
  const units = [...pathsByLu(deps.registry).keys()]
    .filter((luId) => luIds.size === 0 || luIds.has(luId))
    .filter((luId) => predicate === undefined || predicate(luEvent(luId)))
    .sort();
  const observed = new Map((await deps.observed.list(units)).map((o) => [o.luId, o]));
  const response: WatchResponse = {
    message: {
      $case: 'snapshot',
      value: {
        cursor: BigInt(cursor),
        agents: agents.map((a) =>
          AgentSnapshot.fromPartial({
            agentId: a.hello.agentId,
            site: a.hello.site,
            connected: isConnected(a),
            paths: a.paths.length,
          }),
        ),
        logicalUnits: units.map((luId) => {
          const o = observed.get(luId);
          return LuSnapshot.fromPartial({
            luId,
            loaderId: context.loaderOf(luId),
            ...(o === undefined
              ? {}
              : { state: o.state, observedAt: o.observedAt, findings: [...o.findings] }),
          });
        }),
      },
    },
  };
  return { response, cursor };
}

/** A bare LU event for testing the site/loader predicate against an LU. */
function luEvent(luId: string): FleetEvent {
  return { luId, agentId: '' } as FleetEvent;
}

/**
 * FleetService.Watch: an optional snapshot, then every matching event after the cursor (or from now) as it is
 * recorded, until the client cancels. A watcher that falls more than the log's maxLag behind is ended with
 * RESOURCE_EXHAUSTED (WATCHER_TOO_SLOW) naming the cursor to resume after; it never holds anyone else up.
 */
export async function* watch(
  deps: WatchDeps,
  request: WatchRequest,
  ctx: CallContext,
): AsyncGenerator<WatchResponse, void, undefined> {
  const context = registryContext(deps.registry);
  const { filter, predicate } = filterOf(request, context);
  deps.observer?.watchers(1);
  try {
    let after =
      request.afterCursor === undefined
        ? undefined
        : await cursorOf(deps.events, request.afterCursor);
    if (request.snapshot) {
      const snapshot = await snapshotOf(deps, request, context, predicate);
      after ??= snapshot.cursor;
      yield snapshot.response;
    }
    const events = deps.events.subscribe({ filter, predicate, after, signal: ctx.signal });
    for await (const event of events) {
      yield { message: { $case: 'event', value: enrich(event, context) } };
    }
  } catch (error) {
    if (error instanceof WatcherTooSlowError) deps.observer?.endedSlow();
    throw watchErrorToRpc(error);
  } finally {
    deps.observer?.watchers(-1);
  }
}

/** The kind's short name for people and metrics labels: `agent_connected`, `prout`, … */
export function eventKindName(kind: EventKind): string {
  return eventKindToJSON(kind)
    .replace(/^EVENT_KIND_/, '')
    .toLowerCase();
}
