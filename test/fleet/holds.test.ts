/**
 * Every kind of hold named, with the safe way out (issue 20, point 3), on the emulated fabric with real agents:
 * the audit infers an SPC-2 reservation and names its holder's path, reports a medium-removal prevention the
 * device answered, and ResetLogicalUnit breaks the SPC-2 reservation with a logical unit reset from an agent —
 * refused while persistent-reservation state exists or when there is nothing to break, recorded in the history,
 * followed by the unit attention (29h) on the other nexuses.
 */
import { describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc-common';
import { Command } from '../../src/gen/prfleet/v1/agent.js';
import { FindingKind, type Finding } from '../../src/gen/prfleet/v1/fleet.js';
import { Outcome, PrinAction, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import { HoldMemory } from '../../src/server/fleet/holds.js';
import { LU_RESET_ACTION } from '../../src/server/fleet/lu-reset.js';
import { tapResults } from '../../src/server/router.js';
import { startFleetHarness, type FleetHarness } from './harness.js';

const DRIVE1 = 'naa.5000e11100000002';
const DRIVE2 = 'naa.5000e11100000004';
const RESERVE_6 = Uint8Array.of(0x16, 0, 0, 0, 0, 0);

/** `host` sends RESERVE(6) through `path` (as a host tool such as an old backup application would). */
function spc2Reserve(h: FleetHarness, host: string, path: string): number {
  const nexus = h.fabric
    .host(host)
    .transport.paths()
    .find((n) => n.path === path);
  if (nexus === undefined) throw new Error(`${host} has no ${path}`);
  const r = nexus.logicalUnit.execute(nexus.initiator, {
    cdb: RESERVE_6,
    dataInLength: 0,
    timeoutMs: 1000,
  });
  return r.status;
}

async function audit(h: FleetHarness, loader: string): Promise<Finding[]> {
  const out: Finding[] = [];
  for await (const r of h.client.audit({ selector: { loaderIds: [loader] } })) {
    if (r.event?.$case === 'report') out.push(...r.event.value.findings);
    if (r.event?.$case === 'summary') out.push(...r.event.value.loaderFindings);
  }
  return out;
}

function readKeys(h: FleetHarness, host: string, path: string) {
  return h.router.dispatch(
    host,
    Command.fromPartial({
      path,
      kind: { $case: 'prin', value: { action: PrinAction.PRIN_ACTION_READ_KEYS } },
    }),
    { timeoutMs: 2000 },
  );
}

describe('holds other than a persistent reservation', { timeout: 120_000 }, () => {
  it('names an SPC-2 reservation and its holder path; a logical unit reset from an agent breaks it, with a unit attention after', async () => {
    const h = await startFleetHarness();
    expect(spc2Reserve(h, 'host-c', '/dev/sg1')).toBe(0); // GOOD
    const spc2 = (await audit(h, 'loader1')).filter(
      (f) => f.kind === FindingKind.FINDING_KIND_SPC2_RESERVATION,
    );
    expect(spc2).toHaveLength(1);
    expect(spc2[0]).toMatchObject({ luId: DRIVE1, agentId: 'host-c', path: '/dev/sg1' });
    expect(spc2[0]?.message).toMatch(
      /^SPC-2 reservation \(RESERVE\(6\)\/\(10\)\) on naa\.5000e11100000002, held by host-c through \/dev\/sg1 \(the only path TEST UNIT READY passes on\): PERSISTENT RESERVE IN conflicts on .*host-a:\/dev\/sg2/,
    );
    expect(spc2[0]?.suggestedAction).toContain(
      `prfleet reset-lu --lu ${DRIVE1} --agent host-c --reason <why>`,
    );

    const noReason = await h.client
      .resetLogicalUnit({ luId: DRIVE1, reason: '' })
      .catch((e: unknown) => e);
    expect(noReason).toMatchObject({ code: Status.INVALID_ARGUMENT });
    const dry = await h.client.resetLogicalUnit({
      luId: DRIVE1,
      reason: 'host-c died',
      dryRun: true,
    });
    expect(dry).toMatchObject({ agentId: 'host-c', path: '/dev/sg1' });
    expect(dry.result).toBeUndefined();
    expect(h.fabric.logicalUnit('loader1-drive').snapshot().spc2Holder).not.toBeNull();

    const done = await h.client.resetLogicalUnit({
      luId: DRIVE1,
      agentId: 'host-a',
      reason: 'host-c died holding the drive',
    });
    expect(done).toMatchObject({ agentId: 'host-a', path: '/dev/sg2', released: true });
    expect(done.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(h.fabric.logicalUnit('loader1-drive').snapshot().spc2Holder).toBeNull();
    const [entry] = (await h.store.history.list({ luId: DRIVE1, limit: 10_000 })).filter(
      (e) => e.action === LU_RESET_ACTION && e.reason === 'host-c died holding the drive',
    );
    expect(entry).toMatchObject({ agentId: 'host-a', path: '/dev/sg2', outcome: 'OUTCOME_GOOD' });
    expect((await h.store.history.verify()).ok).toBe(true);
    // Every other nexus meets the reset's unit attention (29h/03h on this profile) on the read right after it.
    expect(done.unitAttentions).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^host-b:\/dev\/sg1: .*bus device reset function occurred/),
        expect.stringMatching(/^host-c:\/dev\/sg1: .*bus device reset function occurred/),
      ]),
    );
    const later = await readKeys(h, 'host-b', '/dev/sg1');
    expect(later.outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('refuses a reset while persistent-reservation state exists, and when there is nothing to break', async () => {
    const h = await startFleetHarness();
    await h.prout('host-a', '/dev/sg4', {
      action: ProutAction.PROUT_ACTION_REGISTER,
      serviceActionKey: 0xa1n,
    });
    const withPr = await h.client
      .resetLogicalUnit({ luId: DRIVE2, reason: 'x' })
      .catch((e: unknown) => e);
    expect(withPr).toMatchObject({ code: Status.FAILED_PRECONDITION });
    expect(String(withPr)).toMatch(
      /1 persistent-reservation registrations: a logical unit reset would abort/,
    );
    const nothing = await h.client
      .resetLogicalUnit({ luId: DRIVE1, reason: 'x' })
      .catch((e: unknown) => e);
    expect(String(nothing)).toMatch(/no SPC-2 reservation or medium-removal prevention seen/);
    expect(h.delivered.filter((d) => d.host !== 'host-a')).toEqual([]);
    expect(
      (await h.store.history.list({ limit: 10_000 })).filter(
        (e) => e.action === LU_RESET_ACTION && e.reason === 'x',
      ),
    ).toEqual([]);
  });

  it('reports MEDIUM REMOVAL PREVENTED (53h/02h) where the device answered it', async () => {
    const holds = new HoldMemory();
    const h = await startFleetHarness({
      holds,
      wrapRouter: (r) => tapResults(r, (result) => holds.note(result)),
    });
    h.intercept(async ({ host, path, request, run }) => {
      if (host !== 'host-b' || path !== '/dev/sg3' || request.cdb[0] !== 0x00) return run();
      const sense = new Uint8Array(18);
      sense.set([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x53, 0x02]);
      return {
        status: 2,
        sense,
        dataIn: new Uint8Array(0),
        resid: 0,
        hostStatus: 0,
        driverStatus: 8,
        durationMs: 0,
      };
    });
    await h.router.dispatch(
      'host-b',
      Command.fromPartial({ path: '/dev/sg3', kind: { $case: 'testUnitReady', value: {} } }),
      { timeoutMs: 2000, luId: DRIVE2 },
    );
    const found = (await audit(h, 'loader2')).filter(
      (f) => f.kind === FindingKind.FINDING_KIND_MEDIUM_REMOVAL_PREVENTED,
    );
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ luId: DRIVE2, agentId: 'host-b', path: '/dev/sg3' });
    expect(found[0]?.suggestedAction).toMatch(
      /allow removal .*prfleet reset-lu --lu naa\.5000e11100000004/,
    );
  });
});
