import { isAbortError } from 'abort-controller-x';
import { RichServerError, PreconditionFailure } from 'nice-grpc-error-details';
import { Command, ProutCommand } from '../../../gen/prfleet/v1/agent.js';
import { Precondition } from '../../../gen/prfleet/v1/control.js';
import {
  PlanStep,
  RolloutEvent,
  RolloutPhase,
  StepEvent,
  StepState,
} from '../../../gen/prfleet/v1/fleet.js';
import type { CommandResult } from '../../../gen/prfleet/v1/scsi.js';
import { Outcome, outcomeToJSON, PrinAction, ProutAction } from '../../../gen/prfleet/v1/scsi.js';
import { ErrorReason, summarizeRpcError } from '../../../common/errors.js';
import type { CommandPipeline } from '../../commands/pipeline.js';
import { PRECONDITION_UNREADABLE } from '../../commands/precondition.js';
import type { CommandInput, ReservationState } from '../../commands/types.js';
import type { JsonValue } from '../../store/index.js';
import type { FleetDeps } from '../deps.js';
import type { CommandLimiter } from '../limiter.js';
import { pathOnline, readThrough, type ReadContext } from '../observe.js';
import { isAllRegistrants } from '../plan-model.js';
import type { SelectedUnit } from '../selection.js';
import { attemptBase, attemptOf, resultJson, settleStep } from './attempt-journal.js';
import { reconcile } from './reconcile.js';
import {
  HISTORY_REASON_MAX,
  type PreconditionCheck,
  type RolloutInput,
  type RolloutSettings,
  type StepVerdict,
} from './types.js';

/** The precondition a next step expects after this READ RESERVATION (no holder for all-registrants types). */
export function expectationOf(r: ReservationState): Precondition {
  return Precondition.fromPartial({
    expectedGeneration: r.generation,
    ...(r.reserved && isAllRegistrants(r.type)
      ? {}
      : { expectedHolderKey: r.reserved ? r.key : 0n }),
  });
}

/** True when the pipeline refused because the precondition's read failed (not because it differed). */
function preconditionUnreadable(error: unknown): boolean {
  return (
    error instanceof RichServerError &&
    error.extra.some(
      (d) =>
        d.$type === PreconditionFailure.$type && d.violations[0]?.type === PRECONDITION_UNREADABLE,
    )
  );
}

/** What sending one PROUT through the pipeline came to. */
export type ProutOutcome =
  | { kind: 'result'; result: CommandResult; before?: ReservationState }
  | { kind: 'not-sent'; message: string }
  | { kind: 'precondition'; check: PreconditionCheck };

/**
 * Sends the steps of one rollout, each at most once: the journaled attempt, the PROUT through the command
 * pipeline, the step events, and the reads that check and reconcile a step.
 */
export class StepSender {
  private readonly s: RolloutSettings;

  constructor(
    readonly deps: FleetDeps,
    readonly input: RolloutInput,
    private readonly limiter: CommandLimiter,
    private readonly commands: CommandPipeline,
    private readonly emit: (event: RolloutEvent) => void,
  ) {
    this.s = input.settings;
  }

  readContext(): ReadContext {
    return { read: this.deps.commands.read, limiter: this.limiter, timeoutMs: this.s.timeoutMs };
  }

  stepEvent(
    step: PlanStep,
    state: StepState,
    phase: RolloutPhase,
    fields: { result?: CommandResult; message?: string; idempotencyKey?: string } = {},
  ): void {
    this.emit(
      RolloutEvent.fromPartial({
        event: {
          $case: 'step',
          value: StepEvent.fromPartial({
            step,
            state,
            phase,
            ...(fields.result === undefined ? {} : { result: fields.result }),
            message: fields.message ?? '',
            idempotencyKey: fields.idempotencyKey ?? '',
          }),
        },
      }),
    );
  }

  /**
   * The step through the command pipeline: its precondition read and the PROUT in one turn of the LU (no other
   * PROUT through this server lands between them), the outcome journaled with its history entry.
   */
  async checkAndSend(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
  ): Promise<{ check: PreconditionCheck; verdict?: StepVerdict }> {
    const onPath = unit.paths.some(
      (p) => p.agent.hello.agentId === step.agentId && p.path.path === step.path,
    );
    if (!onPath)
      return {
        check: {
          error: `${step.agentId}:${step.path} is not a path to ${unit.luId}`,
          mismatch: '',
        },
      };
    const sent = await this.sendStep(unit, step, phase);
    return 'check' in sent ? { check: sent.check } : { check: sent.ok, verdict: sent.verdict };
  }

  /** READ RESERVATION through the step's own path: the state a rollback step expects next. */
  async readPost(unit: SelectedUnit, step: PlanStep): Promise<Precondition | undefined> {
    const fleetPath = unit.paths.find(
      (p) => p.agent.hello.agentId === step.agentId && p.path.path === step.path,
    );
    if (fleetPath === undefined) return undefined;
    const read = await readThrough(
      fleetPath,
      PrinAction.PRIN_ACTION_READ_RESERVATION,
      this.readContext(),
      unit.luId,
    );
    if (read.error !== undefined || read.result.data?.$case !== 'readReservation') return undefined;
    return expectationOf(read.result.data.value);
  }

  /** Reads keys and reservation through any online path (the step's first), for reconciliation. */
  async readState(unit: SelectedUnit, step: PlanStep) {
    const ordered = [...unit.paths].sort(
      (a, b) =>
        Number(b.agent.hello.agentId === step.agentId && b.path.path === step.path) -
        Number(a.agent.hello.agentId === step.agentId && a.path.path === step.path),
    );
    for (const p of ordered) {
      if (!pathOnline(p)) continue;
      const ctx = this.readContext();
      const [rr, rk] = await Promise.all([
        readThrough(p, PrinAction.PRIN_ACTION_READ_RESERVATION, ctx, unit.luId),
        readThrough(p, PrinAction.PRIN_ACTION_READ_KEYS, ctx, unit.luId),
      ]);
      if (rr.result?.data?.$case === 'readReservation' && rk.result?.data?.$case === 'readKeys') {
        const r = rr.result.data.value;
        return {
          generation: Math.max(r.generation, rk.result.data.value.generation),
          keys: rk.result.data.value.keys,
          reserved: r.reserved,
          holderKey: r.key,
          type: r.type,
        };
      }
    }
    return undefined;
  }

  /** The history reason of `step`: the rollout's, with a takeover's evidence on its PREEMPTs. */
  reasonOf(step: PlanStep): string {
    const base = this.s.reason || `fleet rollout ${this.s.operationId}`;
    const action = step.prout?.action;
    const preempt =
      action === ProutAction.PROUT_ACTION_PREEMPT ||
      action === ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT;
    if (!preempt || this.input.preemptRecord === undefined) return base;
    const text = `${base} || ${this.input.preemptRecord}`;
    return text.length <= HISTORY_REASON_MAX ? text : `${text.slice(0, HISTORY_REASON_MAX - 1)}…`;
  }

  /** The pipeline input of a step's PROUT under journal key `key`. */
  stepInput(step: PlanStep, key: string, precondition: boolean): CommandInput {
    const path = this.input.units
      .find((u) => u.luId === step.luId)
      ?.paths.find((p) => p.agent.hello.agentId === step.agentId && p.path.path === step.path);
    return {
      target: {
        agentId: step.agentId,
        path: step.path,
        luId: step.luId,
        capabilities: path?.path.capabilities,
      },
      command: Command.fromPartial({
        path: step.path,
        idempotencyKey: key,
        kind: { $case: 'prout', value: ProutCommand.fromPartial(step.prout ?? {}) },
      }),
      actor: this.s.actor,
      reason: this.reasonOf(step),
      precondition: precondition ? step.precondition : undefined,
      timeoutMs: this.s.timeoutMs,
      journal: 'caller',
      journalKey: key,
    };
  }

  /**
   * Earlier attempts of `step` in the journal: a verdict when they settle it (ran, refused, or reconciled now),
   * else the number of the next attempt.
   */
  async priorAttempts(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
  ): Promise<{ verdict?: StepVerdict; attempt: number }> {
    const journal = this.deps.store.journal;
    const base = attemptBase(this.s.operationId, step, phase);
    let attempt = 1;
    for (; ; attempt++) {
      const entry = await journal.get(`${base}/${attempt}`);
      if (entry === undefined) break;
      const record = attemptOf(entry);
      if (entry.state === 'done') {
        if (record?.applied) {
          this.stepEvent(step, StepState.STEP_STATE_ALREADY_DONE, phase, {
            idempotencyKey: entry.idempotencyKey,
            message: `journal: already ran with outcome ${record.outcome}; not sent again`,
          });
          return { verdict: 'succeeded', attempt };
        }
        if (record?.sent && record.outcome !== '') {
          // The device answered and refused: sending it again would get the same answer.
          this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
            idempotencyKey: entry.idempotencyKey,
            message: `journal: already ran with outcome ${record.outcome}`,
          });
          return { verdict: 'failed', attempt };
        }
        continue; // never reached the device: a new attempt is safe
      }
      // pending or unknown: an earlier run was cut mid-command. Settle it before anything else.
      this.stepEvent(step, StepState.STEP_STATE_UNKNOWN, phase, {
        idempotencyKey: entry.idempotencyKey,
        message: `journal: attempt ${attempt} is ${entry.state}; reconciling`,
      });
      return { verdict: await reconcile(this, unit, step, phase, entry.idempotencyKey), attempt };
    }
    return { attempt };
  }

  /**
   * Sends one step at most once (see priorAttempts): begins a journaled attempt, then runs it through the
   * pipeline (precondition, LU turn, outcome record, dispatch). A precondition that does not hold frees the
   * attempt and is reported as the check.
   */
  async sendStep(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
  ): Promise<{ check: PreconditionCheck } | { ok: PreconditionCheck; verdict: StepVerdict }> {
    const journal = this.deps.store.journal;
    const held: PreconditionCheck = { mismatch: '' };
    const prior = await this.priorAttempts(unit, step, phase);
    if (prior.verdict !== undefined) return { ok: held, verdict: prior.verdict };
    const key = `${attemptBase(this.s.operationId, step, phase)}/${prior.attempt}`;
    const begun = await journal.begin({
      idempotencyKey: key,
      request: {
        kind: 'fleet-step',
        operationId: this.s.operationId,
        phase: phase === RolloutPhase.ROLLOUT_PHASE_ROLLBACK ? 'rollback' : 'forward',
        step: PlanStep.toJSON(step) as JsonValue,
        actor: this.s.actor,
      },
      owner: this.deps.instanceId ?? 'fleet',
    });
    if (begun.kind !== 'started') {
      // Another server (or a concurrent repeat) claimed the same attempt: never race it with a second send.
      this.stepEvent(step, StepState.STEP_STATE_UNKNOWN, phase, {
        idempotencyKey: key,
        message: 'journal: this attempt was claimed concurrently; reconciling',
      });
      return { ok: held, verdict: await reconcile(this, unit, step, phase, key) };
    }
    const outcome = await this.dispatchProut(step, key, phase, { precondition: true });
    if (outcome.kind === 'precondition') {
      await journal.abandon(key);
      return { check: outcome.check };
    }
    if (outcome.kind === 'not-sent') {
      await journal.complete(
        key,
        resultJson(undefined, {
          sent: false,
          outcome: '',
          applied: false,
          message: outcome.message,
        }),
      );
      this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
        idempotencyKey: key,
        message: `not sent: ${outcome.message}`,
      });
      return { ok: held, verdict: 'failed' };
    }
    const { result } = outcome;
    const ok: PreconditionCheck =
      outcome.before === undefined ? held : { mismatch: '', read: expectationOf(outcome.before) };
    return { ok, verdict: await this.resultVerdict(unit, step, phase, key, result) };
  }

  /** The verdict of a step the device answered: an UNKNOWN outcome is reconciled by reading the LU. */
  private async resultVerdict(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
    key: string,
    result: CommandResult,
  ): Promise<StepVerdict> {
    const name = outcomeToJSON(result.outcome);
    const fields = { result, idempotencyKey: key };
    switch (result.outcome) {
      case Outcome.OUTCOME_GOOD:
        this.stepEvent(step, StepState.STEP_STATE_SUCCEEDED, phase, fields);
        return 'succeeded';
      case Outcome.OUTCOME_REFUSED:
      case Outcome.OUTCOME_OS_ERROR:
        // Nothing reached the device.
        this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
          ...fields,
          message: `not run: ${result.message}`,
        });
        return 'failed';
      case Outcome.OUTCOME_UNKNOWN:
      case Outcome.OUTCOME_TIMEOUT:
      case Outcome.OUTCOME_TRANSPORT_ERROR:
        this.stepEvent(step, StepState.STEP_STATE_UNKNOWN, phase, {
          ...fields,
          message: `${name}: ${result.message || 'the effect is unknown'}; reconciling by reading the LU`,
        });
        return reconcile(this, unit, step, phase, key);
      default:
        this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
          ...fields,
          message: `the device answered ${name}${result.sense ? ` (${result.sense.description})` : ''}`,
        });
        return 'failed';
    }
  }

  /**
   * Runs the step's PROUT through the pipeline without the caller's signal: once sent, its result is awaited,
   * never abandoned. The outcome is journaled (with its history entry) by settleStep before this returns.
   */
  async dispatchProut(
    step: PlanStep,
    key: string,
    phase: RolloutPhase,
    how: { precondition: boolean; note?: string },
  ): Promise<
    | { kind: 'result'; result: CommandResult; before?: ReservationState }
    | { kind: 'not-sent'; message: string }
    | { kind: 'precondition'; check: PreconditionCheck }
  > {
    const input: CommandInput = {
      ...this.stepInput(step, key, how.precondition),
      settle: settleStep(this.deps.store.journal, key, how.note),
      ...(how.precondition
        ? {
            onSend: () =>
              this.stepEvent(step, StepState.STEP_STATE_STARTED, phase, { idempotencyKey: key }),
          }
        : {}),
    };
    try {
      const output = await this.commands.run(input, {});
      return {
        kind: 'result',
        result: output.result,
        ...(output.before === undefined ? {} : { before: output.before }),
      };
    } catch (e) {
      if (isAbortError(e)) throw e;
      const summary = summarizeRpcError(e);
      if (summary === undefined) throw e;
      if (summary.reason === ErrorReason.PRECONDITION_MISMATCH) {
        return {
          kind: 'precondition',
          check: preconditionUnreadable(e)
            ? { error: summary.message, mismatch: '' }
            : { mismatch: summary.message },
        };
      }
      return { kind: 'not-sent', message: `${summary.codeName}: ${summary.message}` };
    }
  }
}
