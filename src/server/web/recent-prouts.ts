/**
 * The web view's newest PROUTs: the history's tail at the first read, then every PROUT as it happens (from the
 * event log, or by polling the history when there is no event log), each shown once.
 */
import type { FleetEvent } from '../../gen/prfleet/v1/events.js';
import { outcomeToJSON, PrType, proutActionToJSON } from '../../gen/prfleet/v1/scsi.js';
import { formatKey } from '../../common/key-layout.js';
import { prTypeName } from '../../scsi/index.js';
import type { PRoutHistory } from '../store/index.js';
import { historyView, type HistoryView } from './model.js';

/** The newest PROUTs, newest first. */
export interface RecentProuts {
  /** The rows, newest first. */
  list(): HistoryView[];
  /** Adds a row unless it is already shown; returns whether it was added. */
  add(shown: HistoryView): boolean;
  /** Replaces the rows with the history's newest (nothing without a history). */
  loadTail(): Promise<void>;
  /**
   * Adds the history's entries after the newest one seen, calling `added` with each row it adds and `touched`
   * with each entry's LU and agent.
   */
  poll(
    added: (row: HistoryView) => void,
    touched: (luId: string, agentId: string) => void,
  ): Promise<void>;
}

/** Creates the list over `history` (undefined with the memory store: only PROUTs as they happen). */
export function createRecentProuts(history: PRoutHistory | undefined, size: number): RecentProuts {
  let rows: HistoryView[] = [];
  let lastSeq = 0;
  const add = (shown: HistoryView): boolean => {
    if (rows.some((h) => h.seq === shown.seq && shown.seq !== 0)) return false;
    rows = [shown, ...rows].slice(0, size);
    lastSeq = Math.max(lastSeq, shown.seq);
    return true;
  };
  return {
    list: () => rows,
    add,
    async loadTail() {
      if (history === undefined) return;
      const newest = await history.list({ newestFirst: true, limit: size });
      rows = newest.map(historyView);
      lastSeq = Math.max(lastSeq, newest[0]?.seq ?? 0);
    },
    async poll(added, touched) {
      if (history === undefined) return;
      const fresh = await history.list({ afterSeq: lastSeq, limit: 100 });
      for (const entry of fresh) {
        lastSeq = Math.max(lastSeq, entry.seq);
        const shown = historyView(entry);
        if (add(shown)) added(shown);
        if (entry.luId !== '') touched(entry.luId, entry.agentId);
      }
    },
  };
}

/** The recent-PROUT row of a PROUT event (the history entry it carries), or undefined without its detail. */
export function historyOfEvent(event: FleetEvent): HistoryView | undefined {
  if (event.detail?.$case !== 'prout') return undefined;
  const p = event.detail.value;
  const words = (text: string, prefix: RegExp) => text.replace(prefix, '').replaceAll('_', ' ');
  return {
    seq: Number(p.historySeq),
    time: (event.time ?? new Date()).toISOString(),
    actor: event.actor,
    agentId: event.agentId,
    path: event.path,
    luId: event.luId,
    action: words(proutActionToJSON(p.action), /^PROUT_ACTION_/),
    type: p.type === PrType.PR_TYPE_UNSPECIFIED ? '' : prTypeName(p.type),
    key: formatKey(p.reservationKey),
    serviceActionKey: formatKey(p.serviceActionKey),
    outcome:
      p.verdict !== '' ? words(p.verdict, /^$/) : words(outcomeToJSON(p.outcome), /^OUTCOME_/),
    reason: p.reason,
  };
}
