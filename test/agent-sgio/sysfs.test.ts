import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { listScsiGenericNodes, transportIdFromInitiatorName } from '../../agent/sysfs.js';

/** A fake sysfs + configfs: one HBA of each kind the agent knows, plus devices it must skip. */
let root: string;

async function put(path: string, text: string): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), `${text}\n`);
}

async function link(path: string, target: string): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await symlink(relative(dirname(join(root, path)), join(root, target)), join(root, path));
}

/** Adds scsi_device `devPath` (under devices/) and /sys/class/scsi_generic/<sg> pointing at it. */
async function scsiDevice(
  sg: string,
  devPath: string,
  type: number,
  vendor: string,
  model: string,
  rev: string,
) {
  const dir = `devices/${devPath}`;
  await put(`${dir}/type`, String(type));
  await put(`${dir}/vendor`, vendor.padEnd(8));
  await put(`${dir}/model`, model.padEnd(16));
  await put(`${dir}/rev`, rev.padEnd(4));
  await link(`class/scsi_generic/${sg}/device`, dir);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'prfleet-sysfs-'));
  // host0: SAS HBA; the changer and its drive behind port-0:1 (phy-0:4)
  await scsiDevice(
    'sg0',
    'pci0000:00/0000:00:01.0/host0/port-0:1/end_device-0:1/target0:0:0/0:0:0:0',
    8,
    'QUANTUM',
    'UHDL',
    '0095',
  );
  await scsiDevice(
    'sg1',
    'pci0000:00/0000:00:01.0/host0/port-0:1/end_device-0:1/target0:0:0/0:0:0:1',
    1,
    'HP',
    'Ultrium 6-SCSI',
    '35GD',
  );
  await mkdir(join(root, 'devices/pci0000:00/0000:00:01.0/host0/port-0:1/phy-0:4'), {
    recursive: true,
  });
  await put('class/sas_phy/phy-0:4/sas_address', '0x500605b0000272b4');
  await put('class/scsi_host/host0/proc_name', 'mpt3sas');
  // host1: FC HBA with a tape drive
  await scsiDevice(
    'sg2',
    'pci0000:00/0000:00:02.0/host1/rport-1:0-0/target1:0:0/1:0:0:0',
    1,
    'IBM',
    'ULT3580-TD8',
    'Q3G0',
  );
  await put('class/fc_host/host1/port_name', '0x21000024ff123456');
  await put('class/scsi_host/host1/proc_name', 'qla2xxx');
  // host2: iSCSI session with a changer
  await scsiDevice(
    'sg3',
    'platform/host2/session1/target2:0:0/2:0:0:0',
    8,
    'QUANTUM',
    'UHDL',
    '0095',
  );
  await put('class/iscsi_session/session1/initiatorname', 'iqn.1993-08.org.debian:01:abcdef');
  await put('class/iscsi_session/session1/isid', '23D000000001');
  // host3: LIO tcm_loop exporting disks (type 0) through two TPGs
  await scsiDevice(
    'sg4',
    'platform/tcm_loop_0/tcm_loop_adapter_0/host3/target3:0:1/3:0:1:0',
    0,
    'LIO-ORG',
    'pr_lun',
    '4.0',
  );
  await scsiDevice(
    'sg10',
    'platform/tcm_loop_0/tcm_loop_adapter_0/host3/target3:0:2/3:0:2:0',
    0,
    'LIO-ORG',
    'pr_lun',
    '4.0',
  );
  await put('class/scsi_host/host3/proc_name', 'tcm_loopback');
  await put(
    'kernel/config/target/loopback/naa.5001405000000001/tpgt_1/nexus',
    'naa.50014050000000a1',
  );
  await put('kernel/config/target/loopback/naa.5001405000000001/tpgt_1/address', '3:0:1');
  await put(
    'kernel/config/target/loopback/naa.5001405000000001/tpgt_2/nexus',
    'naa.50014050000000a2',
  );
  await put('kernel/config/target/loopback/naa.5001405000000001/tpgt_2/address', '3:0:2');
  // a second tcm_loop WWN on another host: must not be confused with host3's TPGs
  await put(
    'kernel/config/target/loopback/naa.5001405000000002/tpgt_1/nexus',
    'naa.50014050000000b1',
  );
  await put('kernel/config/target/loopback/naa.5001405000000002/tpgt_1/address', '9:0:1');
  // host4: an unknown HBA with a CD-ROM (type 5) and a tape
  await scsiDevice('sg5', 'platform/host4/target4:0:0/4:0:0:0', 5, 'QEMU', 'QEMU DVD-ROM', '2.5+');
  await scsiDevice('sg6', 'platform/host4/target4:0:1/4:0:1:0', 1, 'IBM', 'ULTRIUM-TD5', 'B6W1');
  // noise: not an sg entry, and an entry whose device link dangles
  await mkdir(join(root, 'class/scsi_generic/not-sg'), { recursive: true });
  await mkdir(join(root, 'class/scsi_generic/sg7'), { recursive: true });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('listScsiGenericNodes', () => {
  it('lists tapes and changers by default, in sg number order, with vendor/model/rev and initiator ports', async () => {
    const nodes = await listScsiGenericNodes({ sysfsRoot: root });
    expect(nodes).toEqual([
      {
        path: '/dev/sg0',
        name: 'sg0',
        hctl: '0:0:0:0',
        peripheralDeviceType: 8,
        vendor: 'QUANTUM',
        model: 'UHDL',
        rev: '0095',
        hostDriver: 'mpt3sas',
        initiatorPort: { protocol: 'sas', sasAddress: 0x500605b0000272b4n },
      },
      {
        path: '/dev/sg1',
        name: 'sg1',
        hctl: '0:0:0:1',
        peripheralDeviceType: 1,
        vendor: 'HP',
        model: 'Ultrium 6-SCSI',
        rev: '35GD',
        hostDriver: 'mpt3sas',
        initiatorPort: { protocol: 'sas', sasAddress: 0x500605b0000272b4n },
      },
      {
        path: '/dev/sg2',
        name: 'sg2',
        hctl: '1:0:0:0',
        peripheralDeviceType: 1,
        vendor: 'IBM',
        model: 'ULT3580-TD8',
        rev: 'Q3G0',
        hostDriver: 'qla2xxx',
        initiatorPort: { protocol: 'fc', wwpn: 0x21000024ff123456n },
      },
      {
        path: '/dev/sg3',
        name: 'sg3',
        hctl: '2:0:0:0',
        peripheralDeviceType: 8,
        vendor: 'QUANTUM',
        model: 'UHDL',
        rev: '0095',
        initiatorPort: {
          protocol: 'iscsi',
          name: 'iqn.1993-08.org.debian:01:abcdef',
          isid: '23d000000001',
        },
      },
      {
        path: '/dev/sg6',
        name: 'sg6',
        hctl: '4:0:1:0',
        peripheralDeviceType: 1,
        vendor: 'IBM',
        model: 'ULTRIUM-TD5',
        rev: 'B6W1',
      },
    ]);
  });

  it('adds disks with includeDisks, mapping tcm_loop nexus names to SAS TransportIDs', async () => {
    const nodes = await listScsiGenericNodes({ sysfsRoot: root, includeDisks: true });
    const disks = nodes.filter((n) => n.peripheralDeviceType === 0);
    expect(
      disks.map((n) => [n.path, n.hctl, n.vendor, n.model, n.hostDriver, n.initiatorPort]),
    ).toEqual([
      [
        '/dev/sg4',
        '3:0:1:0',
        'LIO-ORG',
        'pr_lun',
        'tcm_loopback',
        { protocol: 'sas', sasAddress: 0x50014050000000a1n },
      ],
      [
        '/dev/sg10',
        '3:0:2:0',
        'LIO-ORG',
        'pr_lun',
        'tcm_loopback',
        { protocol: 'sas', sasAddress: 0x50014050000000a2n },
      ],
    ]);
    expect(nodes.map((n) => n.name)).not.toContain('sg5'); // CD-ROM: never
  });

  it('uses the configured initiator port where the kernel exposes none, and honours devRoot/peripheralTypes', async () => {
    const nodes = await listScsiGenericNodes({
      sysfsRoot: root,
      devRoot: '/guest/dev',
      peripheralTypes: [1],
      defaultInitiatorPort: { protocol: 'iscsi', name: 'iqn.2026-01.example:host-a' },
    });
    expect(nodes.map((n) => [n.path, n.initiatorPort])).toEqual([
      ['/guest/dev/sg1', { protocol: 'sas', sasAddress: 0x500605b0000272b4n }],
      ['/guest/dev/sg2', { protocol: 'fc', wwpn: 0x21000024ff123456n }],
      ['/guest/dev/sg6', { protocol: 'iscsi', name: 'iqn.2026-01.example:host-a' }],
    ]);
  });

  it('returns [] when sysfs has no scsi_generic class', async () => {
    expect(await listScsiGenericNodes({ sysfsRoot: join(root, 'nowhere') })).toEqual([]);
  });
});

describe('transportIdFromInitiatorName', () => {
  it.each([
    ['naa.50014050000000a1', { protocol: 'sas', sasAddress: 0x50014050000000a1n }],
    ['fc.21000024ff123456', { protocol: 'fc', wwpn: 0x21000024ff123456n }],
    ['21:00:00:24:ff:12:34:56', { protocol: 'fc', wwpn: 0x21000024ff123456n }],
    [
      'iqn.2003-01.org.linux-iscsi:host-a',
      { protocol: 'iscsi', name: 'iqn.2003-01.org.linux-iscsi:host-a' },
    ],
    ['garbage', undefined],
  ])('maps %s', (name, expected) => {
    expect(transportIdFromInitiatorName(name)).toEqual(expected);
  });
});
