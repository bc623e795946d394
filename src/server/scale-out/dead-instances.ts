import type { Logger } from 'pino';
import { settlePendingAsUnknown } from '../durable.js';
import type { RedisInventory } from '../shared-inventory/index.js';
import type { Store } from '../store/index.js';

/**
 * Every `instanceTtlMs`, marks UNKNOWN the journal entries of instances the shared inventory has seen dead for
 * two scans (see {@link createDeadInstanceSettler}). Returns the timer (unref'd) for close() to clear.
 */
export function startDeadInstanceReaper(
  store: Store,
  inventory: RedisInventory,
  options: { readonly instanceId: string; readonly log: Logger; readonly instanceTtlMs: number },
): NodeJS.Timeout {
  const { instanceId, log, instanceTtlMs } = options;
  const settle = createDeadInstanceSettler(store, inventory, {
    instanceId,
    log,
    graceMs: 2 * instanceTtlMs,
  });
  const reaper = setInterval(() => {
    settle().catch((err: unknown) =>
      log.warn({ err }, 'settling dead instances’ journal entries failed'),
    );
  }, instanceTtlMs);
  reaper.unref();
  return reaper;
}

/** Options for {@link createDeadInstanceSettler}. */
export interface DeadInstanceSettlerOptions {
  /** This instance (its own entries are never touched here). */
  readonly instanceId: string;
  /** Logger. */
  readonly log: Logger;
  /** An owner must look dead on two scans at least this far apart, and its entry be untouched this long. */
  readonly graceMs: number;
}

/**
 * Returns a scan that marks UNKNOWN the journal entries left pending by server instances that died (SIGKILL,
 * crash: no liveness in the shared inventory), so a repeat of the idempotency key gets an answer at once
 * instead of waiting hours for the stale-entry rule, and nothing sent is left without a record. An owner is
 * dead when it was not alive on two scans `graceMs` apart. Returns the keys marked per scan.
 */
export function createDeadInstanceSettler(
  store: Store,
  liveness: Pick<RedisInventory, 'isInstanceAlive'>,
  options: DeadInstanceSettlerOptions,
): () => Promise<string[]> {
  const suspectSince = new Map<string, number>();
  return async () => {
    const now = Date.now();
    const pending = await store.journal.listPending({ before: new Date(now - options.graceMs) });
    const marked: string[] = [];
    const seenOwners = new Set<string>();
    for (const entry of pending) {
      const owner = entry.owner;
      if (owner === null || owner === options.instanceId) continue;
      seenOwners.add(owner);
      if (liveness.isInstanceAlive(owner)) {
        suspectSince.delete(owner);
        continue;
      }
      const since = suspectSince.get(owner);
      if (since === undefined) {
        suspectSince.set(owner, now);
        continue;
      }
      if (now - since < options.graceMs) continue;
      try {
        const settled = await settlePendingAsUnknown(
          store,
          entry,
          `server instance ${owner} that sent it stopped before the result came back; the command may or may not have run: read the logical unit before retrying`,
        );
        if (settled === undefined) continue;
        marked.push(entry.idempotencyKey);
        options.log.warn(
          { idempotencyKey: entry.idempotencyKey, owner },
          'journal: pending operation of a dead instance marked UNKNOWN',
        );
      } catch (err) {
        options.log.error(
          { err, idempotencyKey: entry.idempotencyKey },
          'journal: settling a dead instance entry failed',
        );
      }
    }
    for (const owner of suspectSince.keys()) if (!seenOwners.has(owner)) suspectSince.delete(owner);
    return marked;
  };
}
