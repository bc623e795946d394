import { describe, expect, it } from 'vitest';
import { Outcome, PrType, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import { RolloutPhase, RolloutResult, StepState } from '../../src/gen/prfleet/v1/fleet.js';
import { formatKey } from '../../src/common/key-layout.js';
import { collect, finished, startFleetHarness, stepEvents, type FleetHarness } from './harness.js';
import { DEFAULT_TAKEOVER_RULES } from '../../src/server/fleet/takeover-rules.js';

const EA = PrType.PR_TYPE_EXCLUSIVE_ACCESS;
const WE = PrType.PR_TYPE_WRITE_EXCLUSIVE;
const REG = ProutAction.PROUT_ACTION_REGISTER;
const RESERVE = ProutAction.PROUT_ACTION_RESERVE;

function hexKey(key: bigint): string {
  return formatKey(key);
}

async function keys(h: FleetHarness, ...agents: string[]): Promise<Record<string, bigint>> {
  const out: Record<string, bigint> = {};
  for (const agentId of agents) {
    out[agentId] =
      (await h.client.allocateKey({ site: 'dc1', agentId, purpose: 'backup', owner: 'ops' })).key
        ?.key ?? 0n;
  }
  return out;
}

async function desireLoader1(h: FleetHarness, holder = 'host-a') {
  await h.client.setDesiredState({
    scope: { scope: { $case: 'loaderId', value: 'loader1' } },
    state: {
      registeredAgentIds: ['host-a', 'host-b'],
      changer: { holderAgentId: holder, type: EA },
      drives: { holderAgentId: holder, type: WE },
    },
    updatedBy: 'test',
  });
}

describe('plan and apply', { timeout: 120_000 }, () => {
  it('plans guarded steps, applies them, and converges to the desired state', async () => {
    const h = await startFleetHarness();
    const k = await keys(h, 'host-a', 'host-b');
    await desireLoader1(h);
    const plan = await h.client.plan({ selector: { loaderIds: ['loader1'] } });
    expect(plan.blockers).toEqual([]);
    expect(plan.logicalUnits).toBe(2);
    // Changer: host-a on 2 paths + host-b, then RESERVE; drive: host-a + host-b, then RESERVE.
    expect(plan.steps.map((s) => s.description.replace(/0x[0-9a-f]{16}/g, 'K'))).toEqual([
      'host-a:/dev/sg0 register K',
      'host-a:/dev/sg1 register K',
      'host-b:/dev/sg0 register K',
      'host-a:/dev/sg0 reserve EA (3) with K',
      'host-a:/dev/sg2 register K',
      'host-b:/dev/sg1 register K',
      'host-a:/dev/sg2 reserve WE (1) with K',
    ]);
    // Each precondition is the state the previous steps leave: generation 0,1,2 then 3 for the RESERVE.
    expect(plan.steps.slice(0, 4).map((s) => s.precondition?.expectedGeneration)).toEqual([
      0, 1, 2, 3,
    ]);
    expect(plan.steps.every((s) => s.precondition?.expectedHolderKey === 0n)).toBe(true);
    expect(plan.steps.every((s) => s.reversible)).toBe(true);
    expect(h.delivered).toEqual([]); // planning sends no PROUT

    const events = await collect(
      h.client.apply({
        selector: { loaderIds: ['loader1'] },
        options: { operationId: 'op-converge' },
      }),
    );
    const end = finished(events);
    expect(end.result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
    expect(end.succeeded).toBe(7);
    expect(end.failed).toBe(0);
    expect(h.delivered).toHaveLength(7);
    const changer = h.fabric.logicalUnit('loader1-changer').snapshot();
    expect(changer.generation).toBe(3);
    expect(changer.registrations.map((r) => r.key).sort()).toEqual(
      [hexKey(k['host-a'] ?? 0n), hexKey(k['host-a'] ?? 0n), hexKey(k['host-b'] ?? 0n)].sort(),
    );
    expect(changer.reservation).toMatchObject({ type: EA, holderKey: hexKey(k['host-a'] ?? 0n) });
    expect(h.fabric.logicalUnit('loader1-drive').snapshot().reservation).toMatchObject({
      type: WE,
      holderKey: hexKey(k['host-a'] ?? 0n),
    });
    // Every PROUT is journaled done and in the history under its idempotency key.
    const started = stepEvents(events).filter((e) => e.state === StepState.STEP_STATE_STARTED);
    expect(started).toHaveLength(7);
    for (const e of started)
      expect((await h.store.journal.get(e.idempotencyKey))?.state).toBe('done');
    const history = await h.store.history.list({ limit: 1000 });
    const mine = history.filter((e) => e.idempotencyKey?.startsWith('fleet/op-converge/'));
    expect(mine.length).toBe(7);
    // The actor is the caller's principal (this harness has no authentication), never the client's operation id.
    expect(new Set(mine.map((e) => e.actor))).toEqual(new Set(['anonymous']));
    expect(mine[0]?.reason).toContain('op-converge');

    const again = await h.client.plan({ selector: { loaderIds: ['loader1'] } });
    expect(again.steps).toEqual([]);
    expect(again.inDesiredState).toBe(2);
  });

  it('sends nothing for a step whose LU changed under us, re-reads and re-plans', async () => {
    const h = await startFleetHarness();
    await keys(h, 'host-a', 'host-b');
    await desireLoader1(h);
    const plan = await h.client.plan({ selector: { luIds: [], loaderIds: ['loader1'] } });
    const changerSteps = plan.steps
      .filter((s) => s.path === '/dev/sg0' || s.path === '/dev/sg1')
      .filter((s) => s.luId === plan.steps[0]?.luId);
    // Someone else registers on the changer between plan and apply: PRgeneration moves from 0 to 1.
    expect(
      (await h.prout('host-c', '/dev/sg0', { action: REG, serviceActionKey: 0x77n })).outcome,
    ).toBe(Outcome.OUTCOME_GOOD);
    const before = h.delivered.length;
    const events = await collect(
      h.client.apply({ steps: changerSteps, options: { operationId: 'op-replan', maxReplans: 2 } }),
    );
    const steps = stepEvents(events);
    expect(steps[0]?.state).toBe(StepState.STEP_STATE_PRECONDITION_FAILED);
    expect(steps[0]?.message).toContain('PRgeneration is 1, expected 0');
    expect(events.some((e) => e.event?.$case === 'replanned')).toBe(true);
    const end = finished(events);
    expect(end.result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
    expect(end.replans).toBeGreaterThanOrEqual(1);
    // The stale step was never sent: every PROUT sent carried the re-planned precondition.
    const sent = stepEvents(events).filter((e) => e.state === StepState.STEP_STATE_STARTED);
    expect(sent.every((e) => (e.step?.precondition?.expectedGeneration ?? 0) >= 1)).toBe(true);
    expect(h.delivered.length - before).toBe(sent.length);
    const snapshot = h.fabric.logicalUnit('loader1-changer').snapshot();
    expect(snapshot.registrations.map((r) => r.key)).toContain('0x0000000000000077'); // not ours to remove (removeOthers off)
    expect(snapshot.reservation?.type).toBe(EA);
  });

  it('stops at the error threshold and rolls back completed steps in reverse order', async () => {
    const h = await startFleetHarness();
    await keys(h, 'host-a', 'host-b');
    await desireLoader1(h);
    // host-b's changer path fails like a vanished node: its REGISTER cannot be sent.
    h.fabric.host('host-b').transport.failPath('/dev/sg0');
    const events = await collect(
      h.client.apply({
        selector: { loaderIds: ['loader1'] },
        options: {
          operationId: 'op-rollback',
          maxConcurrency: 1,
          errorThreshold: 1,
          rollbackOnAbort: true,
        },
      }),
    );
    const end = finished(events);
    expect(end.result).toBe(RolloutResult.ROLLOUT_RESULT_ABORTED);
    expect(end.failed).toBe(1);
    expect(end.message).toContain('error threshold');
    const steps = stepEvents(events);
    const forward = steps
      .filter(
        (e) =>
          e.phase === RolloutPhase.ROLLOUT_PHASE_FORWARD &&
          e.state === StepState.STEP_STATE_SUCCEEDED,
      )
      .map((e) => e.step?.path);
    expect(forward).toEqual(['/dev/sg0', '/dev/sg1']); // host-a's two changer paths
    const undone = steps
      .filter(
        (e) =>
          e.phase === RolloutPhase.ROLLOUT_PHASE_ROLLBACK &&
          e.state === StepState.STEP_STATE_SUCCEEDED,
      )
      .map((e) => e.step?.path);
    expect(undone).toEqual(['/dev/sg1', '/dev/sg0']); // newest first
    expect(end.rolledBack).toBe(2);
    expect(steps.some((e) => e.state === StepState.STEP_STATE_CANCELLED)).toBe(true); // the drive never started
    const changer = h.fabric.logicalUnit('loader1-changer').snapshot();
    expect(changer.registrations).toEqual([]);
    expect(changer.reservation).toBeNull();
    expect(h.fabric.logicalUnit('loader1-drive').snapshot().registrations).toEqual([]);
  });

  it('refuses bad rollout options and steps with INVALID_ARGUMENT naming the field', async () => {
    const h = await startFleetHarness();
    const run = async (request: Parameters<typeof h.client.apply>[0]) =>
      collect(h.client.apply(request));
    await expect(run({ options: { operationId: 'has space' } })).rejects.toThrow(
      /options.operation_id/,
    );
    await expect(run({ steps: [{ luId: 'x' }] })).rejects.toThrow(/steps\[0\].agent_id/);
    await expect(
      collect(h.client.takeover({ agentId: 'host-a', victim: { $case: 'victimKey', value: 1n } })),
    ).rejects.toThrow(/selector/);
    expect(h.delivered).toEqual([]);
  });
});

describe('takeover', { timeout: 60_000 }, () => {
  it('preempts a failed host by agent on a loader: the taker registers and becomes holder; the victim is gone', async () => {
    const h = await startFleetHarness({
      takeoverRules: { ...DEFAULT_TAKEOVER_RULES, failedAfterMs: 1 },
    });
    const k = await keys(h, 'host-a', 'host-b');
    const B = k['host-b'] ?? 0n;
    const A = k['host-a'] ?? 0n;
    expect(
      (await h.prout('host-b', '/dev/sg3', { action: REG, serviceActionKey: B })).outcome,
    ).toBe(Outcome.OUTCOME_GOOD);
    expect(
      (await h.prout('host-b', '/dev/sg3', { action: RESERVE, reservationKey: B, type: WE }))
        .outcome,
    ).toBe(Outcome.OUTCOME_GOOD);
    expect(
      (await h.prout('host-b', '/dev/sg2', { action: REG, serviceActionKey: B })).outcome,
    ).toBe(Outcome.OUTCOME_GOOD);
    await h.stopAgent('host-b');

    const dry = await collect(
      h.client.takeover({
        selector: { loaderIds: ['loader2'] },
        victim: { $case: 'victimAgentId', value: 'host-b' },
        agentId: 'host-a',
        options: { dryRun: true },
      }),
    );
    expect(finished(dry).result).toBe(RolloutResult.ROLLOUT_RESULT_DRY_RUN);
    expect(stepEvents(dry).map((e) => e.step?.description.replace(/0x[0-9a-f]{16}/g, 'K'))).toEqual(
      [
        'host-a:/dev/sg3 register K',
        'host-a:/dev/sg3 PREEMPT K with K (type WE (1))',
        'host-a:/dev/sg4 register K',
        'host-a:/dev/sg4 PREEMPT K with K (type WE (1))',
      ],
    );
    expect(h.delivered.filter((d) => d.host === 'host-a')).toEqual([]);

    const events = await collect(
      h.client.takeover({
        selector: { loaderIds: ['loader2'] },
        victim: { $case: 'victimAgentId', value: 'host-b' },
        agentId: 'host-a',
        abort: true,
        options: { operationId: 'op-takeover' },
      }),
    );
    expect(finished(events).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
    const drive = h.fabric.logicalUnit('loader2-drive').snapshot();
    expect(drive.registrations.map((r) => r.key)).toEqual([hexKey(A)]);
    expect(drive.reservation).toMatchObject({ holderKey: hexKey(A), type: WE });
    const changer = h.fabric.logicalUnit('loader2-changer').snapshot();
    expect(changer.registrations.map((r) => r.key)).toEqual([hexKey(A)]);
    expect(changer.reservation).toBeNull();
    // PREEMPT AND ABORT was sent (SA 05h) once per LU.
    const preempts = h.delivered.filter((d) => d.bytes.startsWith('5f05'));
    expect(preempts).toHaveLength(2);
  });
});
