/**
 * Parts of the rollout engine that stand alone (src/server/fleet/rollout/): how a step attempt's outcome is
 * written to the journal (settleStep, against the real store on PGlite), its journal keys, and the undo step a
 * rollback sends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProutCommand } from '../../src/gen/prfleet/v1/agent.js';
import { Precondition } from '../../src/gen/prfleet/v1/control.js';
import { PlanStep, RolloutPhase } from '../../src/gen/prfleet/v1/fleet.js';
import { CommandResult, Outcome, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import { attemptBase, settleStep } from '../../src/server/fleet/rollout/attempt-journal.js';
import { undoStep } from '../../src/server/fleet/rollout/rollback.js';

let store: Store;
beforeAll(async () => {
  store = await openStore({ inMemory: true });
}, 60_000);
afterAll(() => store?.close());

let n = 0;
async function settled(result: Partial<CommandResult>, note?: string) {
  const key = `test/settle/${++n}`;
  await store.journal.begin({ idempotencyKey: key, request: { n } });
  await settleStep(store.journal, key, note)(CommandResult.fromPartial(result), undefined);
  return store.journal.get(key);
}

describe('settleStep', () => {
  it('GOOD: done, sent and applied, with the note', async () => {
    const e = await settled({ outcome: Outcome.OUTCOME_GOOD, commandId: 'c1' }, 'why');
    expect(e?.state).toBe('done');
    expect(e?.result).toMatchObject({
      outcome: 'OUTCOME_GOOD',
      commandId: 'c1',
      sent: true,
      applied: true,
      message: 'why',
    });
  });

  it('REFUSED before the device: done, not sent (a new attempt is safe)', async () => {
    const e = await settled({ outcome: Outcome.OUTCOME_REFUSED, message: 'agent draining' });
    expect(e?.state).toBe('done');
    expect(e?.result).toMatchObject({ sent: false, applied: false, message: 'agent draining' });
  });

  it('a duplicate idempotency key refusal changes nothing: the first copy is the one that runs', async () => {
    const e = await settled({
      outcome: Outcome.OUTCOME_REFUSED,
      message: 'duplicate idempotency key',
    });
    expect(e?.state).toBe('pending');
  });

  it('UNKNOWN, TIMEOUT, TRANSPORT_ERROR: unknown, sent, not known applied', async () => {
    for (const outcome of [
      Outcome.OUTCOME_UNKNOWN,
      Outcome.OUTCOME_TIMEOUT,
      Outcome.OUTCOME_TRANSPORT_ERROR,
    ]) {
      const e = await settled({ outcome, message: 'link lost' });
      expect(e?.state).toBe('unknown');
      expect(e?.result).toMatchObject({ sent: true, applied: false, message: 'link lost' });
    }
  });

  it('any other device answer: done, sent, not applied', async () => {
    const e = await settled({ outcome: Outcome.OUTCOME_RESERVATION_CONFLICT });
    expect(e?.state).toBe('done');
    expect(e?.result).toMatchObject({
      outcome: 'OUTCOME_RESERVATION_CONFLICT',
      sent: true,
      applied: false,
    });
  });
});

describe('journal keys and undo steps', () => {
  const register = PlanStep.fromPartial({
    stepId: 's1',
    luId: 'naa.1',
    agentId: 'host-a',
    path: '/dev/sg1',
    prout: ProutCommand.fromPartial({
      action: ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY,
      serviceActionKey: 0x11n,
    }),
    reversible: true,
  });

  it('forward and rollback attempts of a step have their own keys', () => {
    expect(attemptBase('op', register, RolloutPhase.ROLLOUT_PHASE_FORWARD)).toBe('fleet/op/s1');
    expect(attemptBase('op', register, RolloutPhase.ROLLOUT_PHASE_ROLLBACK)).toBe(
      'fleet/op/rollback/s1',
    );
  });

  it('the undo of a REGISTER unregisters the key on the same path, guarded by the post-state', () => {
    const post = Precondition.fromPartial({ expectedGeneration: 7, expectedHolderKey: 0n });
    const undo = undoStep('naa.1', { step: register }, post);
    expect(undo?.agentId).toBe('host-a');
    expect(undo?.path).toBe('/dev/sg1');
    expect(undo?.precondition).toEqual(post);
    expect(undo?.prout).toEqual(
      ProutCommand.fromPartial({
        action: ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY,
        reservationKey: 0x11n,
        serviceActionKey: 0n,
      }),
    );
    expect(undo?.reversible).toBe(false);
    expect(undo?.stepId).not.toBe('s1');
    expect(undo?.description).toMatch(/^undo: host-a:\/dev\/sg1 /);
  });

  it('a PREEMPT has no undo', () => {
    const preempt = PlanStep.fromPartial({
      ...register,
      prout: ProutCommand.fromPartial({
        action: ProutAction.PROUT_ACTION_PREEMPT,
        reservationKey: 0x11n,
        serviceActionKey: 0x22n,
      }),
    });
    expect(undoStep('naa.1', { step: preempt }, Precondition.fromPartial({}))).toBeUndefined();
  });
});
