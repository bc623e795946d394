import type { Logger } from 'pino';
import { Status, type CallContext } from 'nice-grpc-common';
import { ErrorInfo, PreconditionFailure, RichServerError } from 'nice-grpc-error-details';
import type { Command } from '../gen/prfleet/v1/agent.js';
import {
  HistoryEntry as HistoryEntryProto,
  HistoryProblem as HistoryProblemProto,
  type ListHistoryRequest,
  type ListHistoryResponse,
  type VerifyHistoryResponse,
} from '../gen/prfleet/v1/control.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import {
  Outcome,
  outcomeFromJSON,
  outcomeToJSON,
  PrType,
  ProutAction,
  proutActionFromJSON,
  proutActionToJSON,
} from '../gen/prfleet/v1/scsi.js';
import {
  ERROR_DOMAIN,
  invalidArgument,
  notFound,
  quoteInput,
  shownInput,
} from '../common/errors.js';
import { principalOf } from './auth/middleware.js';
import { DEFAULT_PAGE_BYTES, fitBudget } from './pages.js';
import type {
  HistoryEntry,
  HistoryEntryInput,
  HistoryProblem,
  PRoutHistory,
} from './store/index.js';

/** Who is asking, for the history: the principal's name, or 'anonymous' when the server runs without auth. */
export type PrincipalOf = (ctx: CallContext) => string;

/** The default {@link PrincipalOf}: the auth middleware's principal, else 'anonymous'. */
export const defaultPrincipalOf: PrincipalOf = (ctx) => principalOf(ctx)?.name ?? ANONYMOUS;

/** The actor recorded when nobody authenticated. */
export const ANONYMOUS = 'anonymous';

/**
 * The actor recorded for an action: always the authenticated principal; a name the client supplies (revoked_by,
 * updated_by) is kept after it as whom it was done for, never instead of it.
 */
export function actorOnBehalfOf(principal: string, named: string): string {
  return named === '' || named === principal ? principal : `${principal} (on behalf of ${named})`;
}

/** Longest ProutOptions.reason accepted (what the history keeps). */
export const MAX_REASON_LENGTH = 2000;

/** ErrorInfo.reason of FAILED_PRECONDITION from ListHistory/VerifyHistory on a server without a durable store. */
export const HISTORY_DISABLED = 'HISTORY_DISABLED';

/** Who sent a PROUT and why: what the caller adds to the device's answer in the history. */
export interface ProutContext {
  /** Principal (see {@link PrincipalOf}). */
  readonly actor: string;
  /** ProutOptions.reason, when given. */
  readonly reason?: string;
  /** Logical unit of the target (used when the result leaves it empty). */
  readonly luId: string;
}

/** Outcomes that carry a SAM status byte from the device. */
const DEVICE_ANSWERS = new Set<Outcome>([
  Outcome.OUTCOME_GOOD,
  Outcome.OUTCOME_RESERVATION_CONFLICT,
  Outcome.OUTCOME_CHECK_CONDITION,
  Outcome.OUTCOME_BUSY,
  Outcome.OUTCOME_TASK_SET_FULL,
  Outcome.OUTCOME_TASK_ABORTED,
  Outcome.OUTCOME_OTHER_STATUS,
]);

/** The history entry of a PROUT `command` sent and its `result` (UNKNOWN included). */
export function historyInputOf(
  command: Command,
  result: CommandResult,
  context: ProutContext,
): HistoryEntryInput {
  if (command.kind?.$case !== 'prout')
    throw new Error(`history records PROUTs only, not ${command.kind?.$case ?? 'empty'}`);
  const prout = command.kind.value;
  const sense = result.sense?.raw;
  const idempotencyKey = result.idempotencyKey || command.idempotencyKey;
  const commandId = result.commandId || command.commandId;
  return {
    at: new Date(),
    actor: context.actor,
    agentId: result.agentId,
    path: result.path || command.path,
    luId: result.luId || context.luId,
    action: proutActionToJSON(prout.action),
    reservationKey: prout.reservationKey,
    serviceActionKey: prout.serviceActionKey,
    ...(prout.type === PrType.PR_TYPE_UNSPECIFIED ? {} : { prType: prout.type }),
    outcome: outcomeToJSON(result.outcome),
    ...(DEVICE_ANSWERS.has(result.outcome) ? { status: result.status } : {}),
    ...(sense !== undefined && sense.length > 0
      ? { sense: Buffer.from(sense).toString('hex') }
      : {}),
    ...(commandId === '' ? {} : { commandId }),
    ...(idempotencyKey === '' ? {} : { idempotencyKey }),
    ...(context.reason === undefined || context.reason === '' ? {} : { reason: context.reason }),
  };
}

/** Appends PROUT results to the history; never throws, and lets shutdown wait for appends in progress. */
export interface ProutRecorder {
  /**
   * Appends the entry of `command` + `result`. Resolves when written, or when writing failed: a failure is
   * logged at error level (with the whole entry, so it is not lost) and never reaches the caller, whose
   * result stands.
   */
  record(command: Command, result: CommandResult, context: ProutContext): Promise<void>;
  /** Resolves once every record() begun so far has finished. */
  idle(): Promise<void>;
}

/** A recorder over `history`, or one that records nothing (memory store) when `history` is undefined. */
export function createProutRecorder(history: PRoutHistory | undefined, log: Logger): ProutRecorder {
  const inProgress = new Set<Promise<void>>();
  return {
    record(command, result, context) {
      if (history === undefined) return Promise.resolve();
      let input: HistoryEntryInput;
      try {
        input = historyInputOf(command, result, context);
      } catch (error) {
        log.error({ err: error, commandId: command.commandId }, 'history: cannot build the entry');
        return Promise.resolve();
      }
      const write = history.append(input).then(
        (entry) => {
          log.debug(
            { seq: entry.seq, commandId: entry.commandId, outcome: entry.outcome },
            'history: appended',
          );
        },
        (error: unknown) => {
          log.error(
            {
              err: error,
              entry: {
                ...input,
                reservationKey: keyText(input.reservationKey),
                serviceActionKey: keyText(input.serviceActionKey ?? 0n),
              },
            },
            'history: append failed; the result was still returned to the caller',
          );
        },
      );
      inProgress.add(write);
      void write.finally(() => inProgress.delete(write));
      return write;
    },
    async idle() {
      while (inProgress.size > 0) await Promise.all([...inProgress]);
    },
  };
}

function keyText(key: bigint): string {
  return `0x${key.toString(16).padStart(16, '0')}`;
}

/** Tracks fire-and-forget store writes (journal completions) so shutdown can wait for them before closing. */
export interface WriteTracker {
  /** Adds `write`; returns it. */
  track<T>(write: Promise<T>): Promise<T>;
  /** Resolves once every tracked write has settled. */
  idle(): Promise<void>;
}

/** Creates a {@link WriteTracker}. */
export function createWriteTracker(): WriteTracker {
  const inProgress = new Set<Promise<unknown>>();
  return {
    track(write) {
      const settled = write.then(
        () => undefined,
        () => undefined,
      );
      inProgress.add(settled);
      void settled.finally(() => inProgress.delete(settled));
      return write;
    },
    async idle() {
      while (inProgress.size > 0) await Promise.all([...inProgress]);
    },
  };
}

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

function historyDisabled(): RichServerError {
  return new RichServerError(
    Status.FAILED_PRECONDITION,
    'this server keeps no PROUT history (PRFLEET_STORE=memory): run it without PRFLEET_STORE=memory (the embedded store is the default), with PRFLEET_DATA_DIR or DATABASE_URL',
    [
      ErrorInfo.fromPartial({ reason: HISTORY_DISABLED, domain: ERROR_DOMAIN, metadata: {} }),
      PreconditionFailure.fromPartial({
        violations: [
          {
            type: 'STORE',
            subject: 'history',
            description: 'the server runs with the memory store',
          },
        ],
      }),
    ],
  );
}

/** Reads a stored action name back as the enum (also tolerates `register`-style names written by other code). */
function actionOf(text: string): ProutAction {
  const direct = proutActionFromJSON(text);
  if (direct !== ProutAction.UNRECOGNIZED) return direct;
  const guessed = proutActionFromJSON(
    `PROUT_ACTION_${text.toUpperCase().replace(/[^A-Z]+/g, '_')}`,
  );
  return guessed === ProutAction.UNRECOGNIZED ? ProutAction.PROUT_ACTION_UNSPECIFIED : guessed;
}

function outcomeOfText(text: string): Outcome {
  const outcome = outcomeFromJSON(text);
  return outcome === Outcome.UNRECOGNIZED ? Outcome.OUTCOME_UNSPECIFIED : outcome;
}

/** A stored history entry as proto. */
export function historyEntryToProto(entry: HistoryEntry): HistoryEntryProto {
  return HistoryEntryProto.fromPartial({
    seq: BigInt(entry.seq),
    time: entry.at,
    actor: entry.actor,
    agentId: entry.agentId,
    path: entry.path,
    luId: entry.luId,
    action: actionOf(entry.action),
    actionName: entry.action,
    reservationKey: entry.reservationKey,
    serviceActionKey: entry.serviceActionKey,
    ...(entry.prType === null ? {} : { type: entry.prType }),
    outcome: outcomeOfText(entry.outcome),
    ...(entry.status === null ? {} : { status: entry.status }),
    sense: entry.sense === null ? Buffer.alloc(0) : Buffer.from(entry.sense, 'hex'),
    commandId: entry.commandId ?? '',
    idempotencyKey: entry.idempotencyKey ?? '',
    reason: entry.reason ?? '',
    prevHash: entry.prevHash,
    hash: entry.hash,
  });
}

const PROBLEMS: Record<HistoryProblem, HistoryProblemProto> = {
  edited: HistoryProblemProto.HISTORY_PROBLEM_EDITED,
  removed: HistoryProblemProto.HISTORY_PROBLEM_REMOVED,
  reordered: HistoryProblemProto.HISTORY_PROBLEM_REORDERED,
  truncated: HistoryProblemProto.HISTORY_PROBLEM_TRUNCATED,
};

/** Whether an agent or LU id names something this server knows (a filter naming nothing is NOT_FOUND). */
export interface KnownNames {
  agent(id: string): boolean;
  lu(id: string): boolean;
}

/** ListHistory and VerifyHistory of ControlService, over the store's history (undefined: memory store). */
export function createHistoryHandlers(
  history: PRoutHistory | undefined,
  log: Logger,
  knows: KnownNames = { agent: () => true, lu: () => true },
  /** A page stops before its entries pass this many bytes (an entry may carry a 4 KiB path and a 2 KB reason). */
  pageBytes: number = DEFAULT_PAGE_BYTES,
) {
  return {
    async listHistory(request: ListHistoryRequest): Promise<ListHistoryResponse> {
      if (history === undefined) throw historyDisabled();
      return listHistory(history, request, knows, pageBytes);
    },
    async verifyHistory(): Promise<VerifyHistoryResponse> {
      if (history === undefined) throw historyDisabled();
      return verifyHistory(history, log);
    },
  };
}

async function listHistory(
  history: PRoutHistory,
  request: ListHistoryRequest,
  knows: KnownNames,
  pageBytes: number,
): Promise<ListHistoryResponse> {
  const pageSize = request.pageSize === 0 ? DEFAULT_PAGE_SIZE : request.pageSize;
  if (pageSize > MAX_PAGE_SIZE)
    throw invalidArgument('page_size', `${pageSize} is more than ${MAX_PAGE_SIZE}`);
  const afterSeq = afterSeqOf(request.pageToken);
  // One extra entry tells whether another page follows.
  const entries = await history.list({
    afterSeq,
    limit: pageSize + 1,
    ...(request.luId === '' ? {} : { luId: request.luId }),
    ...(request.agentId === '' ? {} : { agentId: request.agentId }),
  });
  if (entries.length === 0 && afterSeq === 0) checkFilterNamesSomething(request, knows);
  const counted = entries.slice(0, pageSize).map(historyEntryToProto);
  const page = fitBudget(counted, pageBytes, (e) => HistoryEntryProto.encode(e).finish().length);
  const last = page.at(-1);
  const more = entries.length > page.length;
  return {
    entries: page,
    nextPageToken: more && last !== undefined ? String(last.seq) : '',
  };
}

/** The sequence number a ListHistory page token carries (0: from the start). */
function afterSeqOf(pageToken: string): number {
  if (pageToken === '') return 0;
  if (!/^[0-9]{1,15}$/.test(pageToken)) {
    throw invalidArgument(
      'page_token',
      `${quoteInput(pageToken)} is not a token ListHistory returned`,
    );
  }
  return Number(pageToken);
}

/** A filter that matches no entry and names no known agent or LU is a typo, not an empty history. */
function checkFilterNamesSomething(request: ListHistoryRequest, knows: KnownNames): void {
  if (request.agentId !== '' && !knows.agent(request.agentId))
    throw notFound(
      'agent',
      request.agentId,
      `agent_id: no history entry and no known agent ${shownInput(request.agentId)}`,
    );
  if (request.luId !== '' && !knows.lu(request.luId))
    throw notFound(
      'logical unit',
      request.luId,
      `lu_id: no history entry and no agent reports logical unit ${shownInput(request.luId)}`,
    );
}

async function verifyHistory(history: PRoutHistory, log: Logger): Promise<VerifyHistoryResponse> {
  const started = performance.now();
  const verdict = await history.verify();
  const ms = Math.round(performance.now() - started);
  if (!verdict.ok) {
    log.error(
      { problem: verdict.problem, seq: verdict.seq, checked: verdict.checked, ms },
      `history verification failed: ${verdict.message}`,
    );
    return {
      ok: false,
      checked: BigInt(verdict.checked),
      headHash: '',
      fault: {
        problem: PROBLEMS[verdict.problem],
        seq: BigInt(verdict.seq),
        message: verdict.message,
      },
    };
  }
  // The chain holds; every PROUT the journal records as sent must also be in it.
  const [gap] = await history.unrecorded(1);
  if (gap !== undefined) {
    const message = `the journal records PROUT ${gap.idempotencyKey} (${gap.state}, ${gap.createdAt.toISOString()}) as sent, but the history has no entry for it`;
    log.error(
      { idempotencyKey: gap.idempotencyKey, ms },
      `history verification failed: ${message}`,
    );
    return {
      ok: false,
      checked: BigInt(verdict.count),
      headHash: '',
      fault: { problem: HistoryProblemProto.HISTORY_PROBLEM_UNRECORDED, seq: 0n, message },
    };
  }
  log.info({ count: verdict.count, headHash: verdict.headHash, ms }, 'history verified');
  return {
    ok: true,
    checked: BigInt(verdict.count),
    headHash: verdict.headHash,
    fault: undefined,
  };
}

/** Rejects a reason the history could not keep (INVALID_ARGUMENT naming options.reason). */
export function checkReason(reason: string | undefined): void {
  if (reason !== undefined && reason.length > MAX_REASON_LENGTH) {
    throw invalidArgument(
      'options.reason',
      `${reason.length} characters; at most ${MAX_REASON_LENGTH}`,
    );
  }
}
