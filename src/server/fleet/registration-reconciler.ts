/**
 * The registration reconciler (docs/fleet.md): an optional server mode that keeps the desired registrations in
 * place by itself. When an agent (re)connects, a path appears, a nexus identity changes (another initiator port or
 * ISID on a path) or a unit attention says registrations may be gone (29h: power on, reset), it registers the
 * host's desired key on its paths to the LUs concerned — REGISTER only, never RESERVE or PREEMPT — through the
 * fleet rollout (command pipeline, journal, history). Rate-limited per LU and overall; `dry-run` lists what it
 * would send without sending. It never undoes a fence: a key whose newest history entry on the LU is a PREEMPT of
 * it (or a CLEAR) is left unregistered and logged.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { formatKey } from '../../common/key-layout.js';
import {
  ProutAction,
  TransportId,
  type CommandResult,
  type Path,
} from '../../gen/prfleet/v1/scsi.js';
import {
  StepState,
  stepStateToJSON,
  type PlanStep,
  type RolloutEvent,
} from '../../gen/prfleet/v1/fleet.js';
import type { RegistryEvent } from '../agents/index.js';
import type { FleetDeps } from './deps.js';
import { loadDesiredIndex } from './desired.js';
import { loadKeyIndex } from './key-index.js';
import { planDesired } from './planner.js';
import type { UnitPlan } from './plan-model.js';
import { runRollout } from './rollout.js';
import { selectUnits, type SelectedUnit } from './selection.js';
import { delay } from '../../common/delay.js';

/** off: nothing; dry-run: list what it would do; on: do it. */
export type ReconcilerMode = 'off' | 'dry-run' | 'on';

/** Settings (PRFLEET_RECONCILER, PRFLEET_RECONCILER_COOLDOWN_MS, PRFLEET_RECONCILER_MAX_PER_MINUTE). */
export interface ReconcilerSettings {
  readonly mode: ReconcilerMode;
  /** One (host, LU) is reconciled at most once per this long, ms. @default 60000 */
  readonly cooldownMs: number;
  /** (host, LU) pairs reconciled per minute overall; the rest wait for the next minute. @default 120 */
  readonly maxPerMinute: number;
  /** Triggers arriving within this long are handled together (inventories come in bursts), ms. @default 500 */
  readonly debounceMs?: number;
  /** Device timeout per command, ms. @default 30000 */
  readonly timeoutMs?: number;
}

/** What the reconciler did, or would do, for one (host, LU). */
export interface ReconcileRecord {
  readonly at: Date;
  readonly agentId: string;
  readonly luId: string;
  /** Why it looked (agent connected, path appeared, nexus identity changed, unit attention …). */
  readonly trigger: string;
  /** registered | would-register | in-place | skipped | failed. */
  readonly outcome: 'registered' | 'would-register' | 'in-place' | 'skipped' | 'failed';
  /** Paths it registered (or would), and why something was skipped or failed. */
  readonly detail: string;
}

/** Who the history and journal name as the actor. */
export const RECONCILER_ACTOR = 'prfleet-reconciler';

const REGISTER_ACTIONS = new Set<number>([
  ProutAction.PROUT_ACTION_REGISTER,
  ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY,
]);
const FENCE_ACTIONS = new Set(['PROUT_ACTION_PREEMPT', 'PROUT_ACTION_PREEMPT_AND_ABORT']);
const REGISTER_NAMES = new Set([
  'PROUT_ACTION_REGISTER',
  'PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY',
  'PROUT_ACTION_REGISTER_AND_MOVE',
]);
const APPLIED = new Set(['OUTCOME_GOOD', 'RECONCILED_APPLIED']);
/** Records kept for `recent()`. */
const RECENT = 200;

/** The identity of a path's I_T nexus: LU, initiator port (with ISID), target port. */
function nexusOf(p: Path): string {
  const port =
    p.initiatorPort === undefined ? '' : JSON.stringify(TransportId.toJSON(p.initiatorPort));
  return `${p.luId}|${port}|${p.relativeTargetPort}`;
}

/** Keeps only the host's own registrations of `key`; stops at any other step (never reserve or preempt). */
export function registrationsOnly(plan: UnitPlan, agentId: string, key: bigint): UnitPlan {
  const steps: PlanStep[] = [];
  for (const s of plan.steps) {
    const p = s.prout;
    if (
      p === undefined ||
      s.agentId !== agentId ||
      !REGISTER_ACTIONS.has(p.action) ||
      p.serviceActionKey !== key
    )
      break;
    steps.push(s);
  }
  return { steps, blockers: plan.blockers, incomplete: plan.incomplete };
}

/** The registration reconciler; `start()` subscribes to the agent registry. */
export class RegistrationReconciler {
  private readonly log: Logger;
  /** Nexus identities of each agent's last inventory, by path. */
  private readonly seen = new Map<string, Map<string, string>>();
  /** Agents whose session opened and whose first inventory has not come yet. */
  private readonly fresh = new Set<string>();
  /** Waiting (host, LU) pairs and why. */
  private readonly pending = new Map<string, { agentId: string; luId: string; why: Set<string> }>();
  private readonly lastRun = new Map<string, number>();
  private windowStart = 0;
  private windowCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;
  private readonly records: ReconcileRecord[] = [];
  private stopped = false;

  constructor(
    private readonly deps: FleetDeps,
    private readonly settings: ReconcilerSettings,
  ) {
    this.log = deps.log.child({ component: 'reconciler' });
  }

  /** Subscribes to agent sessions and inventories (no-op when the mode is off). */
  start(): void {
    if (this.settings.mode === 'off' || this.unsubscribe !== undefined) return;
    this.unsubscribe = this.deps.devices.onChange((e) => this.onRegistry(e));
    this.log.info({ mode: this.settings.mode }, 'registration reconciler started');
  }

  /** Stops taking triggers and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** What it did or would do, newest last (at most 200). */
  recent(): readonly ReconcileRecord[] {
    return this.records;
  }

  /** Resolves when nothing is pending or running (tests). */
  async idle(): Promise<void> {
    for (;;) {
      await this.running;
      if (this.pending.size === 0 && this.timer === undefined) return;
      await delay(20);
    }
  }

  /** A result with unit attentions: 29h (power on, reset, nexus loss) means registrations may be lost. */
  noteResult(result: CommandResult): void {
    if (this.settings.mode === 'off' || this.stopped) return;
    for (const ua of result.unitAttentions) {
      if (ua.sense?.asc !== 0x29) continue; // 2Ah/xx (preempted, released) is someone's deliberate act
      const luId = result.luId || this.luOfPath(result.agentId, result.path);
      if (luId !== '')
        this.trigger(
          result.agentId,
          luId,
          `unit attention ${ua.sense.description || '29h'} on ${result.path}`,
        );
    }
  }

  private luOfPath(agentId: string, path: string): string {
    return this.deps.devices.get(agentId)?.paths.find((p) => p.path === path)?.luId ?? '';
  }

  private onRegistry(e: RegistryEvent): void {
    if (this.stopped) return;
    const agentId = e.session.agentId;
    if (e.kind === 'opened') this.fresh.add(agentId);
    if (e.kind !== 'inventory') return;
    const now = new Map(e.paths.filter((p) => p.luId !== '').map((p) => [p.path, nexusOf(p)]));
    const before = this.seen.get(agentId);
    const reconnect = this.fresh.delete(agentId) || before === undefined;
    this.seen.set(agentId, now);
    for (const p of e.paths) {
      if (p.luId === '') continue;
      const was = before?.get(p.path);
      const why = reconnect
        ? 'agent connected'
        : was === undefined
          ? `path ${p.path} appeared`
          : was !== nexusOf(p)
            ? `nexus identity of ${p.path} changed`
            : undefined;
      if (why !== undefined) this.trigger(agentId, p.luId, why);
    }
  }

  private trigger(agentId: string, luId: string, why: string): void {
    const id = `${agentId}\u0000${luId}`;
    let entry = this.pending.get(id);
    if (entry === undefined) this.pending.set(id, (entry = { agentId, luId, why: new Set() }));
    entry.why.add(why);
    this.schedule(this.settings.debounceMs ?? 500);
  }

  private schedule(ms: number): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.running
        .then(() => this.flush())
        .catch((err: unknown) => {
          this.log.error({ err }, 'reconciler run failed');
        });
    }, ms);
    this.timer.unref();
  }

  /** Takes the pending pairs the rate limits allow now; the rest wait (a timer comes back for them). */
  private takeDue(): { agentId: string; luId: string; why: string }[] {
    const now = Date.now();
    if (now - this.windowStart >= 60_000) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    const due: { agentId: string; luId: string; why: string }[] = [];
    let wait = Number.POSITIVE_INFINITY;
    for (const [id, p] of this.pending) {
      const ready = (this.lastRun.get(id) ?? -Infinity) + this.settings.cooldownMs;
      if (ready > now) {
        wait = Math.min(wait, ready - now);
        continue;
      }
      if (this.windowCount >= this.settings.maxPerMinute) {
        wait = Math.min(wait, this.windowStart + 60_000 - now);
        continue;
      }
      this.windowCount++;
      this.lastRun.set(id, now);
      this.pending.delete(id);
      due.push({ agentId: p.agentId, luId: p.luId, why: [...p.why].join('; ') });
    }
    if (this.pending.size > 0 && Number.isFinite(wait)) {
      this.log.info({ waiting: this.pending.size, ms: wait }, 'reconciler: rate limit, later');
      this.schedule(Math.max(wait, 10));
    }
    return due;
  }

  private async flush(): Promise<void> {
    if (this.stopped) return;
    const due = this.takeDue();
    const byAgent = new Map<string, { luId: string; why: string }[]>();
    for (const d of due) {
      const list = byAgent.get(d.agentId) ?? [];
      list.push(d);
      byAgent.set(d.agentId, list);
    }
    for (const [agentId, lus] of byAgent) await this.reconcileAgent(agentId, lus);
  }

  private note(r: Omit<ReconcileRecord, 'at'>): void {
    const record = { ...r, at: new Date() };
    this.records.push(record);
    if (this.records.length > RECENT) this.records.shift();
    const level = r.outcome === 'failed' || r.outcome === 'skipped' ? 'warn' : 'info';
    this.log[level](record, `reconciler: ${r.outcome} ${r.agentId} on ${r.luId}: ${r.detail}`);
  }

  /** True when the newest history entry about `key` on `luId` is its preemption or a CLEAR (a fence). */
  private async fenced(luId: string, key: bigint): Promise<string | undefined> {
    let after = 0;
    let verdict: string | undefined;
    for (;;) {
      const page = await this.deps.store.history.list({ luId, afterSeq: after, limit: 1000 });
      for (const e of page) {
        after = e.seq;
        if (!APPLIED.has(e.outcome)) continue;
        if (FENCE_ACTIONS.has(e.action) && e.serviceActionKey === key)
          verdict = `preempted by ${formatKey(e.reservationKey)} (history #${e.seq}, ${e.actor})`;
        else if (e.action === 'PROUT_ACTION_CLEAR')
          verdict = `cleared by ${formatKey(e.reservationKey)} (history #${e.seq}, ${e.actor})`;
        else if (REGISTER_NAMES.has(e.action) && e.serviceActionKey === key) verdict = undefined;
      }
      if (page.length < 1000) return verdict;
    }
  }

  /** One rollout for one host's LUs: desired, keyed and not fenced ones; REGISTER steps only. */
  private async reconcileAgent(agentId: string, lus: { luId: string; why: string }[]) {
    const [keys, desired] = await Promise.all([
      loadKeyIndex(this.deps.store),
      loadDesiredIndex(this.deps.store),
    ]);
    const work = new Map<
      string,
      { unit: SelectedUnit; key: bigint; why: string; source: string }
    >();
    for (const { luId, why } of lus) {
      const skip = (detail: string) =>
        this.note({ agentId, luId, trigger: why, outcome: 'skipped', detail });
      let unit: SelectedUnit | undefined;
      try {
        unit = selectUnits(this.deps.devices, {
          luIds: [luId],
          loaderIds: [],
          site: '',
          labels: [],
        })[0];
      } catch {
        unit = undefined;
      }
      if (unit === undefined) continue; // the LU went away meanwhile
      const desire = desired.desireFor(unit);
      if (desire === undefined || !desire.registered.includes(agentId)) continue; // not ours to keep
      const key = keys.activeKey(agentId, desire.purpose);
      if (key === undefined) {
        skip(`no valid ${desire.purpose} key for ${agentId} in the registry`);
        continue;
      }
      const fence = await this.fenced(luId, key);
      if (fence !== undefined) {
        skip(
          `${formatKey(key)} was ${fence}: a fence is not undone; register it with apply or fence_prfleet on`,
        );
        continue;
      }
      work.set(luId, { unit, key, why, source: desire.source });
    }
    if (work.size === 0) return;
    await this.run(agentId, work, keys);
  }

  private async run(
    agentId: string,
    work: Map<string, { unit: SelectedUnit; key: bigint; why: string; source: string }>,
    keys: Awaited<ReturnType<typeof loadKeyIndex>>,
  ): Promise<void> {
    const dryRun = this.settings.mode === 'dry-run';
    const operationId = `reconcile:${randomUUID()}`;
    const reasons = [...new Set([...work.values()].map((w) => w.why))].join('; ');
    const done = new Map<string, StepResults>();
    for (const luId of work.keys()) done.set(luId, { paths: [], failed: [] });
    const events = runRollout(
      this.deps,
      {
        units: [...work.values()].map((w) => w.unit),
        planner: (obs, analysis) => {
          const w = work.get(obs.unit.luId);
          if (w === undefined) return { steps: [], blockers: [], incomplete: false };
          const plan = planDesired(
            obs,
            analysis,
            { source: w.source, registered: [agentId], purpose: 'backup', removeOthers: false },
            { ...keys, activeKey: (a) => (a === agentId ? w.key : undefined) },
          );
          return registrationsOnly(plan, agentId, w.key);
        },
        keys,
        settings: {
          maxConcurrency: 4,
          errorThreshold: 1_000_000, // one LU's failure must not stop the others
          rollbackOnAbort: false,
          timeoutMs: this.settings.timeoutMs ?? 30_000,
          maxReplans: 3,
          operationId,
          reason: `registration reconciler: ${reasons}`.slice(0, 2000),
          dryRun,
          actor: RECONCILER_ACTOR,
        },
      },
      new AbortController().signal,
    );
    await collectStepResults(events, done);
    for (const [luId, d] of done) {
      const w = work.get(luId);
      if (w === undefined) continue;
      const base = { agentId, luId, trigger: w.why };
      if (d.failed.length > 0)
        this.note({ ...base, outcome: 'failed', detail: d.failed.join('; ') });
      else if (d.paths.length === 0)
        this.note({ ...base, outcome: 'in-place', detail: `${formatKey(w.key)} on every path` });
      else
        this.note({
          ...base,
          outcome: dryRun ? 'would-register' : 'registered',
          detail: `${formatKey(w.key)} on ${d.paths.join(', ')} (operation ${operationId})`,
        });
    }
  }
}

/** Paths where one LU's registration ran (or would run), and the steps that failed. */
interface StepResults {
  paths: string[];
  failed: string[];
}

/** Reads a rollout's step events into `done`, by LU. */
async function collectStepResults(
  events: AsyncIterable<RolloutEvent>,
  done: ReadonlyMap<string, StepResults>,
): Promise<void> {
  for await (const e of events) {
    if (e.event?.$case !== 'step') continue;
    const s = e.event.value;
    const d = s.step === undefined ? undefined : done.get(s.step.luId);
    if (d === undefined || s.step === undefined) continue;
    const ok = [
      StepState.STEP_STATE_SUCCEEDED,
      StepState.STEP_STATE_RECONCILED_APPLIED,
      StepState.STEP_STATE_ALREADY_DONE,
      StepState.STEP_STATE_DRY_RUN,
    ].includes(s.state);
    const bad = [StepState.STEP_STATE_FAILED, StepState.STEP_STATE_RECONCILED_NOT_APPLIED].includes(
      s.state,
    );
    if (ok) d.paths.push(s.step.path);
    if (bad) d.failed.push(`${s.step.path}: ${stepStateToJSON(s.state)} ${s.message}`);
  }
}
