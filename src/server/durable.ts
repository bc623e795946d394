import type { Logger } from 'pino';
import { Command } from '../gen/prfleet/v1/agent.js';
import { CommandResult, Outcome } from '../gen/prfleet/v1/scsi.js';
import { describeStore, storeOptionsOf, type StoreConfig } from './config.js';
import { MAX_COMMAND_TIMEOUT_MS } from './deadline.js';
import { createProutRecorder } from './history.js';
import type { PendingRecord } from './journal.js';
import {
  JournalStateError,
  MigrationError,
  NotFoundError,
  openStore,
  StoreLockedError,
  type JsonValue,
  type OperationEntry,
  type Store,
} from './store/index.js';

/** The store could not be opened; the message says what to do. The server must not start without it. */
export class StoreOpenError extends Error {
  override name = 'StoreOpenError';
}

/**
 * Opens the configured store (undefined for `memory`) and logs where it is and how long opening took.
 * Throws StoreOpenError with advice: a locked data directory, a schema newer than this code, or an
 * unreachable PostgreSQL.
 */
export async function openConfiguredStore(
  config: StoreConfig,
  log: Logger,
): Promise<Store | undefined> {
  if (config.kind === 'memory') {
    log.warn(
      { store: describeStore(config) },
      'store: memory (PRFLEET_STORE=memory): idempotency keys are forgotten on restart and no PROUT history is kept; for tests and benchmarks only',
    );
    return undefined;
  }
  log.info({ store: describeStore(config) }, 'opening store');
  let store: Store;
  try {
    store = await openStore({
      ...storeOptionsOf(config),
      onIdleError: (error) =>
        log.error(
          { err: error },
          'store: a PostgreSQL connection failed (it is replaced; requests on it failed UNAVAILABLE)',
        ),
    });
  } catch (error) {
    throw new StoreOpenError(storeOpenAdvice(config, error), { cause: error });
  }
  log.info(
    {
      store: describeStore(config),
      location: store.location,
      schemaVersion: store.schemaVersion,
      ms: store.openMs,
    },
    'store open',
  );
  return store;
}

function storeOpenAdvice(config: Exclude<StoreConfig, { kind: 'memory' }>, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const where = describeStore(config);
  if (error instanceof StoreLockedError) {
    return (
      `cannot open the store (${where}): ${message}. ` +
      'Only one prfleet-server may use a data directory: stop the other server, or give this one its own ' +
      'PRFLEET_DATA_DIR; to run several instances, share PostgreSQL (DATABASE_URL).'
    );
  }
  if (error instanceof MigrationError) {
    return `cannot open the store (${where}): ${message}. Run a prfleet-server at least as new as the one that wrote this database.`;
  }
  return config.kind === 'postgres'
    ? `cannot open the store (${where}): ${message}. Check DATABASE_URL and that PostgreSQL is reachable.`
    : `cannot open the store (${where}): ${message}. Check that PRFLEET_DATA_DIR is writable.`;
}

/** Options for {@link recoverPendingOperations}. */
export interface RecoveryOptions {
  /** This instance's id: its own pending entries are from a previous life (the id is reused on restart). */
  readonly instanceId: string;
  /**
   * True when no other server can use the store (PGlite's directory lock): every pending entry is then left
   * over from a crash, whoever owned it.
   */
  readonly exclusive: boolean;
  /** Pending entries of other owners untouched for longer than this are orphans too. */
  readonly staleAfterMs: number;
  /** Logger. */
  readonly log: Logger;
  /** Clock. @default Date.now */
  readonly now?: () => number;
}

/**
 * How long a journal entry can honestly stay pending: a precondition read and the PROUT itself, each at most
 * the longest command timeout plus the result slack, plus a minute for the database round trips.
 */
export function maxPendingMs(resultSlackMs: number): number {
  return 2 * (MAX_COMMAND_TIMEOUT_MS + resultSlackMs) + 60_000;
}

/**
 * Marks the journal entries a crashed server left pending as UNKNOWN (the PROUT may or may not have run), so a
 * repeat with the key gets an answer instead of waiting forever. Own entries (same instance id) and, with an
 * exclusive store, every pending entry; with a shared store also other owners' entries older than
 * `staleAfterMs`. Returns the entries marked.
 */
export async function recoverPendingOperations(
  store: Store,
  options: RecoveryOptions,
): Promise<OperationEntry[]> {
  const { log, instanceId } = options;
  const now = options.now?.() ?? Date.now();
  const found = new Map<string, { entry: OperationEntry; why: string }>();
  const own = await store.journal.listPending(options.exclusive ? {} : { owner: instanceId });
  for (const entry of own) {
    found.set(entry.idempotencyKey, {
      entry,
      why:
        entry.owner === instanceId
          ? 'left pending by this instance before a restart'
          : 'left pending by a previous server on this data directory',
    });
  }
  if (!options.exclusive) {
    for (const entry of await store.journal.listPending({
      before: new Date(now - options.staleAfterMs),
    })) {
      if (!found.has(entry.idempotencyKey)) {
        found.set(entry.idempotencyKey, {
          entry,
          why: `pending for more than ${options.staleAfterMs} ms (its server is gone)`,
        });
      }
    }
  }
  const marked: OperationEntry[] = [];
  for (const { entry, why } of found.values()) {
    const settled = await settlePendingAsUnknown(
      store,
      entry,
      `the server stopped before the result came back (${why}); the command may or may not have run: read the logical unit before retrying`,
      log,
    );
    if (settled === undefined) continue;
    marked.push(settled);
    const request = entry.request as { agentId?: unknown; path?: unknown };
    log.warn(
      {
        idempotencyKey: entry.idempotencyKey,
        owner: entry.owner,
        agentId: request.agentId,
        path: request.path,
        since: entry.createdAt,
        why,
      },
      'journal: pending operation marked UNKNOWN',
    );
  }
  log.info(
    { marked: marked.length, instanceId, exclusive: options.exclusive },
    'journal: recovery done',
  );
  return marked;
}

/**
 * Settles a journal entry left pending by a server that died as UNKNOWN (the PROUT may or may not have run)
 * and appends its history entry from the context journaled with it, so nothing sent is without a record.
 * Returns undefined when someone else settled it first (then they wrote the history too).
 */
export async function settlePendingAsUnknown(
  store: Store,
  entry: OperationEntry,
  message: string,
  log: Logger,
): Promise<OperationEntry | undefined> {
  const request = entry.request as { agentId?: unknown; path?: unknown; record?: PendingRecord };
  const result = CommandResult.fromPartial({
    outcome: Outcome.OUTCOME_UNKNOWN,
    agentId: typeof request.agentId === 'string' ? request.agentId : '',
    path: typeof request.path === 'string' ? request.path : '',
    commandId: entry.commandId ?? '',
    idempotencyKey: entry.idempotencyKey,
    message,
  });
  let settled: OperationEntry;
  try {
    settled = await store.journal.markUnknown(
      entry.idempotencyKey,
      CommandResult.toJSON(result) as JsonValue,
    );
  } catch (error) {
    // Completed or purged between the listing and now: someone else settled it, which is fine.
    if (error instanceof NotFoundError || error instanceof JournalStateError) return undefined;
    throw error;
  }
  const record = request.record;
  if (record !== undefined) {
    const command = Command.fromJSON(record.command);
    await createProutRecorder(store.history, log).record(
      command,
      { ...result, commandId: result.commandId || command.commandId },
      {
        actor: record.actor,
        luId: record.luId,
        ...(record.reason === undefined ? {} : { reason: record.reason }),
      },
    );
  }
  return settled;
}
