import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { discoverPath, DiscoveryError } from '../../agent/discovery.js';
import {
  createEmulatedFabric,
  loadFabric,
  type EmulatedFabric,
  type EmulatedHost,
} from '../../agent/fabric.js';
import {
  CapabilitySource,
  PrinAction,
  ProutAction,
  PrType,
} from '../../src/gen/prfleet/v1/scsi.js';
import { Command, ProutCommand, ReadElementStatusCommand } from '../../src/gen/prfleet/v1/agent.js';
import { capabilitySourceWords, checkSupported } from '../../src/common/capabilities.js';
import type { Path } from '../../src/gen/prfleet/v1/scsi.js';

const log = pino({ level: 'silent' });
const demo = new URL('../../examples/fabric-demo.yaml', import.meta.url).pathname;

async function describeHost(host: EmulatedHost): Promise<Map<string, Path>> {
  const out = new Map<string, Path>();
  for (const p of host.paths) {
    const device = await host.transport.open(p.path);
    out.set(
      p.path,
      await discoverPath(
        device,
        { path: p.path, initiatorPort: p.initiatorPort, loaderId: p.loaderId },
        { log },
      ),
    );
    await device.close();
  }
  return out;
}

describe('discoverPath over the emulated fabric', () => {
  let fabric: EmulatedFabric;
  afterEach(() => fabric.close());

  it('gives the same lu_id for one LU seen from different hosts and paths, different ones for changer and drive', async () => {
    fabric = createEmulatedFabric(await loadFabric(demo));
    const a = await describeHost(fabric.host('host-a'));
    const b = await describeHost(fabric.host('host-b'));
    const aChanger0 = a.get('/dev/sg0')!;
    const aChanger1 = a.get('/dev/sg1')!;
    const aDrive = a.get('/dev/sg2')!;
    const bChanger = b.get('/dev/sg0')!;
    expect(aChanger0.luId).not.toBe('');
    expect(aChanger0.luId).toBe(aChanger1.luId);
    expect(aChanger0.luId).toBe(bChanger.luId);
    expect(aDrive.luId).not.toBe(aChanger0.luId);
    expect(a.get('/dev/sg3')!.luId).not.toBe(aChanger0.luId); // loader 2's changer is another LU
    // The NAA from the fabric wins (scsi-pr.md §11.3: NAA first).
    expect(aChanger0.luId).toContain('5000e11100000001');
  });

  it('describes a SuperLoader changer path: type, identity, serial, nexus and capabilities', async () => {
    fabric = createEmulatedFabric(await loadFabric(demo));
    const a = await describeHost(fabric.host('host-a'));
    const changer = a.get('/dev/sg1')!;
    expect(changer).toMatchObject({
      path: '/dev/sg1',
      peripheralDeviceType: 8,
      vendor: 'QUANTUM',
      product: 'UHDL',
      serial: 'PM0000000001',
      relativeTargetPort: 2,
      loaderId: 'loader1',
      online: true,
    });
    expect(changer.initiatorPort?.display).toBe('sas:0x500605b000000a02');
    expect(changer.designators.some((d) => d.association === 0 && d.designatorType === 3)).toBe(
      true,
    );
    expect(changer.designators.some((d) => d.association === 1 && d.designatorType === 4)).toBe(
      true,
    );
    expect(changer.capabilities?.profile).toBe('superloader-changer');
    expect(changer.capabilities?.proutActions).not.toContain(
      ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
    );
    expect(changer.capabilities?.proutActions).toContain(ProutAction.PROUT_ACTION_REGISTER);
    expect(changer.capabilities?.prinActions).toContain(PrinAction.PRIN_ACTION_READ_KEYS);
    expect(changer.capabilities?.types).not.toContain(
      PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS,
    );

    const drive = a.get('/dev/sg2')!;
    expect(drive.peripheralDeviceType).toBe(1);
    expect(drive.capabilities?.profile).toBe('lto-drive');
    expect(drive.relativeTargetPort).toBe(1);
  });

  it('throws DiscoveryError naming the path when the node has vanished', async () => {
    fabric = createEmulatedFabric(await loadFabric(demo));
    const host = fabric.host('host-b');
    const device = await host.transport.open('/dev/sg0');
    host.transport.failPath('/dev/sg0');
    await expect(discoverPath(device, { path: '/dev/sg0' })).rejects.toThrow(DiscoveryError);
    await expect(discoverPath(device, { path: '/dev/sg0' })).rejects.toThrow(
      /\/dev\/sg0: INQUIRY failed/,
    );
  });
});

describe('discoverPath on a device no profile matches', () => {
  let fabric: EmulatedFabric;
  afterEach(() => fabric.close());

  const hostWith = (lu: {
    id: string;
    profile: 'spc4' | 'superloader-changer';
    serial: string;
    vendor: string;
    product: string;
  }) =>
    createEmulatedFabric({
      loaders: [{ id: 'l1', changer: lu }],
      hosts: [
        {
          id: 'h1',
          initiatorPorts: ['sas:0x500605b000000a01'],
          paths: [{ node: '/dev/sg0', lu: lu.id, initiatorPort: 'sas:0x500605b000000a01' }],
        },
      ],
    });

  it('probes REPORT CAPABILITIES and refuses up front what the device says it cannot do', async () => {
    // An SPC-4 device under an identity no profile knows; it reports all six types, SIP_C, ATP_C, PTPL_C.
    fabric = hostWith({
      id: 'acme',
      profile: 'spc4',
      serial: 'A1',
      vendor: 'ACME',
      product: 'WIDGET',
    });
    const path = (await describeHost(fabric.host('h1'))).get('/dev/sg0');
    const caps = path?.capabilities;
    expect(caps).toMatchObject({
      profile: 'unknown',
      source: CapabilitySource.CAPABILITY_SOURCE_PROBED,
      types: [1, 3, 5, 6, 7, 8],
      specIPt: true,
      allTgPt: true,
      aptpl: true,
      crh: true,
      allowCommands: 1,
      proutActions: [],
    });
    expect(capabilitySourceWords(caps)).toBe('probed (REPORT CAPABILITIES)');
    const prout = (p: Partial<ProutCommand>) =>
      Command.fromPartial({ kind: { $case: 'prout', value: ProutCommand.fromPartial(p) } });
    // Service actions are left to the device; a type outside the reported mask is refused.
    expect(
      checkSupported(caps, prout({ action: ProutAction.PROUT_ACTION_REGISTER_AND_MOVE })),
    ).toBeUndefined();
    expect(
      checkSupported(caps, prout({ action: ProutAction.PROUT_ACTION_RESERVE, type: 2 as PrType })),
    ).toMatch(/the device \(REPORT CAPABILITIES\) does not support reservation type/);
    // READ ELEMENT STATUS is left to the device too: REPORT CAPABILITIES does not tell a changer from a disk
    // (the LIO VM's TCM-User changer is probed like this).
    const res = Command.fromPartial({
      kind: { $case: 'readElementStatus', value: ReadElementStatusCommand.fromPartial({}) },
    });
    expect(checkSupported(caps, res)).toBeUndefined();
    expect(
      checkSupported(
        { ...caps!, source: CapabilitySource.CAPABILITY_SOURCE_PROFILE, profile: 'lio' },
        res,
      ),
    ).toMatch(/lio is not a medium changer/);
  });

  it('leaves a device without REPORT CAPABILITIES unknown, refusing nothing', async () => {
    fabric = hostWith({
      id: 'acme',
      profile: 'superloader-changer',
      serial: 'A2',
      vendor: 'ACME',
      product: 'LOADER',
    });
    const caps = (await describeHost(fabric.host('h1'))).get('/dev/sg0')?.capabilities;
    expect(caps?.profile).toBe('unknown');
    expect(caps?.source).toBe(CapabilitySource.CAPABILITY_SOURCE_UNSPECIFIED);
    expect(capabilitySourceWords(caps)).toBe('not known');
  });

  it('says a matched profile came from INQUIRY', async () => {
    fabric = createEmulatedFabric(await loadFabric(demo));
    const caps = (await describeHost(fabric.host('host-b'))).get('/dev/sg1')?.capabilities;
    expect(caps?.profile).toBe('lto-drive');
    expect(caps?.source).toBe(CapabilitySource.CAPABILITY_SOURCE_PROFILE);
  });
});
