import { CommandResult, Outcome } from '../../gen/prfleet/v1/scsi.js';
import type { CommandJournal, JournalEntry, JournalRequest } from '../journal.js';
import type { JsonValue } from './canonical-json.js';
import { JournalStateError, NotFoundError } from './errors.js';
import type { OperationEntry, OperationJournal } from './journal.js';
import { delay } from '../../common/delay.js';

/** Options for {@link createStoreCommandJournal}. */
export interface StoreCommandJournalOptions {
  /** This server instance's id, recorded as the owner of the entries it begins. */
  readonly owner?: string;
  /** How often `wait` re-reads an entry another instance is working on. @default 200 */
  readonly pollMs?: number;
}

function toJournalEntry(entry: OperationEntry): JournalEntry {
  const request = entry.request as unknown as JournalRequest;
  // UNKNOWN is a recorded answer (OUTCOME_UNKNOWN) for the caller; only a fresh PRIN settles the device state.
  if (entry.state === 'pending' || entry.result === null) return { state: 'in-flight', request };
  return { state: 'completed', request, result: CommandResult.fromJSON(entry.result) };
}

/**
 * The server's CommandJournal (src/server/journal.ts) over the durable operation journal, so idempotency holds
 * across restarts and across server instances sharing PostgreSQL. `complete` with an OUTCOME_UNKNOWN result
 * marks the entry unknown; a later real result replaces it. Completing an absent or already-done key changes
 * nothing (first result wins), as in the in-memory journal. `wait` polls, since the completing server may be
 * another instance.
 */
export function createStoreCommandJournal(
  journal: OperationJournal,
  options: StoreCommandJournalOptions = {},
): CommandJournal {
  const pollMs = options.pollMs ?? 200;
  return {
    async begin(key, request) {
      const outcome = await journal.begin({
        idempotencyKey: key,
        request: {
          agentId: request.agentId,
          path: request.path,
          fingerprint: request.fingerprint,
          ...(request.record === undefined
            ? {}
            : { record: request.record as unknown as JsonValue }),
        },
        ...(options.owner !== undefined ? { owner: options.owner } : {}),
      });
      // 'mismatch' is reported as 'exists': the executor compares fingerprints and names the conflict.
      return outcome.kind === 'started'
        ? { kind: 'started' }
        : { kind: 'exists', entry: toJournalEntry(outcome.entry) };
    },
    async complete(key, result, history) {
      const json = CommandResult.toJSON(CommandResult.fromPartial(result)) as JsonValue;
      try {
        if (result.outcome === Outcome.OUTCOME_UNKNOWN)
          await journal.markUnknown(key, json, history);
        else await journal.complete(key, json, history);
      } catch (error) {
        if (error instanceof NotFoundError || error instanceof JournalStateError) return;
        throw error;
      }
    },
    async abandon(key) {
      await journal.abandon(key);
    },
    async get(key) {
      const entry = await journal.get(key);
      return entry && toJournalEntry(entry);
    },
    async wait(key, signal) {
      for (;;) {
        signal?.throwIfAborted();
        const entry = await journal.get(key);
        if (entry === undefined) return undefined; // abandoned (or never begun)
        const mapped = toJournalEntry(entry);
        if (mapped.state === 'completed') return mapped.result;
        await delay(pollMs, signal);
      }
    },
  };
}
