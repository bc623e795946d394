import { randomUUID } from 'node:crypto';
import { Precondition } from '../../../gen/prfleet/v1/control.js';
import {
  RolloutEvent,
  RolloutPhase,
  RolloutResult,
  StepState,
  type Finding,
  type PlanStep,
} from '../../../gen/prfleet/v1/fleet.js';
import { AsyncQueue } from '../../../common/async-queue.js';
import { msToDuration } from '../../../common/command.js';
import { Semaphore } from '../../../common/semaphore.js';
import { analyzeUnit, type UnitAnalysis } from '../analyze.js';
import type { FleetDeps } from '../deps.js';
import { CommandLimiter } from '../limiter.js';
import { observeUnit, type LuObservation } from '../observe.js';
import { isAllRegistrants } from '../plan-model.js';
import type { SelectedUnit } from '../selection.js';
import { rollback } from './rollback.js';
import { StepSender } from './step-sender.js';
import type { Completed, RolloutInput, RolloutSettings } from './types.js';

/** Follow-up planning rounds per LU after its steps ran (a step whose effect could not be predicted). */
const MAX_ROUNDS = 4;

/** What to do after one step: the next step, stop this LU, or run these re-planned steps instead. */
type StepNext = 'next' | 'stop' | PlanStep[];

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

/** One rollout: its plans, its lanes of LUs, its counts, and when it stops. */
class Rollout {
  private readonly s: RolloutSettings;
  private readonly stop = new AbortController();
  private failures = 0;
  private succeeded = 0;
  private cancelled = 0;
  private replans = 0;
  private rolledBack = 0;
  private abortMessage = '';
  private readonly completed = new Map<string, Completed[]>();
  private readonly started = performance.now();
  private readonly sender: StepSender;

  constructor(
    private readonly deps: FleetDeps,
    private readonly input: RolloutInput,
    private readonly signal: AbortSignal,
    private readonly emit: (event: RolloutEvent) => void,
  ) {
    this.s = input.settings;
    this.sender = new StepSender(deps, input, new CommandLimiter(64, 4), deps.commands, emit);
    if (signal.aborted) this.stop.abort();
    else signal.addEventListener('abort', () => this.halt('the caller cancelled'), { once: true });
  }

  private halt(message: string): void {
    if (this.stop.signal.aborted) return;
    this.abortMessage = message;
    this.stop.abort();
  }

  private async observe(
    unit: SelectedUnit,
  ): Promise<{ obs: LuObservation; analysis: UnitAnalysis }> {
    const obs = await observeUnit(unit, this.sender.readContext());
    return { obs, analysis: analyzeUnit(obs, this.input.keys) };
  }

  /** Initial plans from fresh reads (given steps skip planning but their LUs are still read at each step). */
  private async initialPlans(): Promise<{ plans: Map<string, PlanStep[]>; blockers: Finding[] }> {
    const { units, givenSteps } = this.input;
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
    return { plans, blockers };
  }

  private announce(plans: ReadonlyMap<string, PlanStep[]>, blockers: Finding[]): void {
    const units = this.input.units;
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
  }

  async execute(): Promise<void> {
    const { units } = this.input;
    const { plans, blockers } = await this.initialPlans();
    this.announce(plans, blockers);
    if (this.s.dryRun) {
      for (const unit of units)
        for (const step of plans.get(unit.luId) ?? [])
          this.sender.stepEvent(
            step,
            StepState.STEP_STATE_DRY_RUN,
            RolloutPhase.ROLLOUT_PHASE_FORWARD,
            { message: 'dry run: not sent' },
          );
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
    if (stopped && this.s.rollbackOnAbort)
      await rollback(this.sender, this.completed, this.s.maxConcurrency, () => {
        this.rolledBack += 1;
      });
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

  /** Counts a re-plan against the LU's budget: `stop` (a failure) once the budget is spent. */
  private async replanWithin(
    unit: SelectedUnit,
    budget: { replans: number },
    reason: string,
  ): Promise<StepNext> {
    if (budget.replans >= this.s.maxReplans) {
      this.fail();
      return 'stop';
    }
    budget.replans += 1;
    return this.replan(unit, reason);
  }

  /** One forward step: what the journal already knows of it, else its precondition check and PROUT. */
  private async runStep(
    unit: SelectedUnit,
    step: PlanStep,
    done: Completed[],
    budget: { replans: number },
  ): Promise<StepNext> {
    const FORWARD = RolloutPhase.ROLLOUT_PHASE_FORWARD;
    // The journal first: a repeat of this operation must find what it already sent, whatever the LU says now.
    const prior = await this.sender.priorAttempts(unit, step, FORWARD);
    if (prior.verdict === 'succeeded') {
      this.succeeded += 1;
      done.push({ step });
      return 'next';
    }
    if (prior.verdict === 'failed') {
      this.fail();
      return 'stop';
    }
    if (prior.verdict === 'superseded')
      return this.replan(
        unit,
        `step ${step.stepId} was journaled with an unknown outcome and the LU changed`,
      );
    const { check, verdict } = await this.sender.checkAndSend(unit, step, FORWARD);
    const last = done[done.length - 1];
    if (last !== undefined && last.post === undefined && check.read !== undefined)
      last.post = check.read;
    if (check.error !== undefined) {
      this.sender.stepEvent(step, StepState.STEP_STATE_FAILED, FORWARD, {
        message: `not sent: ${check.error}`,
      });
      this.fail();
      return 'stop';
    }
    if (check.mismatch !== '') {
      this.sender.stepEvent(step, StepState.STEP_STATE_PRECONDITION_FAILED, FORWARD, {
        message: `not sent: the LU changed under us: ${check.mismatch}`,
      });
      return this.replanWithin(
        unit,
        budget,
        `precondition of step ${step.stepId} failed: ${check.mismatch}`,
      );
    }
    if (verdict === 'succeeded') {
      this.succeeded += 1;
      done.push({ step });
      return 'next';
    }
    if (verdict === 'failed') {
      this.fail();
      return 'stop';
    }
    return this.replanWithin(
      unit,
      budget,
      `step ${step.stepId} had an unknown outcome and the LU changed in other ways`,
    );
  }

  /** Runs `steps` in order: 'done' when all ran, 'stop', or the re-planned steps to run instead. */
  private async runSteps(
    unit: SelectedUnit,
    steps: readonly PlanStep[],
    done: Completed[],
    budget: { replans: number },
  ): Promise<'done' | 'stop' | PlanStep[]> {
    for (let k = 0; k < steps.length; k++) {
      if (this.stop.signal.aborted) {
        for (const rest of steps.slice(k)) {
          this.cancelled += 1;
          this.sender.stepEvent(
            rest,
            StepState.STEP_STATE_CANCELLED,
            RolloutPhase.ROLLOUT_PHASE_FORWARD,
            { message: `not started: ${this.abortMessage}` },
          );
        }
        return 'stop';
      }
      const next = await this.runStep(unit, steps[k] as PlanStep, done, budget);
      if (next !== 'next') return next;
    }
    return 'done';
  }

  /** Reads the LU again after its steps: the last step's post-state, and the follow-up steps still needed. */
  private async confirm(unit: SelectedUnit, done: Completed[]): Promise<PlanStep[]> {
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
    return this.input.planner(obs, analysis).steps;
  }

  /** Runs one LU's steps, re-planning when it changed under us, then follow-up rounds until it converges. */
  private async runUnit(unit: SelectedUnit, initial: PlanStep[]): Promise<void> {
    const done: Completed[] = [];
    this.completed.set(unit.luId, done);
    const budget = { replans: 0 };
    let steps = initial;
    for (let round = 0; ; round++) {
      const ran = await this.runSteps(unit, steps, done, budget);
      if (ran === 'stop') return;
      if (ran !== 'done') {
        round -= 1; // a re-plan is not a follow-up round
        steps = ran;
        if (steps.length > 0) continue;
      }
      const next = await this.confirm(unit, done);
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
}

/** A new rollout id. */
export function newOperationId(): string {
  return randomUUID();
}
