import { CommandResult } from '../gen/prfleet/v1/scsi.js';
import type { HistoryEntryInput } from './store/index.js';

/** What a PROUT with an idempotency key was: who sent it, and a fingerprint of the command. */
export interface JournalRequest {
  /** Agent the PROUT goes through. */
  readonly agentId: string;
  /** Path it runs on. */
  readonly path: string;
  /** Stable fingerprint of the command (action, keys, type, flags); a repeat must match it. */
  readonly fingerprint: string;
  /**
   * What the PROUT history needs should this server die before the result comes back: whoever settles the
   * entry as UNKNOWN (a restart, a surviving instance) appends the history entry from it.
   */
  readonly record?: PendingRecord;
}

/** A journaled PROUT's history context: the command as sent (Command.toJSON) and who sent it, why, where. */
export interface PendingRecord {
  /** Command.toJSON of the command (keys, type, flags, command id). */
  readonly command: unknown;
  /** Principal that sent it. */
  readonly actor: string;
  /** Logical unit of the target. */
  readonly luId: string;
  /** ProutOptions.reason, when given. */
  readonly reason?: string;
}

/** State of an idempotency key. */
export type JournalEntry =
  | { readonly state: 'in-flight'; readonly request: JournalRequest }
  | {
      readonly state: 'completed';
      readonly request: JournalRequest;
      readonly result: CommandResult;
    };

/** Outcome of {@link CommandJournal.begin}. */
export type JournalBegin =
  /** The key is new: the caller owns it and must complete() or abandon() it. */
  | { readonly kind: 'started' }
  /** The key exists; `entry` tells whether it finished (use its result) or is still in flight (wait()). */
  | { readonly kind: 'exists'; readonly entry: JournalEntry };

/**
 * Idempotency journal for PROUTs: the first request with a key runs, repeats get the recorded result. The
 * in-memory one lives here; the durable store (src/server/store/command-journal.ts) implements the same interface.
 */
export interface CommandJournal {
  /** Claims `key` for `request` atomically, or reports the existing entry. */
  begin(key: string, request: JournalRequest): Promise<JournalBegin>;
  /**
   * Records the final result of `key` (and wakes wait()ers) and, on a durable store, appends `history` in the
   * same transaction (the memory store keeps no history).
   */
  complete(key: string, result: CommandResult, history?: HistoryEntryInput): Promise<void>;
  /** Forgets an in-flight `key` whose command was never sent (an RPC error before dispatch), so it can be retried. */
  abandon(key: string): Promise<void>;
  /** The entry for `key`, if any. */
  get(key: string): Promise<JournalEntry | undefined>;
  /**
   * Resolves with the result of `key` once completed, or undefined if it is abandoned (or unknown). Rejects with
   * the signal's reason when `signal` aborts first.
   */
  wait(key: string, signal?: AbortSignal): Promise<CommandResult | undefined>;
}

/** Options for {@link createMemoryJournal}. */
export interface MemoryJournalOptions {
  /** Completed entries kept (oldest dropped first). @default 100000 */
  readonly maxEntries?: number;
}

/** In-memory CommandJournal (single instance; lost on restart). */
export function createMemoryJournal(options: MemoryJournalOptions = {}): CommandJournal {
  const maxEntries = options.maxEntries ?? 100_000;
  const entries = new Map<string, JournalEntry>();
  const waiters = new Map<string, Set<(result: CommandResult | undefined) => void>>();

  function wake(key: string, result: CommandResult | undefined): void {
    const set = waiters.get(key);
    waiters.delete(key);
    for (const w of set ?? []) w(result);
  }

  function evict(): void {
    for (const [key, entry] of entries) {
      if (entries.size <= maxEntries) return;
      if (entry.state === 'completed') entries.delete(key);
    }
  }

  return {
    async begin(key, request) {
      const existing = entries.get(key);
      if (existing !== undefined) return { kind: 'exists', entry: existing };
      entries.set(key, { state: 'in-flight', request });
      evict();
      return { kind: 'started' };
    },
    async complete(key, result) {
      const existing = entries.get(key);
      if (existing === undefined) return;
      entries.set(key, {
        state: 'completed',
        request: existing.request,
        result: CommandResult.fromPartial(result),
      });
      wake(key, result);
    },
    async abandon(key) {
      const existing = entries.get(key);
      if (existing?.state !== 'in-flight') return;
      entries.delete(key);
      wake(key, undefined);
    },
    async get(key) {
      return entries.get(key);
    },
    wait(key, signal) {
      const existing = entries.get(key);
      if (existing === undefined) return Promise.resolve(undefined);
      if (existing.state === 'completed') return Promise.resolve(existing.result);
      if (signal?.aborted) return Promise.reject(signal.reason);
      return new Promise<CommandResult | undefined>((resolve, reject) => {
        const onAbort = () => {
          waiters.get(key)?.delete(waiter);
          reject(signal?.reason);
        };
        const waiter = (result: CommandResult | undefined) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(result);
        };
        let set = waiters.get(key);
        if (set === undefined) waiters.set(key, (set = new Set()));
        set.add(waiter);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
}
