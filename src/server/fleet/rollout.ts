import { randomUUID } from 'node:crypto';
import { isAbortError } from 'abort-controller-x';
import { Command, ProutCommand } from '../../gen/prfleet/v1/agent.js';
import { Precondition } from '../../gen/prfleet/v1/control.js';
import {
  PlanStep,
  RolloutEvent,
  RolloutPhase,
  RolloutResult,
  StepEvent,
  StepState,
  type Finding,
} from '../../gen/prfleet/v1/fleet.js';
import {
  CommandResult,
  Outcome,
  outcomeToJSON,
  PrinAction,
  ProutAction,
} from '../../gen/prfleet/v1/scsi.js';
import { RichServerError, PreconditionFailure } from 'nice-grpc-error-details';
import { msToDuration } from '../../common/command.js';
import { ErrorReason, summarizeRpcError } from '../../common/errors.js';
import { createCommandPipeline, type CommandPipeline } from '../commands/pipeline.js';
import { PRECONDITION_UNREADABLE } from '../commands/precondition.js';
import { judgeEffect as judgeProutEffect, type LuPrState } from '../commands/reconcile.js';
import { historyEntryOf } from '../commands/record.js';
import type { CommandInput, ReservationState, Settle } from '../commands/types.js';
import { createMemoryJournal } from '../journal.js';
import type { JsonValue, OperationEntry } from '../store/index.js';
import { AsyncQueue } from '../../common/async-queue.js';
import { analyzeUnit, type UnitAnalysis } from './analyze.js';
import type { FleetDeps } from './deps.js';
import type { KeyIndex } from './key-index.js';
import { Semaphore } from '../../common/semaphore.js';
import { CommandLimiter } from './limiter.js';
import {
  observeUnit,
  pathOnline,
  readThrough,
  type LuObservation,
  type ReadContext,
} from './observe.js';
import {
  describeProut,
  inverseOf,
  isAllRegistrants,
  stepIdOf,
  type UnitPlan,
} from './plan-model.js';
import type { SelectedUnit } from './selection.js';
import { delay } from '../../common/delay.js';

/** Guard rails of a rollout, defaults filled in. */
export interface RolloutSettings {
  /** LUs worked on at once. */
  readonly maxConcurrency: number;
  /** Failed steps after which no new step starts. */
  readonly errorThreshold: number;
  /** Undo completed steps when the rollout stops early. */
  readonly rollbackOnAbort: boolean;
  /** Device timeout per command, ms. */
  readonly timeoutMs: number;
  /** Re-plans of one LU after it changed under us. */
  readonly maxReplans: number;
  /** Rollout id (journal keys derive from it). */
  readonly operationId: string;
  /** Why (history). */
  readonly reason: string;
  /** Plan and report only. */
  readonly dryRun: boolean;
  /** Who asked (history actor). */
  readonly actor: string;
  /** Longest wait while reconciling an UNKNOWN outcome, ms. @default timeoutMs */
  readonly reconcileMs?: number;
}

/** What a rollout runs. */
export interface RolloutInput {
  /** LUs in the rollout. */
  readonly units: readonly SelectedUnit[];
  /** Plans one freshly read LU (desired state for Apply, victim keys for Takeover). */
  readonly planner: (obs: LuObservation, analysis: UnitAnalysis) => UnitPlan;
  /** Steps to run first instead of planning (from an earlier Plan), by LU id. */
  readonly givenSteps?: ReadonlyMap<string, readonly PlanStep[]>;
  /** The key registry, loaded. */
  readonly keys: KeyIndex;
  /** Guard rails. */
  readonly settings: RolloutSettings;
  /** Added to the history reason of each PREEMPT (AND ABORT) step: a takeover's verdict and evidence. */
  readonly preemptRecord?: string;
}

/** The history's reason column holds at most this many characters. */
export const HISTORY_REASON_MAX = 2000;

/** Follow-up planning rounds per LU after its steps ran (a step whose effect could not be predicted). */
const MAX_ROUNDS = 4;
/** Pause between reconciliation reads while an agent reconnects, ms. */
const RECONCILE_POLL_MS = 100;

type StepVerdict = 'succeeded' | 'failed' | 'superseded';

/** A step's precondition as checked: unreadable (`error`), differing (`mismatch`), or held (with the state read). */
interface PreconditionCheck {
  readonly error?: string;
  readonly mismatch: string;
  readonly read?: Precondition;
}

/** The precondition a next step expects after this READ RESERVATION (no holder for all-registrants types). */
function expectationOf(r: ReservationState): Precondition {
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

/** The fleet's own pipeline when the server gives none (tests of the engine alone). */
export function pipelineOf(deps: FleetDeps): CommandPipeline {
  return (
    deps.commands ??
    createCommandPipeline({
      router: deps.router,
      // Fleet steps journal themselves ('caller'); this journal is never used.
      journal: createMemoryJournal(),
      marginMs: 0,
      log: deps.log,
      luSerializer: deps.luSerializer,
    })
  );
}

interface Completed {
  readonly step: PlanStep;
  /** Generation and holder right after the step (the next read), the rollback's precondition. */
  post?: Precondition;
}

/** Journal record of one step attempt (the `result` column). */
interface AttemptRecord {
  readonly sent: boolean;
  readonly outcome: string;
  readonly applied: boolean;
  readonly message?: string;
  readonly commandId?: string;
}

/** What a fresh read says about whether `step` took effect since its precondition (see commands/reconcile.ts). */
export function judgeEffect(step: PlanStep, state: LuPrState): 'applied' | 'not-applied' | 'other' {
  if (step.prout === undefined) return 'other';
  return judgeProutEffect(step.prout, step.precondition?.expectedGeneration, state);
}

function resultJson(result: CommandResult | undefined, extra: AttemptRecord): JsonValue {
  return {
    ...extra,
    ...(result === undefined ? {} : { result: CommandResult.toJSON(result) as JsonValue }),
  };
}

function attemptOf(entry: OperationEntry): AttemptRecord | undefined {
  const r = entry.result;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return undefined;
  return r as unknown as AttemptRecord;
}

/**
 * Runs a rollout and streams its events: started, step events, re-plans, finished. LUs run in parallel up to
 * maxConcurrency, the steps of one LU in order. Before each PROUT a READ RESERVATION through the acting path
 * checks the step's precondition; a mismatch sends nothing and re-plans the LU from a fresh read. Each PROUT
 * attempt is journaled under `fleet/<operation>/<step>/<n>` before it is sent; a repeat of the operation finds
 * it and never sends it again. An UNKNOWN outcome is reconciled by reading the LU: applied → done; not applied
 * and unchanged → re-sent with the SAME idempotency key (an agent that already has it refuses the copy); else
 * the LU is re-planned. When failures reach errorThreshold (or the caller cancels), no new step starts and, with
 * rollbackOnAbort, completed steps are undone in reverse order. The caller's signal stops the rollout; PROUTs
 * already sent are awaited, not abandoned.
 */
export function runRollout(
  deps: FleetDeps,
  input: RolloutInput,
  signal: AbortSignal,
): AsyncIterable<RolloutEvent> {
  const events = new AsyncQueue<RolloutEvent>(Number.MAX_SAFE_INTEGER);
  const run = new Rollout(deps, input, signal, (e) => events.push(e));
  run.execute().then(
    () => events.close(),
    (e: unknown) => {
      deps.log.error({ err: e, operationId: input.settings.operationId }, 'rollout failed');
      events.close(e);
    },
  );
  return events;
}

class Rollout {
  private readonly s: RolloutSettings;
  private readonly limiter = new CommandLimiter(64, 4);
  private readonly stop = new AbortController();
  private failures = 0;
  private succeeded = 0;
  private cancelled = 0;
  private replans = 0;
  private rolledBack = 0;
  private abortMessage = '';
  private readonly completed = new Map<string, Completed[]>();
  private readonly started = performance.now();
  private readonly commands: CommandPipeline;

  constructor(
    private readonly deps: FleetDeps,
    private readonly input: RolloutInput,
    private readonly signal: AbortSignal,
    private readonly emit: (event: RolloutEvent) => void,
  ) {
    this.s = input.settings;
    this.commands = pipelineOf(deps);
    if (signal.aborted) this.stop.abort();
    else signal.addEventListener('abort', () => this.halt('the caller cancelled'), { once: true });
  }

  private halt(message: string): void {
    if (this.stop.signal.aborted) return;
    this.abortMessage = message;
    this.stop.abort();
  }

  private readContext(): ReadContext {
    return { router: this.deps.router, limiter: this.limiter, timeoutMs: this.s.timeoutMs };
  }

  private stepEvent(
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

  private async observe(
    unit: SelectedUnit,
  ): Promise<{ obs: LuObservation; analysis: UnitAnalysis }> {
    const obs = await observeUnit(unit, this.readContext());
    return { obs, analysis: analyzeUnit(obs, this.input.keys) };
  }

  async execute(): Promise<void> {
    const { units, givenSteps } = this.input;
    // Initial plans from fresh reads (given steps skip planning but their LUs are still read at each step).
    const plans = new Map<string, PlanStep[]>();
    const blockers: Finding[] = [];
    const gate = new Semaphore(Math.max(1, this.s.maxConcurrency * 4));
    await Promise.all(
      units.map(async (unit) => {
        const given = givenSteps?.get(unit.luId);
        if (given !== undefined) {
          plans.set(unit.luId, [...given]);
          return;
        }
        await gate.acquire();
        try {
          const { obs, analysis } = await this.observe(unit);
          const plan = this.input.planner(obs, analysis);
          plans.set(unit.luId, plan.steps);
          blockers.push(...plan.blockers);
        } finally {
          gate.release();
        }
      }),
    );
    const total = [...plans.values()].reduce((n, s) => n + s.length, 0);
    this.emit(
      RolloutEvent.fromPartial({
        event: {
          $case: 'started',
          value: {
            operationId: this.s.operationId,
            logicalUnits: units.length,
            steps: total,
            blockers,
          },
        },
      }),
    );
    this.deps.log.info(
      {
        operationId: this.s.operationId,
        logicalUnits: units.length,
        steps: total,
        blockers: blockers.length,
        dryRun: this.s.dryRun,
      },
      'rollout started',
    );

    if (this.s.dryRun) {
      for (const unit of units)
        for (const step of plans.get(unit.luId) ?? [])
          this.stepEvent(step, StepState.STEP_STATE_DRY_RUN, RolloutPhase.ROLLOUT_PHASE_FORWARD, {
            message: 'dry run: not sent',
          });
      this.finish(RolloutResult.ROLLOUT_RESULT_DRY_RUN);
      return;
    }

    const lanes = new Semaphore(this.s.maxConcurrency);
    await Promise.all(
      units.map(async (unit) => {
        const steps = plans.get(unit.luId) ?? [];
        if (steps.length === 0) return;
        await lanes.acquire();
        try {
          await this.runUnit(unit, steps);
        } finally {
          lanes.release();
        }
      }),
    );

    const stopped = this.stop.signal.aborted;
    if (stopped && this.s.rollbackOnAbort) await this.rollback();
    const result = !stopped
      ? this.failures === 0
        ? RolloutResult.ROLLOUT_RESULT_SUCCEEDED
        : RolloutResult.ROLLOUT_RESULT_PARTIAL
      : this.signal.aborted
        ? RolloutResult.ROLLOUT_RESULT_CANCELLED
        : RolloutResult.ROLLOUT_RESULT_ABORTED;
    this.finish(result);
  }

  private finish(result: RolloutResult): void {
    const ms = performance.now() - this.started;
    this.deps.log.info(
      {
        operationId: this.s.operationId,
        result,
        succeeded: this.succeeded,
        failed: this.failures,
        rolledBack: this.rolledBack,
        replans: this.replans,
        ms: Math.round(ms),
      },
      'rollout finished',
    );
    this.emit(
      RolloutEvent.fromPartial({
        event: {
          $case: 'finished',
          value: {
            result,
            succeeded: this.succeeded,
            failed: this.failures,
            rolledBack: this.rolledBack,
            cancelled: this.cancelled,
            replans: this.replans,
            duration: msToDuration(ms),
            message: this.abortMessage,
          },
        },
      }),
    );
  }

  private fail(): void {
    this.failures += 1;
    if (this.failures >= this.s.errorThreshold) {
      this.halt(
        `error threshold reached: ${this.failures} failed step${this.failures === 1 ? '' : 's'} (threshold ${this.s.errorThreshold})`,
      );
    }
  }

  private async replan(unit: SelectedUnit, reason: string): Promise<PlanStep[]> {
    this.replans += 1;
    const { obs, analysis } = await this.observe(unit);
    const plan = this.input.planner(obs, analysis);
    this.emit(
      RolloutEvent.fromPartial({
        event: { $case: 'replanned', value: { luId: unit.luId, reason, steps: plan.steps } },
      }),
    );
    this.deps.log.info(
      { operationId: this.s.operationId, luId: unit.luId, reason, steps: plan.steps.length },
      'lu re-planned',
    );
    return plan.steps;
  }

  private async runUnit(unit: SelectedUnit, initial: PlanStep[]): Promise<void> {
    const done: Completed[] = [];
    this.completed.set(unit.luId, done);
    let steps = initial;
    let replansHere = 0;
    for (let round = 0; ; round++) {
      let restart = false;
      for (let k = 0; k < steps.length; k++) {
        const step = steps[k] as PlanStep;
        if (this.stop.signal.aborted) {
          for (const rest of steps.slice(k)) {
            this.cancelled += 1;
            this.stepEvent(
              rest,
              StepState.STEP_STATE_CANCELLED,
              RolloutPhase.ROLLOUT_PHASE_FORWARD,
              { message: `not started: ${this.abortMessage}` },
            );
          }
          return;
        }
        // The journal first: a repeat of this operation must find what it already sent, whatever the LU says now.
        const prior = await this.priorAttempts(unit, step, RolloutPhase.ROLLOUT_PHASE_FORWARD);
        if (prior.verdict !== undefined) {
          if (prior.verdict === 'succeeded') {
            this.succeeded += 1;
            done.push({ step });
            continue;
          }
          if (prior.verdict === 'failed') {
            this.fail();
            return;
          }
          steps = await this.replan(
            unit,
            `step ${step.stepId} was journaled with an unknown outcome and the LU changed`,
          );
          restart = true;
          break;
        }
        const { check, verdict: sent } = await this.checkAndSend(
          unit,
          step,
          RolloutPhase.ROLLOUT_PHASE_FORWARD,
        );
        const last = done[done.length - 1];
        if (last !== undefined && last.post === undefined && check.read !== undefined)
          last.post = check.read;
        if (check.error !== undefined) {
          this.stepEvent(step, StepState.STEP_STATE_FAILED, RolloutPhase.ROLLOUT_PHASE_FORWARD, {
            message: `not sent: ${check.error}`,
          });
          this.fail();
          return;
        }
        if (check.mismatch !== '') {
          this.stepEvent(
            step,
            StepState.STEP_STATE_PRECONDITION_FAILED,
            RolloutPhase.ROLLOUT_PHASE_FORWARD,
            { message: `not sent: the LU changed under us: ${check.mismatch}` },
          );
          if (replansHere >= this.s.maxReplans) {
            this.fail();
            return;
          }
          replansHere += 1;
          steps = await this.replan(
            unit,
            `precondition of step ${step.stepId} failed: ${check.mismatch}`,
          );
          restart = true;
          break;
        }
        const verdict = sent;
        if (verdict === 'succeeded') {
          this.succeeded += 1;
          done.push({ step });
        } else if (verdict === 'failed') {
          this.fail();
          return;
        } else {
          if (replansHere >= this.s.maxReplans) {
            this.fail();
            return;
          }
          replansHere += 1;
          steps = await this.replan(
            unit,
            `step ${step.stepId} had an unknown outcome and the LU changed in other ways`,
          );
          restart = true;
          break;
        }
      }
      if (restart) {
        round -= 1; // a re-plan is not a follow-up round
        if (steps.length > 0) continue;
      }
      // Confirm: read again; the last step's post-state comes from here, and anything left is a follow-up round.
      const { obs, analysis } = await this.observe(unit);
      const last = done[done.length - 1];
      if (last !== undefined && last.post === undefined && obs.state !== undefined) {
        last.post = Precondition.fromPartial({
          expectedGeneration: obs.state.generation,
          ...(obs.state.reserved && isAllRegistrants(obs.state.type)
            ? {}
            : { expectedHolderKey: obs.state.reserved ? obs.state.holderKey : 0n }),
        });
      }
      const next = this.input.planner(obs, analysis).steps;
      if (next.length === 0 || this.stop.signal.aborted) return;
      if (round + 1 >= MAX_ROUNDS) {
        this.deps.log.warn(
          { operationId: this.s.operationId, luId: unit.luId, steps: next.length },
          'lu did not converge',
        );
        return;
      }
      this.emit(
        RolloutEvent.fromPartial({
          event: {
            $case: 'replanned',
            value: {
              luId: unit.luId,
              reason: 'follow-up steps after re-reading the LU',
              steps: next,
            },
          },
        }),
      );
      steps = next;
    }
  }

  /**
   * The step through the command pipeline: its precondition read and the PROUT in one turn of the LU (no other
   * PROUT through this server lands between them), the outcome journaled with its history entry.
   */
  private async checkAndSend(
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
  private async readPost(unit: SelectedUnit, step: PlanStep): Promise<Precondition | undefined> {
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
  private async readState(unit: SelectedUnit, step: PlanStep) {
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
  private reasonOf(step: PlanStep): string {
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
  private stepInput(step: PlanStep, key: string, precondition: boolean): CommandInput {
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
   * How a step attempt's outcome is written: journal record and history entry in one transaction (a result that
   * never reached the device gets no history entry; a duplicate refusal changes nothing, the first copy runs).
   */
  private settleStep(key: string, note?: string): Settle {
    const journal = this.deps.store.journal;
    return async (result, history) => {
      const name = outcomeToJSON(result.outcome);
      const base = {
        outcome: name,
        commandId: result.commandId,
        ...(note ? { message: note } : {}),
      };
      switch (result.outcome) {
        case Outcome.OUTCOME_GOOD:
          await journal.complete(
            key,
            resultJson(result, { ...base, sent: true, applied: true }),
            history,
          );
          return;
        case Outcome.OUTCOME_REFUSED:
        case Outcome.OUTCOME_OS_ERROR:
          if (result.message.includes('duplicate idempotency key')) return;
          await journal.complete(
            key,
            resultJson(result, { ...base, sent: false, applied: false, message: result.message }),
          );
          return;
        case Outcome.OUTCOME_UNKNOWN:
        case Outcome.OUTCOME_TIMEOUT:
        case Outcome.OUTCOME_TRANSPORT_ERROR:
          await journal.markUnknown(
            key,
            resultJson(result, { ...base, sent: true, applied: false, message: result.message }),
            history,
          );
          return;
        default:
          await journal.complete(
            key,
            resultJson(result, { ...base, sent: true, applied: false }),
            history,
          );
      }
    };
  }

  /** Journal key prefix of a step's attempts: `fleet/<operation>/[rollback/]<step id>`. */
  private attemptBase(step: PlanStep, phase: RolloutPhase): string {
    return `fleet/${this.s.operationId}/${phase === RolloutPhase.ROLLOUT_PHASE_ROLLBACK ? 'rollback/' : ''}${step.stepId}`;
  }

  /**
   * Earlier attempts of `step` in the journal: a verdict when they settle it (ran, refused, or reconciled now),
   * else the number of the next attempt.
   */
  private async priorAttempts(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
  ): Promise<{ verdict?: StepVerdict; attempt: number }> {
    const journal = this.deps.store.journal;
    const base = this.attemptBase(step, phase);
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
      return { verdict: await this.reconcile(unit, step, phase, entry.idempotencyKey), attempt };
    }
    return { attempt };
  }

  /**
   * Sends one step at most once (see priorAttempts): begins a journaled attempt, then runs it through the
   * pipeline (precondition, LU turn, outcome record, dispatch). A precondition that does not hold frees the
   * attempt and is reported as the check.
   */
  private async sendStep(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
  ): Promise<{ check: PreconditionCheck } | { ok: PreconditionCheck; verdict: StepVerdict }> {
    const journal = this.deps.store.journal;
    const held: PreconditionCheck = { mismatch: '' };
    const prior = await this.priorAttempts(unit, step, phase);
    if (prior.verdict !== undefined) return { ok: held, verdict: prior.verdict };
    const key = `${this.attemptBase(step, phase)}/${prior.attempt}`;
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
      return { ok: held, verdict: await this.reconcile(unit, step, phase, key) };
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
    const name = outcomeToJSON(result.outcome);
    const fields = { result, idempotencyKey: key };
    switch (result.outcome) {
      case Outcome.OUTCOME_GOOD:
        this.stepEvent(step, StepState.STEP_STATE_SUCCEEDED, phase, fields);
        return { ok, verdict: 'succeeded' };
      case Outcome.OUTCOME_REFUSED:
      case Outcome.OUTCOME_OS_ERROR:
        // Nothing reached the device.
        this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
          ...fields,
          message: `not run: ${result.message}`,
        });
        return { ok, verdict: 'failed' };
      case Outcome.OUTCOME_UNKNOWN:
      case Outcome.OUTCOME_TIMEOUT:
      case Outcome.OUTCOME_TRANSPORT_ERROR:
        this.stepEvent(step, StepState.STEP_STATE_UNKNOWN, phase, {
          ...fields,
          message: `${name}: ${result.message || 'the effect is unknown'}; reconciling by reading the LU`,
        });
        return { ok, verdict: await this.reconcile(unit, step, phase, key) };
      default:
        this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
          ...fields,
          message: `the device answered ${name}${result.sense ? ` (${result.sense.description})` : ''}`,
        });
        return { ok, verdict: 'failed' };
    }
  }

  /**
   * Runs the step's PROUT through the pipeline without the caller's signal: once sent, its result is awaited,
   * never abandoned. The outcome is journaled (with its history entry) by settleStep before this returns.
   */
  private async dispatchProut(
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
      settle: this.settleStep(key, how.note),
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

  /**
   * Settles an UNKNOWN step by reading the LU: applied → done; not applied with the LU unchanged → re-send under
   * the same idempotency key (an agent that already has the first copy refuses the second, so it cannot run
   * twice) and keep reading; anything else → superseded (the LU is re-planned). Gives up after reconcileMs,
   * leaving the journal entry `unknown` for an operator.
   */
  private async reconcile(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
    key: string,
  ): Promise<StepVerdict> {
    const journal = this.deps.store.journal;
    const deadline = Date.now() + (this.s.reconcileMs ?? this.s.timeoutMs);
    let resent = false;
    let lastWhy = 'no path answered';
    while (Date.now() < deadline) {
      const state = await this.readState(unit, step);
      if (state === undefined) {
        lastWhy = 'no online path answered the reconciliation read';
        await delay(RECONCILE_POLL_MS);
        continue;
      }
      const verdict = judgeEffect(step, state);
      if (verdict === 'applied') {
        const history = {
          ...historyEntryOf(this.stepInput(step, key, false), CommandResult.fromPartial({})),
          outcome: 'RECONCILED_APPLIED',
        };
        await journal.complete(
          key,
          resultJson(undefined, {
            sent: true,
            outcome: 'RECONCILED_APPLIED',
            applied: true,
            message: `read generation ${state.generation}`,
          }),
          history,
        );
        this.stepEvent(step, StepState.STEP_STATE_RECONCILED_APPLIED, phase, {
          idempotencyKey: key,
          message: `the LU shows the step took effect (PRgeneration ${state.generation})`,
        });
        return 'succeeded';
      }
      if (verdict === 'other') {
        this.stepEvent(step, StepState.STEP_STATE_RECONCILED_NOT_APPLIED, phase, {
          idempotencyKey: key,
          message: `the LU changed in ways this step does not explain (PRgeneration ${state.generation}); re-planning`,
        });
        return 'superseded';
      }
      if (!resent) {
        const again = await this.dispatchProut(step, key, phase, {
          precondition: false,
          note: 're-sent after reconciliation showed it had not run',
        });
        if (again.kind !== 'result') {
          lastWhy = again.kind === 'not-sent' ? again.message : again.check.mismatch;
          await delay(RECONCILE_POLL_MS);
          continue;
        }
        const r = again.result;
        const name = outcomeToJSON(r.outcome);
        if (r.outcome === Outcome.OUTCOME_GOOD) {
          this.stepEvent(step, StepState.STEP_STATE_SUCCEEDED, phase, {
            result: r,
            idempotencyKey: key,
            message: 're-sent under the same idempotency key after a read showed it had not run',
          });
          return 'succeeded';
        }
        if (
          r.outcome === Outcome.OUTCOME_REFUSED &&
          r.message.includes('duplicate idempotency key')
        ) {
          // The agent has the first copy (running, or ran): wait for its effect to show.
          resent = true;
          lastWhy = r.message;
          await delay(RECONCILE_POLL_MS);
          continue;
        }
        if (
          r.outcome === Outcome.OUTCOME_UNKNOWN ||
          r.outcome === Outcome.OUTCOME_TIMEOUT ||
          r.outcome === Outcome.OUTCOME_TRANSPORT_ERROR
        ) {
          resent = true;
          lastWhy = `${name} again`;
          continue;
        }
        this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
          result: r,
          idempotencyKey: key,
          message: `re-sent after reconciliation; the device answered ${name}`,
        });
        return 'failed';
      }
      await delay(RECONCILE_POLL_MS);
    }
    this.stepEvent(step, StepState.STEP_STATE_RECONCILED_NOT_APPLIED, phase, {
      idempotencyKey: key,
      message: `could not settle the outcome (${lastWhy}); the journal keeps it UNKNOWN: audit the LU before retrying`,
    });
    return 'failed';
  }

  /** Undoes completed steps, newest first per LU, LUs in parallel; each inverse is guarded by the post-state. */
  private async rollback(): Promise<void> {
    const lanes = new Semaphore(this.s.maxConcurrency);
    await Promise.all(
      [...this.completed].map(async ([luId, done]) => {
        if (done.length === 0) return;
        const unit = this.input.units.find((u) => u.luId === luId);
        if (unit === undefined) return;
        await lanes.acquire();
        try {
          // Each undo expects the state the previous one left (read after it), the first the last step's post-state.
          let expected = done[done.length - 1]?.post ?? Precondition.fromPartial({});
          for (const c of [...done].reverse()) {
            const inverse = inverseOf(c.step);
            if (inverse === undefined) {
              this.stepEvent(
                c.step,
                StepState.STEP_STATE_FAILED,
                RolloutPhase.ROLLOUT_PHASE_ROLLBACK,
                {
                  message: `cannot be undone (${describeProut(c.step.prout ?? ProutCommand.fromPartial({}))}); rollback of ${luId} stops here`,
                },
              );
              break;
            }
            const precondition = expected;
            const undo = PlanStep.fromPartial({
              ...c.step,
              stepId: stepIdOf(luId, c.step.agentId, c.step.path, inverse, precondition),
              prout: inverse,
              precondition,
              description: `undo: ${c.step.agentId}:${c.step.path} ${describeProut(inverse)}`,
              reversible: false,
            });
            const { check, verdict } = await this.checkAndSend(
              unit,
              undo,
              RolloutPhase.ROLLOUT_PHASE_ROLLBACK,
            );
            if (check.error !== undefined || check.mismatch !== '') {
              this.stepEvent(
                undo,
                check.error !== undefined
                  ? StepState.STEP_STATE_FAILED
                  : StepState.STEP_STATE_PRECONDITION_FAILED,
                RolloutPhase.ROLLOUT_PHASE_ROLLBACK,
                {
                  message: `not sent: ${check.error ?? `the LU changed since the step: ${check.mismatch}`}; rollback of ${luId} stops here`,
                },
              );
              break;
            }
            if (verdict !== 'succeeded') break;
            this.rolledBack += 1;
            const after = await this.readPost(unit, undo);
            if (after === undefined) break;
            expected = after;
          }
        } finally {
          lanes.release();
        }
      }),
    );
  }
}

/** A new rollout id. */
export function newOperationId(): string {
  return randomUUID();
}
