import type { Command } from '../../gen/prfleet/v1/agent.js';
import type { Precondition } from '../../gen/prfleet/v1/control.js';
import type { CommandResult, DeviceCapabilities } from '../../gen/prfleet/v1/scsi.js';
import type { HistoryEntryInput } from '../store/index.js';

/** Where a command goes: the agent and path it is sent through, and the LU behind that path. */
export interface CommandTarget {
  readonly agentId: string;
  readonly path: string;
  readonly luId: string;
  /** The path's capabilities, as its agent reported them (checked before anything is sent). */
  readonly capabilities?: DeviceCapabilities | undefined;
}

/**
 * Writes a PROUT's outcome: the journal completion of its idempotency key and its history entry, in one write
 * (one transaction on a durable store), so no crash point leaves one without the other. `history` is undefined
 * when the command never reached the device's queue (nothing to put in the history).
 */
export type Settle = (
  result: CommandResult,
  history: HistoryEntryInput | undefined,
) => Promise<void>;

/** One command as the pipeline runs it. Built once where the request enters (ControlService, fleet engine). */
export interface CommandInput {
  readonly target: CommandTarget;
  /** The command, complete, with `path` = target.path (and idempotencyKey for a PROUT). */
  readonly command: Command;
  /** The authenticated principal (history, journal, logs). */
  readonly actor: string;
  /** Why (ProutOptions.reason, or the fleet operation's), kept in the history. */
  readonly reason?: string | undefined;
  /** Expected PRgeneration and holder, checked by a read in the same LU turn as the PROUT. */
  readonly precondition?: Precondition | undefined;
  /** Device timeout asked for (ms), before the caller's deadline trims it. */
  readonly timeoutMs: number;
  /**
   * Who journals the PROUT: `pipeline` (its key is journaled, repeats answered, UNKNOWN reconciled here:
   * ControlService) or `caller` (the caller began an entry and passes `settle`: the fleet engine's attempts).
   */
  readonly journal: 'pipeline' | 'caller';
  /**
   * The journal key (the caller's key scoped to its principal); required for a PROUT. It is also the key the
   * agent sees, so one principal's key never collides with another's at the agent either.
   */
  readonly journalKey?: string | undefined;
  /** The idempotency key as the caller gave it (or the server assigned it): what history and answers show. */
  readonly callerKey?: string | undefined;
  /** Set by whoever journals: writes the outcome (see {@link Settle}). */
  readonly settle?: Settle | undefined;
  /** Called once the command is handed to the router: from then on it may run, so the key is never freed. */
  readonly onSend?: (() => void) | undefined;
  /** Called with the final result, also when it comes after the caller stopped waiting. */
  readonly onResult?: ((result: CommandResult) => void) | undefined;
}

/** The caller's cancellation and deadline: one form from the request's entry to the router. */
export interface RunOptions {
  /** Aborts when the caller cancels or its deadline passes; the fleet engine sends PROUTs without one. */
  readonly signal?: AbortSignal | undefined;
  /** The caller's absolute deadline (epoch ms), if any. */
  readonly deadline?: number | undefined;
}

/** PR state read through a path: what a precondition and a reconciliation compare. */
export interface ReservationState {
  readonly generation: number;
  readonly reserved: boolean;
  /** Holder key (0 for all-registrants types). */
  readonly key: bigint;
  readonly type: number;
}

/** How a repeat of an UNKNOWN PROUT was settled by reading the LU (see reconcile.ts). */
export type ReconcileVerdict = 'applied' | 'not-applied' | 'other';

/** What the pipeline answers. */
export interface CommandOutput {
  /** The device's answer (refusals and UNKNOWN included), or the recorded one for a repeat. */
  readonly result: CommandResult;
  /** The state the precondition read saw just before the PROUT (when one was checked). */
  readonly before?: ReservationState;
  /** Set when this answer settles an earlier UNKNOWN. */
  readonly verdict?: ReconcileVerdict;
}

/**
 * Sends one read-only command (PRIN, TEST UNIT READY, READ ELEMENT STATUS, …) through a path and resolves with its
 * result: what audits, the observation and the web view use. A PROUT is refused (it must take {@link Next}'s
 * journal, turn and history); router errors (offline, busy, draining) are thrown as by dispatch.
 */
export type SendRead = (
  agentId: string,
  command: Command,
  options: {
    readonly timeoutMs: number;
    readonly luId: string;
    readonly signal?: AbortSignal | undefined;
  },
) => Promise<CommandResult>;

/** The rest of the pipeline. */
export type Next = (input: CommandInput, options: RunOptions) => Promise<CommandOutput>;

/** One concern around dispatch; calls `next` to go on, or answers without it. */
export type Interceptor = (
  input: CommandInput,
  options: RunOptions,
  next: Next,
) => Promise<CommandOutput>;

/** Chains `interceptors` (first outermost) in front of `last`. */
export function compose(interceptors: readonly Interceptor[], last: Next): Next {
  return interceptors.reduceRight<Next>(
    (next, interceptor) => (input, options) => interceptor(input, options, next),
    last,
  );
}
