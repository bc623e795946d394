import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { ServerError, Status } from 'nice-grpc-common';
import { Command, PrinCommand } from '../gen/prfleet/v1/agent.js';
import type { Precondition } from '../gen/prfleet/v1/control.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import { Outcome, outcomeToJSON, PrinAction } from '../gen/prfleet/v1/scsi.js';
import { checkSupported } from '../common/capabilities.js';
import { dryRunResult } from '../common/result.js';
import { ErrorReason, failedPrecondition, invalidArgument, quoteInput } from '../common/errors.js';
import { formatKey } from '../scsi/keys.js';
import { onAbort } from './abort-listeners.js';
import type { AgentRegistry } from './agent-registry.js';
import { commandBudgetMs, type BudgetPolicy } from './deadline.js';
import {
  ANONYMOUS,
  checkReason,
  createProutRecorder,
  createWriteTracker,
  type ProutRecorder,
  type WriteTracker,
} from './history.js';
import type { CommandJournal, JournalRequest } from './journal.js';
import {
  encodeOrReject,
  fingerprintOf,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  type CommandSpec,
} from './requests.js';
import { createLuSerializer, type LuSerializer } from './lu-serializer.js';
import type { CommandRouter } from './router.js';
import { resolveTarget, type ResolvedTarget } from './targets.js';

/** Prefix of the idempotency key the server assigns to a PROUT sent without one. */
export const ASSIGNED_KEY_PREFIX = 'prfleet-assigned:';

/** Dependencies of {@link createCommandExecutor}. */
export interface CommandExecutorDeps {
  /** Agents and inventories (target resolution, capabilities). */
  readonly registry: AgentRegistry;
  /** Where commands go. */
  readonly router: CommandRouter;
  /** Idempotency journal for PROUTs with a key. */
  readonly journal: CommandJournal;
  /** Budget defaults. */
  readonly budget: BudgetPolicy;
  /** Logger. */
  readonly log: Logger;
  /** Appends every PROUT sent to the history. @default records nothing */
  readonly recorder?: ProutRecorder | undefined;
  /** Turns per LU, shared with the fleet engine. @default a private one */
  readonly luSerializer?: LuSerializer | undefined;
  /** Tracks journal writes still in progress (shutdown waits for them). @default a private tracker */
  readonly writes?: WriteTracker | undefined;
}

/** The caller's cancellation and deadline for one command. */
export interface ExecuteOptions {
  /** Aborts when the caller cancels (or its deadline passes). */
  readonly signal: AbortSignal;
  /** Caller's absolute deadline (epoch ms), if any. */
  readonly deadlineMs?: number;
  /** Who asks (recorded in the PROUT history). @default 'anonymous' */
  readonly actor?: string;
}

/** Runs ControlService commands: validate → resolve → capability check → journal → precondition → dispatch. */
export interface CommandExecutor {
  /**
   * Runs `spec` and resolves with its CommandResult (device refusals and UNKNOWN included). Throws
   * RichServerError for INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, RESOURCE_EXHAUSTED,
   * DEADLINE_EXCEEDED; rejects with the signal's reason when the caller goes away.
   */
  execute(spec: CommandSpec, options: ExecuteOptions): Promise<CommandResult>;
}

/** Creates the executor shared by the unary RPCs and CommandSession. */
export function createCommandExecutor(deps: CommandExecutorDeps): CommandExecutor {
  const { registry, router, journal, log } = deps;
  const recorder = deps.recorder ?? createProutRecorder(undefined, log);
  const writes = deps.writes ?? createWriteTracker();

  /**
   * Dispatches a PROUT and, once its result is known (also when it comes after the caller gave up), completes
   * the idempotency key and appends the history entry. The caller's result waits for both writes, so a repeat
   * or a ListHistory right after it sees them; a failed write is logged and never replaces the result.
   */
  async function dispatchProut(
    target: ResolvedTarget,
    command: Command,
    spec: CommandSpec,
    options: ExecuteOptions,
    timeoutMs: number,
    idempotencyKey?: string,
  ): Promise<CommandResult> {
    const reason = spec.prout?.reason;
    const context = {
      actor: options.actor ?? ANONYMOUS,
      luId: target.luId,
      ...(reason === undefined ? {} : { reason }),
    };
    let recorded: Promise<unknown> | undefined;
    const result = await router.dispatch(target.agentId, command, {
      signal: options.signal,
      timeoutMs,
      luId: target.luId,
      onResult: (settled) => {
        const completion =
          idempotencyKey === undefined
            ? undefined
            : journal
                .complete(idempotencyKey, settled)
                .catch((e: unknown) =>
                  log.error({ err: e, idempotencyKey }, 'journal complete failed'),
                );
        recorded = writes.track(
          Promise.all([completion, recorder.record(command, settled, context)]),
        );
      },
    });
    await recorded;
    return result;
  }

  // PROUTs to one LU run one at a time, each with its precondition read (see LuSerializer).
  const lus = deps.luSerializer ?? createLuSerializer();

  const budgetMs = (spec: CommandSpec, options: ExecuteOptions) =>
    commandBudgetMs(
      spec.commandTimeout,
      options.deadlineMs === undefined ? undefined : options.deadlineMs - Date.now(),
      deps.budget,
    );

  async function checkPrecondition(
    target: ResolvedTarget,
    precondition: Precondition,
    spec: CommandSpec,
    options: ExecuteOptions,
  ): Promise<void> {
    const wantHolder = precondition.expectedHolderKey !== undefined;
    // READ RESERVATION carries PRgeneration too, so one read covers both checks; READ KEYS when only the
    // generation matters (every SPC-3+ device supports it).
    const action = wantHolder
      ? PrinAction.PRIN_ACTION_READ_RESERVATION
      : PrinAction.PRIN_ACTION_READ_KEYS;
    const read = Command.fromPartial({
      path: target.path.path,
      kind: { $case: 'prin', value: PrinCommand.fromPartial({ action }) },
    });
    const unsupported = checkSupported(target.path.capabilities, read);
    if (unsupported !== undefined) {
      throw failedPrecondition(ErrorReason.UNSUPPORTED_BY_DEVICE, {
        type: 'CAPABILITY',
        subject: `logical-units/${target.luId}`,
        description: `cannot check the precondition: ${unsupported}`,
      });
    }
    const result = await router.dispatch(target.agentId, read, {
      signal: options.signal,
      timeoutMs: budgetMs(spec, options),
      luId: target.luId,
    });
    const subject = `logical-units/${target.luId}`;
    const data = result.data;
    if (result.outcome !== Outcome.OUTCOME_GOOD || data === undefined) {
      throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
        type: 'PRECONDITION',
        subject,
        description: `could not check the precondition: the read answered ${outcomeToJSON(result.outcome)}${
          result.message === '' ? '' : ` (${result.message})`
        }; nothing was sent`,
      });
    }
    let generation: number;
    let holder: { reserved: boolean; key: bigint } | undefined;
    if (data.$case === 'readReservation') {
      generation = data.value.generation;
      holder = { reserved: data.value.reserved, key: data.value.key };
    } else if (data.$case === 'readKeys') {
      generation = data.value.generation;
    } else {
      throw new Error(`precondition read returned ${data.$case} data`);
    }
    const mismatches: string[] = [];
    if (
      precondition.expectedGeneration !== undefined &&
      generation !== precondition.expectedGeneration
    ) {
      mismatches.push(`PRgeneration is ${generation}, expected ${precondition.expectedGeneration}`);
    }
    const expectedHolder = precondition.expectedHolderKey;
    if (expectedHolder !== undefined && holder !== undefined) {
      if (expectedHolder === 0n && holder.reserved) {
        mismatches.push(
          `the LU is reserved (holder ${formatKey(holder.key)}), expected no reservation`,
        );
      } else if (expectedHolder !== 0n && (!holder.reserved || holder.key !== expectedHolder)) {
        mismatches.push(
          holder.reserved
            ? `the holder is ${formatKey(holder.key)}, expected ${formatKey(expectedHolder)}`
            : `the LU is not reserved, expected holder ${formatKey(expectedHolder)}`,
        );
      }
    }
    if (mismatches.length > 0) {
      throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
        type: 'PRECONDITION',
        subject,
        description: `precondition failed: ${mismatches.join('; ')}; nothing was sent`,
      });
    }
  }

  async function runProutWithKey(
    key: string,
    target: ResolvedTarget,
    command: Command,
    spec: CommandSpec,
    options: ExecuteOptions,
  ): Promise<CommandResult> {
    const reason = spec.prout?.reason;
    const request: JournalRequest = {
      agentId: target.agentId,
      path: command.path,
      fingerprint: fingerprintOf(target.agentId, command),
      record: {
        command: Command.toJSON(command),
        actor: options.actor ?? ANONYMOUS,
        luId: target.luId,
        ...(reason === undefined || reason === '' ? {} : { reason }),
      },
    };
    // Loop: a first attempt that is abandoned (never sent) lets a waiting repeat claim the key.
    for (;;) {
      const begun = await journal.begin(key, request);
      if (begun.kind === 'started') break;
      const entry = begun.entry;
      if (entry.request.fingerprint !== request.fingerprint) {
        throw invalidArgument(
          'options.idempotency_key',
          `${quoteInput(key)} was already used for a different command (agent ${entry.request.agentId}, path ${entry.request.path})`,
        );
      }
      if (entry.state === 'completed') {
        log.info(
          { idempotencyKey: key, commandId: entry.result.commandId },
          'idempotent repeat: recorded result returned',
        );
        return entry.result;
      }
      log.info({ idempotencyKey: key }, 'idempotent repeat: waiting for the first attempt');
      const result = await journal.wait(key, options.signal);
      if (result !== undefined) return result;
    }
    let dispatched = false;
    try {
      if (spec.prout?.precondition !== undefined) {
        await checkPrecondition(target, spec.prout.precondition, spec, options);
      }
      const timeoutMs = budgetMs(spec, options);
      options.signal.throwIfAborted();
      const pending = dispatchProut(target, command, spec, options, timeoutMs, key);
      // dispatch checks synchronously; once it returned a promise without throwing, the command was queued
      // unless the promise rejects with a pre-send ServerError (handled below).
      dispatched = true;
      return await pending;
    } catch (e) {
      // Never sent (validation, offline, busy, precondition) → the key is free again. After sending, only the
      // result (or UNKNOWN) completes it, even when the caller went away.
      const neverSent = !dispatched || (e instanceof ServerError && !options.signal.aborted);
      if (neverSent) await journal.abandon(key);
      throw e;
    }
  }

  return {
    async execute(spec, options) {
      const target = resolveTarget(registry, spec.target, spec.mode);
      // The spec's command is complete (built with fromPartial): a shallow copy with the path, no deep copy.
      const command: Command = { ...spec.command, path: target.path.path };
      const encoded = encodeOrReject(spec, command);
      const unsupported = checkSupported(target.path.capabilities, command);
      if (unsupported !== undefined) {
        throw failedPrecondition(ErrorReason.UNSUPPORTED_BY_DEVICE, {
          type: 'CAPABILITY',
          subject: `logical-units/${target.luId}`,
          description: `${unsupported}; nothing was sent`,
        });
      }
      checkReason(spec.prout?.reason);
      const callerKey = spec.prout?.idempotencyKey ?? '';
      if (Buffer.byteLength(callerKey) > MAX_IDEMPOTENCY_KEY_LENGTH) {
        throw invalidArgument(
          'options.idempotency_key',
          `longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} bytes`,
        );
      }
      const timeoutMs = budgetMs(spec, options); // validates command_timeout and the deadline up front
      if (spec.prout?.dryRun === true) {
        const result = dryRunResult(
          command,
          { agentId: target.agentId, path: target.path.path, luId: target.luId },
          {
            ...encoded,
            timeoutMs,
          },
        );
        log.info(
          { agentId: target.agentId, path: command.path, luId: target.luId, cdb: result.cdb },
          'dry run',
        );
        return result;
      }
      if (spec.mode === 'prout') {
        // Every PROUT is journaled before it is sent. Without the caller's key it gets a server-assigned one
        // (returned in the result), so a server that dies mid-command still leaves a pending entry that
        // recovery settles as UNKNOWN with a history entry: none is ever lost without a record.
        const key = callerKey === '' ? `${ASSIGNED_KEY_PREFIX}${randomUUID()}` : callerKey;
        return lus.run(target.luId, () =>
          runProutWithKey(key, target, { ...command, idempotencyKey: key }, spec, options),
        );
      }
      if (spec.prout?.precondition !== undefined) {
        await checkPrecondition(target, spec.prout.precondition, spec, options);
      }
      return router.dispatch(target.agentId, command, {
        signal: options.signal,
        timeoutMs: budgetMs(spec, options),
        luId: target.luId,
      });
    },
  };
}

/**
 * A signal of one command's own that aborts when `signal` does, or with ServerError(DEADLINE_EXCEEDED) at
 * `deadlineMs` (so the agent is sent Cancel even if the transport's own deadline handling is late). Call
 * `dispose()` when done. Its own, so that what listens per command (journal waits, the Redis router) listens
 * to it and not to the call's signal, which a CommandSession shares among all its commands (more than ten
 * listeners on one signal print MaxListenersExceededWarning); it listens to `signal` through onAbort, O(1).
 */
export function deadlineSignal(
  signal: AbortSignal,
  deadlineMs: number | undefined,
): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  if (signal.aborted) controller.abort(signal.reason);
  const stopListening = onAbort(signal, () => controller.abort(signal.reason));
  const timer =
    deadlineMs === undefined
      ? undefined
      : setTimeout(
          () =>
            controller.abort(
              new ServerError(
                Status.DEADLINE_EXCEEDED,
                'deadline exceeded while waiting for the agent; cancel sent, the result will still be recorded',
              ),
            ),
          Math.max(0, deadlineMs - Date.now()),
        );
  timer?.unref();
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      stopListening();
    },
  };
}
