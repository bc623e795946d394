import type { Logger } from 'pino';
import { Command } from '../gen/prfleet/v1/agent.js';
import { CommandResult, Outcome } from '../gen/prfleet/v1/scsi.js';
import { describeStore, storeOptionsOf, type StoreConfig } from './config.js';
import { MAX_COMMAND_TIMEOUT_MS } from './deadline.js';
import { PlanStep } from '../gen/prfleet/v1/fleet.js';
import { historyInputOf } from './history.js';
import type { PendingRecord } from './journal.js';
import {
  JournalStateError,
  MigrationError,
  NotFoundError,
  openStore,
  StoreLockedError,
  type JsonValue,
  type HistoryEntryInput,
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

/** What a journal request holds for its history entry: ControlService's record, or a fleet step. */
interface JournaledRequest {
  readonly agentId?: unknown;
  readonly path?: unknown;
  readonly record?: PendingRecord;
  readonly kind?: unknown;
  readonly operationId?: unknown;
  readonly step?: unknown;
  readonly actor?: unknown;
}

/**
 * The history entry of a journaled PROUT, rebuilt from its journal entry (the pending record written before it
 * was sent) and `result`; undefined when the entry holds no command (nothing to record).
 */
export function historyOfJournal(
  idempotencyKey: string,
  request: JournaledRequest,
  result: CommandResult,
): HistoryEntryInput | undefined {
  const record = request.record;
  if (record !== undefined) {
    const command = Command.fromJSON(record.command);
    return historyInputOf(
      command,
      {
        ...result,
        agentId: typeof request.agentId === 'string' ? request.agentId : result.agentId,
        path: command.path,
        luId: record.luId,
        commandId: result.commandId || command.commandId,
      },
      {
        actor: record.actor,
        luId: record.luId,
        ...(record.reason === undefined ? {} : { reason: record.reason }),
      },
    );
  }
  if (request.kind !== 'fleet-step') return undefined;
  const step = PlanStep.fromJSON(request.step);
  if (step.prout === undefined) return undefined;
  const command = Command.fromPartial({
    path: step.path,
    idempotencyKey,
    kind: { $case: 'prout', value: step.prout },
  });
  return historyInputOf(
    command,
    { ...result, agentId: step.agentId, path: step.path, luId: step.luId, idempotencyKey },
    {
      actor: typeof request.actor === 'string' ? request.actor : 'fleet',
      luId: step.luId,
      reason: `fleet rollout ${String(request.operationId)}`,
    },
  );
}

/**
 * Appends the history entries missing for PROUTs the journal records as sent (left by an older server, or by a
 * completion whose history could not be written). Run at start after pending entries are settled, and by a
 * running server after such a completion (commands/history-healer.ts); returns how many it appended.
 */
export async function recordMissingHistory(store: Store, log: Logger): Promise<number> {
  let appended = 0;
  for (const op of await store.history.unrecorded(10_000)) {
    const json = op.result as { result?: unknown; outcome?: unknown } | null;
    // Fleet attempts keep the device's result under `result` and their verdict name under `outcome`.
    const fleet = (op.request as JournaledRequest).kind === 'fleet-step';
    const result = CommandResult.fromJSON(fleet ? (json?.result ?? {}) : (json ?? {}));
    const input = historyOfJournal(op.idempotencyKey, op.request as JournaledRequest, result);
    if (input === undefined) continue;
    const outcome =
      fleet && typeof json?.outcome === 'string' && json.outcome !== ''
        ? json.outcome
        : input.outcome;
    // Another server closing the same gap may have appended it meanwhile.
    if ((await store.history.appendMissing({ ...input, outcome, at: op.createdAt })) === undefined)
      continue;
    appended += 1;
    log.warn(
      { idempotencyKey: op.idempotencyKey, state: op.state, outcome },
      'history: appended the missing entry of a journaled PROUT',
    );
  }
  if (appended > 0) log.info({ appended }, 'history: missing entries recorded');
  return appended;
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
): Promise<OperationEntry | undefined> {
  const request = entry.request as JournaledRequest;
  const result = CommandResult.fromPartial({
    outcome: Outcome.OUTCOME_UNKNOWN,
    agentId: typeof request.agentId === 'string' ? request.agentId : '',
    path: typeof request.path === 'string' ? request.path : '',
    commandId: entry.commandId ?? '',
    idempotencyKey: entry.idempotencyKey,
    message,
  });
  const history = historyOfJournal(entry.idempotencyKey, request, result);
  let settled: OperationEntry;
  try {
    // The UNKNOWN and its history entry in one transaction (see docs/store.md).
    settled = await store.journal.markUnknown(
      entry.idempotencyKey,
      CommandResult.toJSON(result) as JsonValue,
      history,
    );
  } catch (error) {
    // Completed or purged between the listing and now: someone else settled it, which is fine.
    if (error instanceof NotFoundError || error instanceof JournalStateError) return undefined;
    throw error;
  }
  return settled;
}
