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
  proutActionToJSON,
} from '../../gen/prfleet/v1/scsi.js';
import { msToDuration } from '../../common/command.js';
import { summarizeRpcError } from '../../common/errors.js';
import { formatKey } from '../../common/key-layout.js';
import type { JsonValue, OperationEntry } from '../store/index.js';
import { AsyncQueue } from '../async-queue.js';
import { analyzeUnit, type UnitAnalysis } from './analyze.js';
import type { FleetDeps } from './deps.js';
import type { KeyIndex } from './key-index.js';
import { CommandLimiter, Semaphore } from './limiter.js';
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
}

/** Follow-up planning rounds per LU after its steps ran (a step whose effect could not be predicted). */
const MAX_ROUNDS = 4;
/** Pause between reconciliation reads while an agent reconnects, ms. */
const RECONCILE_POLL_MS = 100;

type StepVerdict = 'succeeded' | 'failed' | 'superseded';

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

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Compares a READ RESERVATION answer with a step's precondition; returns what differs ('' when it holds). */
export function preconditionMismatch(
  pre: Precondition | undefined,
  got: { generation: number; reserved: boolean; key: bigint; type: number },
): string {
  if (pre === undefined) return '';
  const out: string[] = [];
  if (pre.expectedGeneration !== undefined && got.generation !== pre.expectedGeneration) {
    out.push(`PRgeneration is ${got.generation}, expected ${pre.expectedGeneration}`);
  }
  const holder = pre.expectedHolderKey;
  if (holder !== undefined) {
    if (holder === 0n && got.reserved)
      out.push(`reserved by ${formatKey(got.key)}, expected no reservation`);
    if (holder !== 0n && (!got.reserved || got.key !== holder)) {
      out.push(
        got.reserved
          ? `holder is ${formatKey(got.key)}, expected ${formatKey(holder)}`
          : `not reserved, expected holder ${formatKey(holder)}`,
      );
    }
  }
  return out.join('; ');
}

/** What a fresh read says about whether `step` took effect since `pre`. */
export function judgeEffect(
  step: PlanStep,
  state: {
    generation: number;
    keys: readonly bigint[];
    reserved: boolean;
    holderKey: bigint;
    type: number;
  },
): 'applied' | 'not-applied' | 'other' {
  const p = step.prout;
  const preGen = step.precondition?.expectedGeneration;
  if (p === undefined) return 'other';
  const genSame = preGen !== undefined && state.generation === preGen;
  const genMoved = preGen === undefined || state.generation !== preGen;
  switch (p.action) {
    case ProutAction.PROUT_ACTION_REGISTER:
    case ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY:
      if (p.serviceActionKey !== 0n) {
        if (genMoved && state.keys.includes(p.serviceActionKey)) return 'applied';
        return genSame ? 'not-applied' : 'other';
      }
      if (preGen !== undefined && state.generation === preGen + 1) return 'applied';
      return genSame ? 'not-applied' : 'other';
    case ProutAction.PROUT_ACTION_RESERVE:
      if (
        state.reserved &&
        state.type === p.type &&
        (state.holderKey === p.reservationKey || isAllRegistrants(p.type))
      )
        return 'applied';
      return !state.reserved && (preGen === undefined || genSame) ? 'not-applied' : 'other';
    case ProutAction.PROUT_ACTION_RELEASE:
      if (
        !state.reserved ||
        (state.holderKey !== p.reservationKey && !isAllRegistrants(state.type))
      )
        return 'applied';
      return 'not-applied';
    case ProutAction.PROUT_ACTION_PREEMPT:
    case ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT:
      if (genMoved && !state.keys.includes(p.serviceActionKey)) return 'applied';
      return genSame && state.keys.includes(p.serviceActionKey) ? 'not-applied' : 'other';
    default:
      return 'other';
  }
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

  constructor(
    private readonly deps: FleetDeps,
    private readonly input: RolloutInput,
    private readonly signal: AbortSignal,
    private readonly emit: (event: RolloutEvent) => void,
  ) {
    this.s = input.settings;
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
   * The step's precondition read and, when it holds, the step itself, in one turn of the LU: no other PROUT
   * through this server (ControlService or another rollout) lands between them.
   */
  private checkAndSend(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
  ): Promise<{
    check: Awaited<ReturnType<Rollout['checkPrecondition']>>;
    verdict?: Awaited<ReturnType<Rollout['sendStep']>>;
  }> {
    const turn = async () => {
      const check = await this.checkPrecondition(unit, step);
      if (check.error !== undefined || check.mismatch !== '') return { check };
      return { check, verdict: await this.sendStep(unit, step, phase) };
    };
    return this.deps.luSerializer === undefined
      ? turn()
      : this.deps.luSerializer.run(unit.luId, turn);
  }

  /** READ RESERVATION through the step's own path, compared with its precondition. */
  private async checkPrecondition(
    unit: SelectedUnit,
    step: PlanStep,
  ): Promise<{ error?: string; mismatch: string; read?: Precondition }> {
    const fleetPath = unit.paths.find(
      (p) => p.agent.hello.agentId === step.agentId && p.path.path === step.path,
    );
    if (fleetPath === undefined)
      return { error: `${step.agentId}:${step.path} is not a path to ${unit.luId}`, mismatch: '' };
    const read = await readThrough(
      fleetPath,
      PrinAction.PRIN_ACTION_READ_RESERVATION,
      this.readContext(),
      unit.luId,
    );
    if (read.error !== undefined || read.result.data?.$case !== 'readReservation') {
      return {
        error: `precondition could not be checked: ${read.error ?? 'no reservation data'}`,
        mismatch: '',
      };
    }
    const r = read.result.data.value;
    const got = Precondition.fromPartial({
      expectedGeneration: r.generation,
      ...(r.reserved && isAllRegistrants(r.type)
        ? {}
        : { expectedHolderKey: r.reserved ? r.key : 0n }),
    });
    return { mismatch: preconditionMismatch(step.precondition, r), read: got };
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

  private async history(
    step: PlanStep,
    result: CommandResult | undefined,
    outcome: string,
    key: string,
  ): Promise<void> {
    const p = step.prout;
    if (p === undefined) return;
    try {
      await this.deps.store.history.append({
        actor: this.s.actor,
        agentId: step.agentId,
        path: step.path,
        luId: step.luId,
        action: proutActionToJSON(p.action),
        reservationKey: p.reservationKey,
        serviceActionKey: p.serviceActionKey,
        ...(p.type === 0 ? {} : { prType: p.type }),
        outcome,
        ...(result === undefined || result.outcome === Outcome.OUTCOME_UNKNOWN
          ? {}
          : { status: result.status }),
        ...(result?.sense ? { sense: Buffer.from(result.sense.raw).toString('hex') } : {}),
        ...(result?.commandId ? { commandId: result.commandId } : {}),
        idempotencyKey: key,
        reason: this.s.reason || `fleet rollout ${this.s.operationId}`,
      });
    } catch (e) {
      this.deps.log.error({ err: e, idempotencyKey: key }, 'history append failed');
    }
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

  /** Sends one step at most once (see priorAttempts): begins a journaled attempt, dispatches, records the result. */
  private async sendStep(
    unit: SelectedUnit,
    step: PlanStep,
    phase: RolloutPhase,
  ): Promise<StepVerdict> {
    const journal = this.deps.store.journal;
    const prior = await this.priorAttempts(unit, step, phase);
    if (prior.verdict !== undefined) return prior.verdict;
    const key = `${this.attemptBase(step, phase)}/${prior.attempt}`;
    const begun = await journal.begin({
      idempotencyKey: key,
      request: {
        kind: 'fleet-step',
        operationId: this.s.operationId,
        phase: phase === RolloutPhase.ROLLOUT_PHASE_ROLLBACK ? 'rollback' : 'forward',
        step: PlanStep.toJSON(step) as JsonValue,
      },
      owner: this.deps.instanceId ?? 'fleet',
    });
    if (begun.kind !== 'started') {
      // Another server (or a concurrent repeat) claimed the same attempt: never race it with a second send.
      this.stepEvent(step, StepState.STEP_STATE_UNKNOWN, phase, {
        idempotencyKey: key,
        message: 'journal: this attempt was claimed concurrently; reconciling',
      });
      return this.reconcile(unit, step, phase, key);
    }
    this.stepEvent(step, StepState.STEP_STATE_STARTED, phase, { idempotencyKey: key });
    const outcome = await this.dispatchProut(step, key);
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
      return 'failed';
    }
    const result = outcome.result;
    const name = outcomeToJSON(result.outcome);
    switch (result.outcome) {
      case Outcome.OUTCOME_GOOD:
        await journal.complete(
          key,
          resultJson(result, {
            sent: true,
            outcome: name,
            applied: true,
            commandId: result.commandId,
          }),
        );
        await this.history(step, result, name, key);
        this.stepEvent(step, StepState.STEP_STATE_SUCCEEDED, phase, {
          result,
          idempotencyKey: key,
        });
        return 'succeeded';
      case Outcome.OUTCOME_REFUSED:
      case Outcome.OUTCOME_OS_ERROR:
        // Nothing reached the device.
        await journal.complete(
          key,
          resultJson(result, {
            sent: false,
            outcome: name,
            applied: false,
            message: result.message,
          }),
        );
        this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
          result,
          idempotencyKey: key,
          message: `not run: ${result.message}`,
        });
        return 'failed';
      case Outcome.OUTCOME_UNKNOWN:
      case Outcome.OUTCOME_TIMEOUT:
      case Outcome.OUTCOME_TRANSPORT_ERROR:
        await journal.markUnknown(
          key,
          resultJson(result, {
            sent: true,
            outcome: name,
            applied: false,
            message: result.message,
          }),
        );
        await this.history(step, result, name, key);
        this.stepEvent(step, StepState.STEP_STATE_UNKNOWN, phase, {
          result,
          idempotencyKey: key,
          message: `${name}: ${result.message || 'the effect is unknown'}; reconciling by reading the LU`,
        });
        return this.reconcile(unit, step, phase, key);
      default:
        await journal.complete(
          key,
          resultJson(result, {
            sent: true,
            outcome: name,
            applied: false,
            commandId: result.commandId,
          }),
        );
        await this.history(step, result, name, key);
        this.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
          result,
          idempotencyKey: key,
          message: `the device answered ${name}${result.sense ? ` (${result.sense.description})` : ''}`,
        });
        return 'failed';
    }
  }

  /** Dispatches the PROUT without the caller's signal: once sent, its result is awaited, never abandoned. */
  private async dispatchProut(
    step: PlanStep,
    key: string,
  ): Promise<{ kind: 'result'; result: CommandResult } | { kind: 'not-sent'; message: string }> {
    const command = Command.fromPartial({
      path: step.path,
      idempotencyKey: key,
      kind: { $case: 'prout', value: ProutCommand.fromPartial(step.prout ?? {}) },
    });
    try {
      const result = await this.deps.router.dispatch(step.agentId, command, {
        timeoutMs: this.s.timeoutMs,
        luId: step.luId,
      });
      return { kind: 'result', result };
    } catch (e) {
      if (isAbortError(e)) throw e;
      const summary = summarizeRpcError(e);
      if (summary === undefined) throw e;
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
        await journal.complete(
          key,
          resultJson(undefined, {
            sent: true,
            outcome: 'RECONCILED_APPLIED',
            applied: true,
            message: `read generation ${state.generation}`,
          }),
        );
        await this.history(step, undefined, 'RECONCILED_APPLIED', key);
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
        const again = await this.dispatchProut(step, key);
        if (again.kind === 'not-sent') {
          lastWhy = again.message;
          await delay(RECONCILE_POLL_MS);
          continue;
        }
        const r = again.result;
        const name = outcomeToJSON(r.outcome);
        if (r.outcome === Outcome.OUTCOME_GOOD) {
          await journal.complete(
            key,
            resultJson(r, {
              sent: true,
              outcome: name,
              applied: true,
              commandId: r.commandId,
              message: 're-sent after reconciliation showed it had not run',
            }),
          );
          await this.history(step, r, name, key);
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
        const applied = false;
        await journal.complete(
          key,
          resultJson(r, {
            sent: r.outcome !== Outcome.OUTCOME_REFUSED && r.outcome !== Outcome.OUTCOME_OS_ERROR,
            outcome: name,
            applied,
            commandId: r.commandId,
          }),
        );
        await this.history(step, r, name, key);
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
            const after = await this.checkPrecondition(
              unit,
              PlanStep.fromPartial({ ...undo, precondition: Precondition.fromPartial({}) }),
            );
            if (after.read === undefined) break;
            expected = after.read;
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
