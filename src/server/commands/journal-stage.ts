import type { Logger } from 'pino';
import { ServerError } from 'nice-grpc-common';
import { Command, PrinCommand } from '../../gen/prfleet/v1/agent.js';
import { CommandResult, Outcome, PrinAction } from '../../gen/prfleet/v1/scsi.js';
import { isProut } from '../../common/command.js';
import { ErrorReason, invalidArgument, quoteInput, unavailable } from '../../common/errors.js';
import type { CommandJournal, JournalEntry, JournalRequest } from '../journal.js';
import { fingerprintOf } from '../requests.js';
import { judgeEffect, type LuPrState } from './reconcile.js';
import { historyEntryOf } from './record.js';
import type {
  CommandInput,
  CommandOutput,
  Interceptor,
  Next,
  RunOptions,
  Settle,
} from './types.js';

/** The agent's answer to a second copy of a key it still holds: the first copy is the one that runs. */
const DUPLICATE_REFUSAL = 'duplicate idempotency key';

/** Runs a store call; a store that cannot answer means nothing was sent: UNAVAILABLE, safe to retry. */
export async function storeCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ServerError) throw error;
    throw unavailable(
      ErrorReason.STORE_UNAVAILABLE,
      `the store could not ${what} (${error instanceof Error ? error.message : String(error)}); nothing was sent`,
    );
  }
}

/** The journal request of a PROUT: where it goes, its fingerprint, and what its history entry needs. */
export function journalRequestOf(input: CommandInput): JournalRequest {
  return {
    agentId: input.target.agentId,
    path: input.command.path,
    fingerprint: fingerprintOf(input.target.agentId, input.command),
    record: {
      command: Command.toJSON(
        input.callerKey === undefined
          ? input.command
          : { ...input.command, idempotencyKey: input.callerKey },
      ),
      actor: input.actor,
      luId: input.target.luId,
      ...(input.reason === undefined || input.reason === '' ? {} : { reason: input.reason }),
    },
  };
}

/** Reads keys and reservation through the command's path (a reconciliation's read). */
async function readLuState(
  input: CommandInput,
  options: RunOptions,
  dispatch: Next,
): Promise<LuPrState | undefined> {
  const read = (action: PrinAction) =>
    dispatch(
      {
        ...input,
        journal: 'caller',
        settle: undefined,
        onSend: undefined,
        onResult: undefined,
        command: Command.fromPartial({
          path: input.target.path,
          kind: { $case: 'prin', value: PrinCommand.fromPartial({ action }) },
        }),
      },
      options,
    );
  const [rk, rr] = await Promise.all([
    read(PrinAction.PRIN_ACTION_READ_KEYS),
    read(PrinAction.PRIN_ACTION_READ_RESERVATION),
  ]);
  const keys = rk.result.data;
  const reservation = rr.result.data;
  if (keys?.$case !== 'readKeys' || reservation?.$case !== 'readReservation') return undefined;
  const r = reservation.value;
  return {
    generation: Math.max(r.generation, keys.value.generation),
    keys: keys.value.keys,
    reserved: r.reserved,
    holderKey: r.key,
    type: r.type,
  };
}

/** Dependencies of {@link createJournalStage}. */
interface JournalStageDeps {
  readonly journal: CommandJournal;
  readonly log: Logger;
  /** The last stage alone (a reconciliation's reads). */
  readonly dispatch: Next;
}

/**
 * The idempotency stage of `journal: 'pipeline'` PROUTs. A new key is journaled before anything is sent (the
 * journal row is the pending history record: command, principal, LU, reason); the outcome completes it together
 * with the history entry. A repeat gets the recorded answer; a repeat of an UNKNOWN reads the LU and settles it
 * (applied → recorded GOOD; not applied → sent again under the same key, which the agent refuses should the
 * first copy still be there; anything else → still UNKNOWN, saying why).
 */
export function createJournalStage(deps: JournalStageDeps): Interceptor {
  return (input, options, next) =>
    input.journal !== 'pipeline' || !isProut(input.command)
      ? next(input, options)
      : journaled(deps, input, options, next);
}

/** A `journal: 'pipeline'` PROUT: answered from its key's record, or journaled and sent. */
async function journaled(
  deps: JournalStageDeps,
  input: CommandInput,
  options: RunOptions,
  next: Next,
): Promise<CommandOutput> {
  const key = input.journalKey;
  if (key === undefined) throw new Error('a journaled PROUT needs its journal key');
  const request = journalRequestOf(input);
  // Loop: a first attempt that is abandoned (never sent) lets a waiting repeat claim the key.
  for (;;) {
    const begun = await storeCall('journal the command', () => deps.journal.begin(key, request));
    if (begun.kind === 'started') break;
    const recorded = await recordedAnswer(deps, input, options, key, request, begun.entry);
    if (recorded === undefined) continue;
    if (recorded.outcome === Outcome.OUTCOME_UNKNOWN)
      return reconcile(deps, input, options, next, key, recorded);
    deps.log.info(
      { idempotencyKey: key, commandId: recorded.commandId },
      'idempotent repeat: recorded result returned',
    );
    return { result: recorded };
  }
  return send(deps, input, options, next, key, true);
}

/**
 * The recorded answer of a key already journaled: refuses a different command under it (INVALID_ARGUMENT),
 * waits for a first attempt still in flight; undefined when that attempt was abandoned (the key is free again).
 */
async function recordedAnswer(
  deps: JournalStageDeps,
  input: CommandInput,
  options: RunOptions,
  key: string,
  request: JournalRequest,
  entry: JournalEntry,
): Promise<CommandResult | undefined> {
  if (entry.request.fingerprint !== request.fingerprint) {
    throw invalidArgument(
      'options.idempotency_key',
      `${quoteInput(input.callerKey ?? input.command.idempotencyKey)} was already used for a different command (agent ${entry.request.agentId}, path ${entry.request.path})`,
    );
  }
  if (entry.state === 'completed') return entry.result;
  deps.log.info({ idempotencyKey: key }, 'idempotent repeat: waiting for the first attempt');
  return deps.journal.wait(key, options.signal);
}

/** Sends the PROUT under `key` (`fresh`: this call journaled it) and completes the key with its outcome. */
async function send(
  deps: JournalStageDeps,
  input: CommandInput,
  options: RunOptions,
  next: Next,
  key: string,
  fresh: boolean,
): Promise<CommandOutput> {
  const { journal } = deps;
  let sent = false;
  const settle: Settle = async (result, history) => {
    // The agent still holds the first copy: this answer says nothing about the device; the entry stays as is.
    if (
      !fresh &&
      result.outcome === Outcome.OUTCOME_REFUSED &&
      result.message.includes(DUPLICATE_REFUSAL)
    )
      return;
    await journal.complete(key, result, history);
  };
  const onSend = () => {
    sent = true;
    input.onSend?.();
  };
  try {
    return await next({ ...input, settle, onSend }, options);
  } catch (e) {
    // Never sent (offline, busy, precondition, deadline) → a new key is free again. After sending, only the
    // result (or UNKNOWN) completes it, even when the caller went away.
    const neverSent = !sent || (e instanceof ServerError && !options.signal?.aborted);
    if (neverSent && fresh) await journal.abandon(key);
    throw e;
  }
}

/** A repeat of an UNKNOWN: reads the LU and settles the key by what it shows (see {@link judgeEffect}). */
async function reconcile(
  deps: JournalStageDeps,
  input: CommandInput,
  options: RunOptions,
  next: Next,
  key: string,
  recorded: CommandResult,
): Promise<CommandOutput> {
  const state = await readLuState(input, options, deps.dispatch);
  const prout = input.command.kind?.$case === 'prout' ? input.command.kind.value : undefined;
  if (state === undefined || prout === undefined) {
    return {
      result: {
        ...recorded,
        message: `${recorded.message}; still UNKNOWN: the LU could not be read`,
      },
    };
  }
  const verdict = judgeEffect(prout, input.precondition?.expectedGeneration, state);
  deps.log.info(
    { idempotencyKey: key, verdict, generation: state.generation },
    'UNKNOWN repeat reconciled',
  );
  if (verdict === 'applied') {
    const result = CommandResult.fromPartial({
      ...recorded,
      outcome: Outcome.OUTCOME_GOOD,
      status: 0,
      message: `reconciled: a read after the UNKNOWN shows the PROUT took effect (PRgeneration ${state.generation})`,
    });
    const history = { ...historyEntryOf(input, result), outcome: 'RECONCILED_APPLIED' };
    await storeCall('record the reconciliation', () => deps.journal.complete(key, result, history));
    return { result, verdict };
  }
  if (verdict === 'not-applied')
    return { ...(await send(deps, input, options, next, key, false)), verdict };
  return {
    result: {
      ...recorded,
      message: `${recorded.message}; a read after it (PRgeneration ${state.generation}) cannot tell whether it ran`,
    },
    verdict,
  };
}
