// ListLoaders on the demo fabric: the changer's own element status groups the drives (DVCID names the drive LU),
// cartridges sit next to who holds each drive, findings appear where the two halves disagree, views are cached.
import { describe, expect, it } from 'vitest';
import { FindingKind, type Loader } from '../../src/gen/prfleet/v1/fleet.js';
import { Outcome, ProutAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { runFleetCli, startFleetHarness, type FleetHarness } from './harness.js';

const REG = ProutAction.PROUT_ACTION_REGISTER;
const RESERVE = ProutAction.PROUT_ACTION_RESERVE;
const EA = PrType.PR_TYPE_EXCLUSIVE_ACCESS;
const WE = PrType.PR_TYPE_WRITE_EXCLUSIVE;

async function good(
  h: FleetHarness,
  host: string,
  path: string,
  fields: Parameters<FleetHarness['prout']>[2],
) {
  const r = await h.prout(host, path, fields);
  expect(r.outcome, r.message).toBe(Outcome.OUTCOME_GOOD);
}

function loader1(loaders: readonly Loader[]): Loader {
  const l = loaders.find((x) => x.loaderId === 'loader1');
  if (!l) throw new Error(`no loader1 in ${loaders.map((x) => x.loaderId).join(', ')}`);
  return l;
}

describe('ListLoaders', { timeout: 120_000 }, () => {
  it('shows each drive with its cartridge and holder, grouped by the changer’s element status', async () => {
    const h = await startFleetHarness();
    // host-a holds the changer (WE), host-c the drive (EA): the demo's deadlock, with a cartridge in the drive.
    await good(h, 'host-a', '/dev/sg0', { action: REG, serviceActionKey: 0xaaaan });
    await good(h, 'host-a', '/dev/sg0', { action: RESERVE, reservationKey: 0xaaaan, type: WE });
    await good(h, 'host-c', '/dev/sg1', { action: REG, serviceActionKey: 0xccccn });
    await good(h, 'host-c', '/dev/sg1', { action: RESERVE, reservationKey: 0xccccn, type: EA });

    const { loaders } = await h.client.listLoaders({});
    expect(loaders.map((l) => l.loaderId)).toEqual(['loader1', 'loader2']);
    const l1 = loader1(loaders);
    expect(l1.grouping).toBe('element-status');
    expect(l1.error).toBe('');
    expect(l1.changerLuId).toBe('naa.5000e11100000001');
    expect(l1.changerHold).toMatchObject({ reserved: true, key: 0xaaaan, type: WE });
    expect(l1.drives).toHaveLength(1);
    expect(l1.drives[0]).toMatchObject({
      index: 0,
      luId: 'naa.5000e11100000002',
      identifier: 'naa.5000e11100000002',
      full: true,
      barcode: 'ABC001L8',
      sourceSlot: 1,
      hold: { reserved: true, key: 0xccccn, type: EA },
    });
    expect(l1.slots.filter((s) => s.full).map((s) => `${s.number}:${s.barcode}`)).toEqual([
      '2:ABC002L8',
      '3:ABC003L8',
      '16:CLN001L1',
    ]);
    expect(l1.slots.at(-1)).toMatchObject({ number: 17, mail: true, full: false });
    // The drive holds a cartridge, reserved by another host than the changer's holder.
    expect(l1.findings.map((f) => f.kind)).toContain(FindingKind.FINDING_KIND_CARTRIDGE_STRANDED);

    // Cached: a second call within max_age reads no element status; refresh reads again.
    const readAt = l1.readAt?.getTime();
    const again = loader1((await h.client.listLoaders({})).loaders);
    expect(again.readAt?.getTime()).toBe(readAt);
    await new Promise((r) => setTimeout(r, 5));
    const fresh = loader1((await h.client.listLoaders({ refresh: true })).loaders);
    expect(fresh.readAt?.getTime()).toBeGreaterThan(readAt ?? 0);

    // The CLI: the table and the one-line answer, by drive LU, by loader:index and by barcode.
    const table = await runFleetCli(h.address, ['loaders']);
    expect(table.exitCode).toBe(0);
    expect(table.stdout).toMatch(/drive 0.*ABC001L8 \(from slot 1\).*0x000000000000cccc EA/);
    for (const who of ['naa.5000e11100000002', 'loader1:0', 'ABC001L8']) {
      const line = await runFleetCli(h.address, ['who-holds', who]);
      expect(line.exitCode).toBe(0);
      expect(line.stdout).toMatch(
        /^naa\.5000e11100000002 \(drive 0 of loader1\): held by host-c:\/dev\/sg1 0x000000000000cccc EA; cartridge ABC001L8 \(from slot 1\)\n$/,
      );
    }
    expect((await runFleetCli(h.address, ['who-holds', 'ABC002L8'])).stdout).toMatch(
      /ABC002L8 is in slot 2 of loader1/,
    );
    expect((await runFleetCli(h.address, ['who-holds', 'NOPE'])).exitCode).toBe(81);

    // A loaded drive whose holder went offline.
    await h.stopAgent('host-c');
    const offline = loader1((await h.client.listLoaders({ refresh: true })).loaders);
    expect(offline.findings.map((f) => f.kind)).toContain(
      FindingKind.FINDING_KIND_LOADED_DRIVE_HOLDER_OFFLINE,
    );
    // The audit reads the element views too and raises the same finding among its loader findings.
    let loaderFindings: FindingKind[] = [];
    for await (const e of h.client.audit({ selector: { loaderIds: ['loader1'] } }))
      if (e.event?.$case === 'summary')
        loaderFindings = e.event.value.loaderFindings.map((f) => f.kind);
    expect(loaderFindings).toContain(FindingKind.FINDING_KIND_LOADED_DRIVE_HOLDER_OFFLINE);
    // Selecting by drive LU id finds its loader only.
    const byDrive = await h.client.listLoaders({ selector: { luIds: ['naa.5000e11100000004'] } });
    expect(byDrive.loaders.map((l) => l.loaderId)).toEqual(['loader2']);
  });
});
