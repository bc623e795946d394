import type { CommandJournal } from '../journal.js';
import type { HistoryEntryInput } from '../store/index.js';
import { EventKind } from '../../gen/prfleet/v1/events.js';
import { proutEventOf, type HistoryJson } from './store-log.js';
import type { NewFleetEvent } from './types.js';

/** The kind of a history entry's event: the verdict on an earlier UNKNOWN, or a PROUT as sent. */
export function historyEventKind(outcome: string): EventKind {
  return outcome.startsWith('RECONCILED')
    ? EventKind.EVENT_KIND_PROUT_VERDICT
    : EventKind.EVENT_KIND_PROUT;
}

/** The event of a history entry that was not stored (memory store): the same shape the store's trigger makes. */
export function proutEventOfInput(entry: HistoryEntryInput): NewFleetEvent {
  const hex = (key: bigint) => key.toString(16).padStart(16, '0');
  const json: HistoryJson = {
    seq: 0,
    actor: entry.actor,
    agent_id: entry.agentId,
    path: entry.path,
    lu_id: entry.luId,
    action: entry.action,
    reservation_key: hex(entry.reservationKey),
    service_action_key: hex(entry.serviceActionKey ?? 0n),
    pr_type: entry.prType ?? null,
    outcome: entry.outcome,
    status: entry.status ?? null,
    idempotency_key: entry.idempotencyKey ?? null,
    reason: entry.reason ?? null,
  };
  const kind = historyEventKind(entry.outcome);
  return { ...proutEventOf(kind, json), kind };
}

/**
 * Tells `onHistory` each history entry the pipeline hands to `complete`, once written: the memory store keeps no
 * history, so its PROUT events are recorded from it; with a store the trigger recorded the event in the same
 * transaction, and watchers are woken at once instead of at their next poll.
 */
export function journalWithProutEvents(
  journal: CommandJournal,
  onHistory: (entry: HistoryEntryInput) => void,
): CommandJournal {
  return {
    ...journal,
    begin: (key, request) => journal.begin(key, request),
    abandon: (key) => journal.abandon(key),
    get: (key) => journal.get(key),
    wait: (key, signal) => journal.wait(key, signal),
    async complete(key, result, history) {
      await journal.complete(key, result, history);
      if (history !== undefined) onHistory(history);
    },
  };
}
