import type { Logger } from 'pino';
import { isProut } from '../../common/command.js';
import { systemClock, type Clock } from '../../common/clock.js';
import { checkSupported } from '../../common/capabilities.js';
import { ErrorReason, failedPrecondition, invalidArgument } from '../../common/errors.js';
import { CommandResult, Outcome } from '../../gen/prfleet/v1/scsi.js';
import { deviceBudgetMs } from '../deadline.js';
import { createWriteTracker, type WriteTracker } from '../history.js';
import type { CommandJournal } from '../journal.js';
import { createLuSerializer, type LuSerializer } from '../lu-serializer.js';
import type { CommandRouter, DispatchOptions } from '../router.js';
import { checkHistoryEntry, StoreInputError } from '../store/index.js';
import { createJournalStage } from './journal-stage.js';
import { checkPrecondition } from './precondition.js';
import { historyEntryOf, settleWithRetry } from './record.js';
import {
  compose,
  type CommandInput,
  type CommandOutput,
  type Interceptor,
  type Next,
  type RunOptions,
  type SendRead,
  type Settle,
} from './types.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Dependencies of {@link createCommandPipeline}. */
export interface CommandPipelineDeps {
  /** Where commands go (in-process or Redis). */
  readonly router: CommandRouter;
  /** Idempotency journal of ControlService PROUTs (`journal: 'pipeline'` inputs). */
  readonly journal: CommandJournal;
  /** Kept back from the caller's deadline so the answer reaches it in time. */
  readonly marginMs: number;
  /** Logger. */
  readonly log: Logger;
  /** Turns per LU. @default a private one */
  readonly luSerializer?: LuSerializer | undefined;
  /** Tracks outcome writes in progress (shutdown waits for them). @default a private tracker */
  readonly writes?: WriteTracker | undefined;
  /** Told when a PROUT's journal entry was completed without its history entry (the store refused it). */
  readonly onHistoryGap?: (() => void) | undefined;
  /** Reads the time left before the caller's deadline. @default systemClock */
  readonly clock?: Clock | undefined;
}

/** The one path every command takes to a device: see {@link createCommandPipeline}. */
export interface CommandPipeline {
  /**
   * Runs one command: capability check → idempotency journal (repeats answered, UNKNOWN reconciled) → the LU's
   * turn → precondition read → outcome record (journal + history in one write) → dispatch. Resolves with the
   * device's answer (refusals and UNKNOWN included); throws RichServerError when nothing was sent
   * (FAILED_PRECONDITION, UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, INVALID_ARGUMENT for a reused key),
   * or the signal's reason when the caller goes away.
   */
  run(input: CommandInput, options: RunOptions): Promise<CommandOutput>;
  /** The last stage alone (reads that need neither journal nor turn: reconciliation, the fleet's audit). */
  readonly dispatch: Next;
  /** Reads for audits, the observation and the web view; refuses PROUTs (see {@link SendRead}). */
  readonly read: SendRead;
}

/** Request fields of the history entry's fields (what a caller can change when one is refused). */
const HISTORY_FIELDS: Readonly<Record<string, string>> = {
  path: 'target.path',
  luId: 'target.lu_id',
  agentId: 'target.agent_id',
  reason: 'options.reason',
};

/**
 * Throws INVALID_ARGUMENT when the PROUT's history entry could not be stored (a device path or LU id an agent
 * reported longer than the history keeps): checked before anything is sent, so no PROUT runs without its record.
 */
export function checkRecordable(input: CommandInput): void {
  if (!isProut(input.command)) return;
  const probe = CommandResult.fromPartial({ outcome: Outcome.OUTCOME_UNKNOWN, commandId: 'probe' });
  try {
    checkHistoryEntry(historyEntryOf(input, probe));
  } catch (error) {
    if (!(error instanceof StoreInputError)) throw error;
    throw invalidArgument(
      HISTORY_FIELDS[error.field] ?? error.field,
      `the PROUT history cannot record this command: the store refuses its ${error.field} (too long or malformed); nothing was sent`,
    );
  }
}

/** Throws FAILED_PRECONDITION {UNSUPPORTED_BY_DEVICE} when the path's device profile lacks the command. */
export function checkCapability(input: CommandInput): void {
  const unsupported = checkSupported(input.target.capabilities, input.command);
  if (unsupported !== undefined) {
    throw failedPrecondition(ErrorReason.UNSUPPORTED_BY_DEVICE, {
      type: 'CAPABILITY',
      subject: `logical-units/${input.target.luId}`,
      description: `${unsupported}; nothing was sent`,
    });
  }
}

/** Reads through `router` (see {@link SendRead}): the pipeline's `read`, and the observation's and web view's. */
export function readerOf(router: CommandRouter): SendRead {
  return (agentId, command, options) => {
    // A programming error, not a caller's: every PROUT entry point builds a CommandInput for `run`.
    if (isProut(command) || command.kind?.$case === 'luReset')
      throw new Error('a PROUT or reset must go through the pipeline, not a read');
    return router.dispatch(agentId, command, {
      timeoutMs: options.timeoutMs,
      luId: options.luId,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  };
}

/** Builds the pipeline shared by ControlService (unary and CommandSession) and the fleet engine. */
export function createCommandPipeline(deps: CommandPipelineDeps): CommandPipeline {
  const { router, log } = deps;
  const lus = deps.luSerializer ?? createLuSerializer();
  const writes = deps.writes ?? createWriteTracker();
  const clock = deps.clock ?? systemClock;

  /** The one place the caller's deadline becomes the device's timeout (the router sends it as Duration). */
  const dispatch: Next = async (input, options) => {
    const timeoutMs = deviceBudgetMs(input.timeoutMs, options.deadline, deps.marginMs, clock);
    options.signal?.throwIfAborted();
    // Optional fields assigned rather than spread in: spreads cost every command an object each.
    const dispatchOptions: Mutable<DispatchOptions> = {
      timeoutMs,
      luId: input.target.luId,
      actor: input.actor,
    };
    if (options.signal !== undefined) dispatchOptions.signal = options.signal;
    if (input.onResult !== undefined) dispatchOptions.onResult = input.onResult;
    const pending = router.dispatch(input.target.agentId, input.command, dispatchOptions);
    // dispatch refuses with a ServerError before sending (offline, busy, draining); from here it may run.
    input.onSend?.();
    return { result: await pending };
  };

  const capability: Interceptor = (input, options, next) => {
    checkCapability(input);
    checkRecordable(input);
    return next(input, options);
  };

  // PROUTs to one LU run one at a time, each with its precondition read (see LuSerializer); a logical unit
  // reset takes a turn too, so it never lands between a PROUT's read and the PROUT.
  const luTurn: Interceptor = (input, options, next) =>
    isProut(input.command) || input.command.kind?.$case === 'luReset'
      ? lus.run(input.target.luId, () => next(input, options))
      : next(input, options);

  // Stages a command does not concern hand it on as it is, without an async frame of their own: a READ KEYS
  // passes every stage but dispatch.
  const precondition: Interceptor = (input, options, next) =>
    input.precondition === undefined
      ? next(input, options)
      : withPrecondition(input, input.precondition, options, next);
  const withPrecondition = async (
    input: CommandInput,
    expected: NonNullable<CommandInput['precondition']>,
    options: RunOptions,
    next: Next,
  ): Promise<CommandOutput> => {
    const before = await checkPrecondition(input, expected, options, dispatch);
    const output = await next(input, options);
    return before === undefined ? output : { ...output, before };
  };

  /**
   * Writes the outcome once the result is known, also when it comes after the caller gave up. The caller's
   * answer waits for the write, so a repeat or a ListHistory right after it sees it.
   */
  const record: Interceptor = (input, options, next) =>
    input.settle === undefined || !isProut(input.command)
      ? next(input, options)
      : recorded(input, input.settle, options, next);
  const recorded = async (
    input: CommandInput,
    settle: Settle,
    options: RunOptions,
    next: Next,
  ): Promise<CommandOutput> => {
    let written: Promise<void> | undefined;
    const onResult = (result: Parameters<Settle>[0]) => {
      input.onResult?.(result);
      written = writes.track(
        settleWithRetry(settle, result, historyEntryOf(input, result), log, deps.onHistoryGap),
      );
    };
    const output = await next({ ...input, onResult }, options);
    await written;
    return output;
  };

  const journal = createJournalStage({ journal: deps.journal, log, dispatch });
  const run = compose([capability, journal, luTurn, precondition, record], dispatch);
  return { run, dispatch, read: readerOf(router) };
}
