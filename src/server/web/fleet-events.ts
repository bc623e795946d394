/**
 * What the web view does with each fleet event (docs/events.md): agents connecting or leaving and paths
 * appearing or lost update the agents and re-read their LUs; a PROUT joins the recent PROUTs and re-reads its LU
 * through the sender's path (its own command left that nexus no news); unit attentions, observed reservation and
 * registration changes and findings re-read their LU.
 */
import type { Logger } from 'pino';
import { EventKind, type FleetEvent } from '../../gen/prfleet/v1/events.js';
import { delay } from '../../common/delay.js';
import type { EventLog } from '../events/index.js';
import type { HistoryView } from './model.js';
import { historyOfEvent } from './recent-prouts.js';

/** The web view's answers to fleet events. */
export interface FleetEventHandlers {
  /** An agent connected or left, or its paths changed. */
  readonly agentChanged: (agentId: string) => void;
  /** A PROUT (or its verdict) to show among the recent PROUTs. */
  readonly prout: (row: HistoryView) => void;
  /** `luId` may have changed: read it again, through `preferAgent`'s path when given. */
  readonly luChanged: (luId: string, preferAgent?: string) => void;
}

/** Hands `event` to the handler its kind calls for. */
export function applyFleetEvent(event: FleetEvent, on: FleetEventHandlers): void {
  switch (event.kind) {
    case EventKind.EVENT_KIND_AGENT_CONNECTED:
    case EventKind.EVENT_KIND_AGENT_DISCONNECTED:
    case EventKind.EVENT_KIND_PATH_APPEARED:
    case EventKind.EVENT_KIND_PATH_LOST:
    case EventKind.EVENT_KIND_PATHS_CHURNED:
      on.agentChanged(event.agentId);
      if (event.luId !== '') on.luChanged(event.luId);
      return;
    case EventKind.EVENT_KIND_PROUT:
    case EventKind.EVENT_KIND_PROUT_VERDICT: {
      const shown = historyOfEvent(event);
      if (shown !== undefined) on.prout(shown);
      if (event.luId !== '') on.luChanged(event.luId, event.agentId);
      return;
    }
    case EventKind.EVENT_KIND_UNIT_ATTENTION:
    case EventKind.EVENT_KIND_RESERVATION_CHANGED:
    case EventKind.EVENT_KIND_REGISTRATIONS_CHANGED:
    case EventKind.EVENT_KIND_FINDING_RAISED:
    case EventKind.EVENT_KIND_FINDING_CLEARED:
      if (event.luId !== '') on.luChanged(event.luId);
      return;
    case EventKind.EVENT_KIND_UNSPECIFIED:
    case EventKind.UNRECOGNIZED:
      return;
  }
}

/**
 * Follows the event log from its head until `signal` aborts; after a failure (fallen behind, or the log
 * failed) it calls `missed`, since what was missed must be read again whole, and follows again.
 */
export async function followEvents(
  events: Pick<EventLog, 'subscribe'>,
  signal: AbortSignal,
  onEvent: (event: FleetEvent) => void,
  missed: () => void,
  log: Logger,
): Promise<void> {
  while (!signal.aborted) {
    try {
      for await (const event of events.subscribe({ signal })) onEvent(event);
      return; // the log was closed (server shutdown)
    } catch (err) {
      if (signal.aborted) return;
      log.warn({ err }, 'web view: event log subscription ended; reading everything again');
      await delay(1000, signal);
      missed();
    }
  }
}
