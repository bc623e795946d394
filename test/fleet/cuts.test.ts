import { describe, expect, it } from 'vitest';
import { TransportError } from '../../agent/transport/transport.js';
import { RolloutResult, StepState, type PlanStep } from '../../src/gen/prfleet/v1/fleet.js';
import { formatKey } from '../../src/common/key-layout.js';
import type { CommandRouter } from '../../src/server/router.js';
import type { AgentRegistry } from '../../src/server/agents/index.js';
import { collect, finished, startFleetHarness, stepEvents, type FleetHarness } from './harness.js';

/**
 * Connection cuts at every point of one PROUT's exchange. The rollout registers host-a on loader2 (changer via
 * /dev/sg3, drive via /dev/sg4); the cut hits host-a's PROUT on /dev/sg4. After each run: the PROUT reached the
 * device at most once, and the journal says what became of it.
 */
const CUT_PATH = '/dev/sg4';

async function setup(h: FleetHarness): Promise<bigint> {
  const key =
    (
      await h.client.allocateKey({
        site: 'dc1',
        agentId: 'host-a',
        purpose: 'backup',
        owner: 'ops',
      })
    ).key?.key ?? 0n;
  await h.client.setDesiredState({
    scope: { scope: { $case: 'loaderId', value: 'loader2' } },
    state: { registeredAgentIds: ['host-a'] },
    updatedBy: 'test',
  });
  return key;
}

function isCutProut(host: string, path: string, cdb: Uint8Array): boolean {
  return host === 'host-a' && path === CUT_PATH && cdb[0] === 0x5f;
}

const deliveredAtCut = (h: FleetHarness) =>
  h.delivered.filter((d) => d.host === 'host-a' && d.path === CUT_PATH);

/** host-a's registrations with `key` on loader2-drive, as the emulator holds them. */
function registrationsOnDrive(h: FleetHarness, key: bigint) {
  return h.fabric
    .logicalUnit('loader2-drive')
    .snapshot()
    .registrations.filter((r) => r.key === formatKey(key));
}

async function apply(h: FleetHarness, operationId: string, steps: PlanStep[] = []) {
  return collect(
    h.client.apply({
      selector: { loaderIds: ['loader2'] },
      steps,
      options: { operationId, errorThreshold: 5 },
    }),
  );
}

function cutStepKey(events: Awaited<ReturnType<typeof apply>>): string {
  const e = stepEvents(events).find((s) => s.step?.path === CUT_PATH && s.idempotencyKey !== '');
  if (!e) throw new Error('no event for the cut step');
  return e.idempotencyKey;
}

/** A router that cuts host-a's connection just before (or just after) the PROUT on CUT_PATH is dispatched. */
function cuttingRouter(
  when: 'before' | 'after' | 'never',
  armed: { on: boolean },
  sent: string[] = [],
) {
  return (inner: CommandRouter, agents: AgentRegistry): CommandRouter => {
    const cut = () => {
      const s = agents.session('host-a');
      if (s) agents.close(s, 'test cut');
    };
    return {
      get draining() {
        return inner.draining;
      },
      get inFlight() {
        return inner.inFlight;
      },
      startDraining: () => inner.startDraining(),
      whenIdle: (ms) => inner.whenIdle(ms),
      async dispatch(agentId, command, options) {
        const atCut =
          agentId === 'host-a' && command.path === CUT_PATH && command.kind?.$case === 'prout';
        if (atCut) sent.push(command.idempotencyKey);
        const hit = armed.on && atCut && when !== 'never';
        if (hit) armed.on = false;
        if (hit && when === 'before') cut();
        const result = await inner.dispatch(agentId, command, options);
        if (hit && when === 'after') cut();
        return result;
      },
    };
  };
}

describe('connection cuts around a PROUT', { timeout: 120_000 }, () => {
  it('cut before send: nothing reaches the device, the journal records it unsent, and a repeat sends it once', async () => {
    const armed = { on: true };
    const h = await startFleetHarness({ wrapRouter: cuttingRouter('before', armed) });
    const key = await setup(h);
    const first = await apply(h, 'op-cut-before');
    const failedStep = stepEvents(first).find(
      (s) => s.step?.path === CUT_PATH && s.state === StepState.STEP_STATE_FAILED,
    );
    expect(failedStep?.message).toMatch(/not sent: UNAVAILABLE/);
    expect(deliveredAtCut(h)).toHaveLength(0);
    const entry = await h.store.journal.get(cutStepKey(first));
    expect(entry).toMatchObject({
      state: 'done',
      result: expect.objectContaining({ sent: false, applied: false }),
    });
    expect(registrationsOnDrive(h, key)).toHaveLength(0);

    await h.settled();
    const second = await apply(h, 'op-cut-before');
    expect(finished(second).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
    expect(deliveredAtCut(h)).toHaveLength(1);
    expect(registrationsOnDrive(h, key)).toHaveLength(1);
  });

  it('cut after the agent received it and the device ran it: UNKNOWN, reconciled as applied, never re-sent', async () => {
    const h = await startFleetHarness();
    const key = await setup(h);
    let cuts = 0;
    h.intercept(async ({ host, path, request, run }) => {
      if (isCutProut(host, path, request.cdb) && cuts === 0) {
        cuts += 1;
        h.cut('host-a'); // the result will have nowhere to go
      }
      return run();
    });
    const events = await apply(h, 'op-cut-ran');
    const states = stepEvents(events)
      .filter((s) => s.step?.path === CUT_PATH)
      .map((s) => s.state);
    expect(states).toEqual([
      StepState.STEP_STATE_STARTED,
      StepState.STEP_STATE_UNKNOWN,
      StepState.STEP_STATE_RECONCILED_APPLIED,
    ]);
    expect(finished(events).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
    expect(deliveredAtCut(h)).toHaveLength(1);
    expect(registrationsOnDrive(h, key)).toHaveLength(1);
    const entry = await h.store.journal.get(cutStepKey(events));
    expect(entry).toMatchObject({
      state: 'done',
      result: expect.objectContaining({ outcome: 'RECONCILED_APPLIED', applied: true }),
    });
  });

  it('cut after the agent received it but the device never ran it: reconciled as not run, re-sent under the same key, runs once', async () => {
    const h = await startFleetHarness();
    const key = await setup(h);
    let cuts = 0;
    h.intercept(async ({ host, path, request, run }) => {
      if (isCutProut(host, path, request.cdb) && cuts === 0) {
        cuts += 1;
        h.cut('host-a');
        throw new TransportError('node vanished (test)', path, 19, 'ENODEV');
      }
      return run();
    });
    const events = await apply(h, 'op-cut-not-run');
    const cutEvents = stepEvents(events).filter((s) => s.step?.path === CUT_PATH);
    expect(cutEvents.map((s) => s.state)).toEqual([
      StepState.STEP_STATE_STARTED,
      StepState.STEP_STATE_UNKNOWN,
      StepState.STEP_STATE_SUCCEEDED,
    ]);
    expect(cutEvents[2]?.message).toContain('same idempotency key');
    expect(cutEvents[2]?.idempotencyKey).toBe(cutEvents[0]?.idempotencyKey);
    expect(deliveredAtCut(h)).toHaveLength(1);
    expect(registrationsOnDrive(h, key)).toHaveLength(1);
    expect((await h.store.journal.get(cutStepKey(events)))?.state).toBe('done');
  });

  it('cut while the device is still running it: the re-sent copy is refused as a duplicate, the first copy is the one that runs', async () => {
    const sent: string[] = [];
    const h = await startFleetHarness({ wrapRouter: cuttingRouter('never', { on: false }, sent) });
    const key = await setup(h);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let cuts = 0;
    h.intercept(async ({ host, path, request, run }) => {
      if (isCutProut(host, path, request.cdb) && cuts === 0) {
        cuts += 1;
        h.cut('host-a');
        setTimeout(release, 1_000); // long enough for the agent to reconnect and the engine to re-send
        await gate;
      }
      return run();
    });
    const events = await apply(h, 'op-cut-running');
    const states = stepEvents(events)
      .filter((s) => s.step?.path === CUT_PATH)
      .map((s) => s.state);
    expect(states).toEqual([
      StepState.STEP_STATE_STARTED,
      StepState.STEP_STATE_UNKNOWN,
      StepState.STEP_STATE_RECONCILED_APPLIED,
    ]);
    // The engine did send a second copy (same key) while the first was stuck; the agent refused it.
    expect(sent.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sent).size).toBe(1);
    expect(deliveredAtCut(h)).toHaveLength(1);
    expect(registrationsOnDrive(h, key)).toHaveLength(1);
  });

  it('cut after the result came back: the step succeeded, and a repeat of the same plan finds it in the journal and sends nothing', async () => {
    const armed = { on: true };
    const h = await startFleetHarness({ wrapRouter: cuttingRouter('after', armed) });
    const key = await setup(h);
    const plan = await h.client.plan({ selector: { loaderIds: ['loader2'] } });
    const first = await apply(h, 'op-cut-after', plan.steps);
    expect(finished(first).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
    expect(deliveredAtCut(h)).toHaveLength(1);
    await h.settled();
    const second = await apply(h, 'op-cut-after', plan.steps);
    const again = stepEvents(second).filter((s) => s.step?.path === CUT_PATH);
    expect(again.map((s) => s.state)).toEqual([StepState.STEP_STATE_ALREADY_DONE]);
    expect(finished(second).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
    expect(deliveredAtCut(h)).toHaveLength(1);
    expect(registrationsOnDrive(h, key)).toHaveLength(1);
  });
});
