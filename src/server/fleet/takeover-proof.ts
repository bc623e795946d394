/**
 * "Proven before preempted": the verdict of a Takeover. The victim failed (its hosts sent no heartbeat for the
 * configured time, on every path, and the liveness webhook agrees where configured) or is greedy (it holds a
 * reservation the desired state gives to another host, or longer than its lease); a preempt policy says which
 * takers may act on which verdict. Anything else runs only with force and a reason, and the verdict says what
 * force overrides. Every fact is kept as evidence: sent to the caller and recorded with each PREEMPT.
 */
import { formatKey } from '../../common/key-layout.js';
import {
  TakeoverEvidence,
  TakeoverVerdict,
  TakeoverVerdictKind,
} from '../../gen/prfleet/v1/fleet.js';
import { isAllRegistrants } from './plan-model.js';
import { isConnected, type AgentRecord } from '../agents/index.js';
import type { FleetDeps } from './deps.js';
import type { DesiredIndex } from './desired.js';
import type { KeyIndex } from './key-index.js';
import { CommandLimiter } from './limiter.js';
import { observeUnit } from './observe.js';
import type { SelectedUnit } from './selection.js';
import {
  askLiveness,
  type HostMatcher,
  type PolicyRule,
  type TakeoverRules,
} from './takeover-rules.js';

/** What is judged. */
export interface TakeoverCase {
  readonly taker: string;
  readonly victimKeys: ReadonlySet<bigint>;
  /** The victim host when the request named it; else the hosts the registry issued the keys to. */
  readonly victimAgentId?: string;
  readonly units: readonly SelectedUnit[];
  readonly keys: KeyIndex;
  readonly desired: DesiredIndex;
  /** Device timeout per read, ms. */
  readonly timeoutMs: number;
  readonly now?: Date;
}

/** History actions that make their reservation key the holder. */
const HOLDER_ACTIONS = new Set([
  'PROUT_ACTION_RESERVE',
  'PROUT_ACTION_PREEMPT',
  'PROUT_ACTION_PREEMPT_AND_ABORT',
]);
const APPLIED = new Set(['OUTCOME_GOOD', 'RECONCILED_APPLIED']);

function ev(rule: string, holds: boolean, subject: string, detail: string): TakeoverEvidence {
  return TakeoverEvidence.fromPartial({ rule, holds, subject, detail });
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/** The hosts behind the victim keys: the named one, or the registry's owners ('' for a key it does not know). */
export function victimHosts(c: Pick<TakeoverCase, 'victimKeys' | 'victimAgentId' | 'keys'>): {
  hosts: string[];
  unknownKeys: bigint[];
} {
  if (c.victimAgentId !== undefined) return { hosts: [c.victimAgentId], unknownKeys: [] };
  const hosts = new Set<string>();
  const unknownKeys: bigint[] = [];
  for (const k of c.victimKeys) {
    const agent = c.keys.record(k)?.agentId;
    if (agent === undefined || agent === null) unknownKeys.push(k);
    else hosts.add(agent);
  }
  return { hosts: [...hosts], unknownKeys };
}

/** The failed rule: every victim host offline for ≥ failedAfterMs, and the webhook agrees where configured. */
async function judgeFailed(
  deps: FleetDeps,
  rules: TakeoverRules,
  c: TakeoverCase,
  now: number,
  signal: AbortSignal | undefined,
): Promise<{ proven: boolean; evidence: TakeoverEvidence[] }> {
  const evidence: TakeoverEvidence[] = [];
  if (rules.failedAfterMs === 0)
    return { proven: false, evidence: [ev('failed', false, '', 'the failed rule is off')] };
  const { hosts, unknownKeys } = victimHosts(c);
  for (const k of unknownKeys)
    evidence.push(
      ev(
        'failed',
        false,
        formatKey(k),
        `the holder's agent is unknown: the key registry names no host for ${formatKey(k)}, so no heartbeat can prove it failed`,
      ),
    );
  let proven = unknownKeys.length === 0 && hosts.length > 0;
  for (const host of hosts) {
    const record = deps.devices.get(host);
    const offline = offlineFor(record, now);
    const paths = record?.paths.length ?? 0;
    if (record === undefined) {
      evidence.push(
        ev(
          'failed',
          false,
          host,
          `agent ${host} is unknown to this server: its liveness is unknown`,
        ),
      );
      proven = false;
      continue;
    }
    if (offline === undefined) {
      evidence.push(
        ev('failed', false, host, `agent ${host} is connected (${paths} paths): not failed`),
      );
      proven = false;
      continue;
    }
    const since = (record.lastHeartbeatAt ?? record.connectedAt).toISOString();
    const enough = offline >= rules.failedAfterMs;
    evidence.push(
      ev(
        'failed',
        enough,
        host,
        `agent ${host} offline on all ${paths} paths; no heartbeat since ${since} (${seconds(offline)}, rule: ≥ ${seconds(rules.failedAfterMs)})`,
      ),
    );
    if (!enough) proven = false;
    if (rules.liveness !== undefined && enough) {
      const answer = await askLiveness(
        rules.liveness,
        { host, site: record.hello.site, lastHeartbeat: since },
        signal,
      );
      evidence.push(ev('liveness', answer.down, host, answer.detail));
      if (!answer.down) proven = false;
    }
  }
  return { proven, evidence };
}

/** How long `record`'s agent has been silent (ms), or undefined while it is connected. */
function offlineFor(record: AgentRecord | undefined, now: number): number | undefined {
  if (record === undefined || isConnected(record)) return undefined;
  return Math.max(0, now - (record.lastHeartbeatAt ?? record.connectedAt).getTime());
}

/** When `key` became holder of `luId`, per the history (the newest applied RESERVE/PREEMPT by it). */
async function holdStart(deps: FleetDeps, luId: string, key: bigint): Promise<Date | undefined> {
  let after = 0;
  let found: Date | undefined;
  for (;;) {
    const page = await deps.store.history.list({ luId, afterSeq: after, limit: 1000 });
    for (const e of page) {
      if (e.reservationKey === key && HOLDER_ACTIONS.has(e.action) && APPLIED.has(e.outcome))
        found = e.at;
      after = e.seq;
    }
    if (page.length < 1000) return found;
  }
}

/** The greedy rule, per LU the victim holds: the desired holder is another host (or nobody), or the lease ran out. */
async function judgeGreedy(
  deps: FleetDeps,
  c: TakeoverCase,
  now: number,
  signal: AbortSignal | undefined,
): Promise<{ proven: boolean; evidence: TakeoverEvidence[] }> {
  const evidence: TakeoverEvidence[] = [];
  const limiter = new CommandLimiter(64, 4);
  let held = 0;
  let greedy = 0;
  for (const unit of c.units) {
    const obs = await observeUnit(unit, {
      read: deps.commands.read,
      limiter,
      timeoutMs: c.timeoutMs,
      ...(signal === undefined ? {} : { signal }),
    });
    const s = obs.state;
    if (s === undefined || !s.reserved || isAllRegistrants(s.type)) continue;
    if (!c.victimKeys.has(s.holderKey)) continue;
    held++;
    const holderHost = c.keys.record(s.holderKey)?.agentId ?? '';
    const want = c.desired.desireFor(unit)?.reservation;
    const subject = unit.luId;
    if (want === undefined) {
      evidence.push(
        ev('greedy', false, subject, `no desired state says who should hold ${subject}`),
      );
      continue;
    }
    if (want.holder !== holderHost || holderHost === '') {
      greedy++;
      evidence.push(
        ev(
          'greedy',
          true,
          subject,
          `${formatKey(s.holderKey)} (${holderHost || 'unknown host'}) holds ${subject}, which the desired state gives to ${want.holder || 'nobody'}`,
        ),
      );
      continue;
    }
    if (want.leaseMs === undefined) {
      evidence.push(
        ev('greedy', false, subject, `the desired state gives ${subject} to ${holderHost}`),
      );
      continue;
    }
    const start = await holdStart(deps, unit.luId, s.holderKey);
    if (start === undefined) {
      evidence.push(
        ev(
          'lease',
          false,
          subject,
          `no history entry shows when ${formatKey(s.holderKey)} became holder of ${subject}: its lease cannot be checked`,
        ),
      );
      continue;
    }
    const heldMs = now - start.getTime();
    const over = heldMs > want.leaseMs;
    if (over) greedy++;
    evidence.push(
      ev(
        'lease',
        over,
        subject,
        `${holderHost} has held ${subject} since ${start.toISOString()} (${seconds(heldMs)}, lease ${seconds(want.leaseMs)})`,
      ),
    );
  }
  if (held === 0)
    evidence.push(ev('greedy', false, '', 'the victim holds no reservation on the selected LUs'));
  // Greedy when it is greedy on every LU it holds: a proper hold elsewhere is not taken on this proof.
  return { proven: held > 0 && greedy === held, evidence };
}

function matches(m: HostMatcher | undefined, record: AgentRecord | undefined, id: string): boolean {
  if (m === undefined) return true;
  if (m.agents !== undefined && !m.agents.includes(id)) return false;
  if (m.site !== undefined && record?.hello.site !== m.site) return false;
  for (const label of m.labels ?? []) {
    const eq = label.indexOf('=');
    if (record?.hello.labels[label.slice(0, eq)] !== label.slice(eq + 1)) return false;
  }
  return true;
}

function priorityOf(rules: TakeoverRules, record: AgentRecord | undefined, id: string): number {
  const configured = rules.priorities[id];
  if (configured !== undefined) return configured;
  const label = Number(record?.hello.labels['priority']);
  return Number.isFinite(label) ? label : 0;
}

/** The first policy rule letting `taker` preempt every victim host on `verdict`, or why none does. */
export function policyAllows(
  deps: FleetDeps,
  rules: TakeoverRules,
  taker: string,
  victims: readonly string[],
  verdict: 'failed' | 'greedy',
): { rule?: PolicyRule; detail: string } {
  if (rules.policy.length === 0) return { detail: 'no preempt policy configured: any host may' };
  const t = deps.devices.get(taker);
  for (const rule of rules.policy) {
    if (!(rule.verdicts ?? ['failed', 'greedy']).includes(verdict)) continue;
    if (!matches(rule.taker, t, taker)) continue;
    const ok = victims.every((v) => {
      const r = deps.devices.get(v);
      if (!matches(rule.victim, r, v)) return false;
      if (rule.sameSite === true && (r === undefined || r.hello.site !== t?.hello.site))
        return false;
      return !(
        rule.higherPriority === true && priorityOf(rules, t, taker) <= priorityOf(rules, r, v)
      );
    });
    if (ok && victims.length > 0) return { rule, detail: `policy rule "${rule.name}" allows it` };
  }
  return {
    detail: `no preempt policy rule lets ${taker} preempt ${victims.join(', ') || 'an unknown host'} on a ${verdict} verdict`,
  };
}

/**
 * Judges a takeover: failed first, then greedy, then the policy. `force` (with a reason, checked by the caller)
 * makes an unproven or disallowed takeover allowed and says what it overrides.
 */
export async function judgeTakeover(
  deps: FleetDeps,
  rules: TakeoverRules,
  c: TakeoverCase,
  force: boolean,
  signal?: AbortSignal,
): Promise<TakeoverVerdict> {
  const now = (c.now ?? new Date()).getTime();
  const failed = await judgeFailed(deps, rules, c, now, signal);
  const greedy = rules.greedy
    ? await judgeGreedy(deps, c, now, signal)
    : { proven: false, evidence: [ev('greedy', false, '', 'the greedy rule is off')] };
  const evidence = [...failed.evidence, ...greedy.evidence];
  const kind = failed.proven
    ? TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_FAILED
    : greedy.proven
      ? TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_GREEDY
      : TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_UNPROVEN;
  let allowed = false;
  let policyRule = '';
  let overrides = '';
  if (kind !== TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_UNPROVEN) {
    const { hosts } = victimHosts(c);
    const verdict = kind === TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_FAILED ? 'failed' : 'greedy';
    const policy = policyAllows(deps, rules, c.taker, hosts, verdict);
    evidence.push(
      ev('policy', policy.rule !== undefined || rules.policy.length === 0, c.taker, policy.detail),
    );
    allowed = policy.rule !== undefined || rules.policy.length === 0;
    policyRule = policy.rule?.name ?? '';
    if (!allowed) overrides = policy.detail;
  } else {
    overrides = `no rule proves the victim failed or greedy (${evidence
      .filter((e) => !e.holds)
      .map((e) => e.detail)
      .join('; ')})`;
  }
  const forced = !allowed && force;
  const name = kindName(kind);
  const summary = allowed
    ? `${name}: ${evidence
        .filter((e) => e.holds)
        .map((e) => e.detail)
        .join('; ')}`
    : forced
      ? `forced: overrides ${overrides}`
      : `refused: ${overrides}; an admin may force it with a reason`;
  return TakeoverVerdict.fromPartial({
    kind,
    allowed: allowed || forced,
    forced,
    overrides: forced ? overrides : '',
    evidence,
    policyRule,
    summary,
  });
}

/** failed | greedy | unproven. */
export function kindName(kind: TakeoverVerdictKind): string {
  switch (kind) {
    case TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_FAILED:
      return 'failed';
    case TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_GREEDY:
      return 'greedy';
    default:
      return 'unproven';
  }
}

/** The verdict as one line for the history's reason column (at most `max` characters). */
export function verdictRecord(v: TakeoverVerdict, max: number): string {
  const facts = v.evidence.map((e) => `${e.holds ? '+' : '-'}${e.rule}: ${e.detail}`).join('; ');
  const head = `takeover verdict ${kindName(v.kind)}${v.forced ? ' (forced)' : ''}${v.policyRule ? ` by policy "${v.policyRule}"` : ''}`;
  const text = `${head}${v.forced ? ` overriding ${v.overrides}` : ''} | evidence: ${facts}`;
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
