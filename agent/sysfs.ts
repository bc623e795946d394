/**
 * Discovery of SCSI generic nodes from sysfs: which /dev/sgN exist, what kind of device each is, and through
 * which initiator port the host reaches it. Reads files only (no SCSI commands): INQUIRY VPD 80h/83h and
 * grouping paths into LUs happen in agent/discovery.ts over an opened device.
 *
 * sysfs layout (Linux 6.x):
 *   /sys/class/scsi_generic/sgN/device → ../../../H:C:T:L   (the scsi_device; files type, vendor, model, rev)
 *   /sys/class/scsi_host/hostH/proc_name                    (driver, e.g. tcm_loopback, mpt3sas, qla2xxx)
 *   /sys/class/fc_host/hostH/port_name                      (FC initiator WWPN)
 *   /sys/class/sas_phy/phy-H:N/sas_address                  (SAS initiator phy; via port-H:N in the device path)
 *   /sys/class/iscsi_session/sessionN/{initiatorname,isid}  (iSCSI; sessionN in the device path)
 *   /sys/kernel/config/target/loopback/<wwn>/tpgt_T/{nexus,address}  (LIO tcm_loop: the nexus initiator name)
 */
import { readdir, readFile, readlink, realpath } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { TransportId } from '../src/scsi/transport-id.js';

/** One /dev/sgN as sysfs describes it. */
export interface ScsiGenericNode {
  /** Device node, e.g. '/dev/sg0'. */
  readonly path: string;
  /** Kernel name, e.g. 'sg0'. */
  readonly name: string;
  /** Host:channel:target:lun, e.g. '0:0:1:0'. */
  readonly hctl: string;
  /** PERIPHERAL DEVICE TYPE from the scsi_device's `type` (01h tape, 08h medium changer, 00h disk). */
  readonly peripheralDeviceType: number;
  /** T10 vendor identification, trailing spaces trimmed. */
  readonly vendor: string;
  /** Product identification (sysfs calls it model), trimmed. */
  readonly model: string;
  /** Product revision level, trimmed. */
  readonly rev: string;
  /** The SCSI host's driver (`proc_name`), when readable. */
  readonly hostDriver?: string;
  /** Initiator port identity of this path, when the kernel exposes it or the options configure it. */
  readonly initiatorPort?: TransportId;
}

/** Options of `listScsiGenericNodes`. */
export interface ListScsiGenericNodesOptions {
  /**
   * Root of sysfs (unit tests point this at a fake tree in a temp dir).
   * @default '/sys'
   */
  readonly sysfsRoot?: string;
  /**
   * Root of configfs, for LIO tcm_loop nexus names.
   * @default `${sysfsRoot}/kernel/config`
   */
  readonly configfsRoot?: string;
  /**
   * Directory of the device nodes.
   * @default '/dev'
   */
  readonly devRoot?: string;
  /**
   * Also list disks (PDT 00h); LIO's ramdisk/fileio LUs are disks.
   * @default false
   */
  readonly includeDisks?: boolean;
  /**
   * Peripheral device types to list, overriding the default (01h tape, 08h medium changer, plus 00h with
   * includeDisks).
   */
  readonly peripheralTypes?: readonly number[];
  /** Initiator port to report where the kernel exposes none (configured by the operator). */
  readonly defaultInitiatorPort?: TransportId;
}

/** PERIPHERAL DEVICE TYPE values (SPC-4 table 49) that discovery cares about. */
const PDT_DISK = 0x00;
const PDT_TAPE = 0x01;
const PDT_MEDIUM_CHANGER = 0x08;

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).replace(/\s+$/, '');
  } catch {
    return undefined;
  }
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch {
    return [];
  }
}

/** Parses a sysfs 64-bit port identifier such as `0x21000024ff123456`; undefined when it is not one. */
function parseHex64(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  const match = /^(?:0x)?([0-9a-fA-F]{1,16})$/.exec(text.trim());
  if (!match?.[1]) return undefined;
  const value = BigInt(`0x${match[1]}`);
  // 0 means "not set" for fc_host/sas_phy attributes.
  return value === 0n ? undefined : value;
}

/**
 * Maps a LIO initiator name to the TransportId LIO reports in READ FULL STATUS: `naa.<16 hex>` is SAS
 * (tcm_loop's default protocol; READ FULL STATUS shows SAS address 0x50014050000000a2 for nexus
 * naa.50014050000000a2), `fc.`/`naa.` with 16 hex for FC, `iqn.`/`eui.` names are iSCSI.
 */
export function transportIdFromInitiatorName(
  name: string,
  fabricProtocol: 'sas' | 'fc' = 'sas',
): TransportId | undefined {
  const trimmed = name.trim();
  const naa = /^naa\.([0-9a-fA-F]{16})$/.exec(trimmed);
  if (naa?.[1]) {
    const value = BigInt(`0x${naa[1]}`);
    return fabricProtocol === 'fc'
      ? { protocol: 'fc', wwpn: value }
      : { protocol: 'sas', sasAddress: value };
  }
  const fc =
    /^fc\.([0-9a-fA-F]{16})$/.exec(trimmed) ??
    /^((?:[0-9a-fA-F]{2}:){7}[0-9a-fA-F]{2})$/.exec(trimmed);
  if (fc?.[1]) return { protocol: 'fc', wwpn: BigInt(`0x${fc[1].replaceAll(':', '')}`) };
  if (/^(iqn\.|eui\.)/i.test(trimmed)) return { protocol: 'iscsi', name: trimmed };
  return undefined;
}

/**
 * tcm_loop: the TPG whose `address` reads H:0:T (tcm_loop_tpg_address_show prints "host_no:0:tpgt"); on
 * kernels without that attribute, tpgt_T of the only WWN that has one (the SCSI target id equals the TPG tag).
 */
async function tcmLoopInitiatorPort(
  configfsRoot: string,
  host: string,
  target: string,
): Promise<TransportId | undefined> {
  const loopback = join(configfsRoot, 'target', 'loopback');
  const withoutAddress: string[] = [];
  for (const wwn of await listDir(loopback)) {
    const tpgDir = join(loopback, wwn, `tpgt_${target}`);
    const address = await readText(join(tpgDir, 'address'));
    if (address === `${host}:0:${target}`) return initiatorOfTpg(tpgDir);
    if (address === undefined && (await listDir(tpgDir)).length > 0) withoutAddress.push(tpgDir);
  }
  return withoutAddress.length === 1 && withoutAddress[0] !== undefined
    ? initiatorOfTpg(withoutAddress[0])
    : undefined;
}

async function initiatorOfTpg(tpgDir: string): Promise<TransportId | undefined> {
  const nexus = await readText(join(tpgDir, 'nexus'));
  return nexus ? transportIdFromInitiatorName(nexus) : undefined;
}

/** Finds the initiator port of the path `deviceRealPath` (a resolved /sys/devices/... scsi_device dir). */
async function initiatorPortOf(
  sysfsRoot: string,
  configfsRoot: string,
  deviceRealPath: string,
  hctl: string,
  hostDriver: string | undefined,
): Promise<TransportId | undefined> {
  const [host = '', , target = ''] = hctl.split(':');
  // FC: the HBA port's WWPN.
  const fcWwpn = parseHex64(
    await readText(join(sysfsRoot, 'class', 'fc_host', `host${host}`, 'port_name')),
  );
  if (fcWwpn !== undefined) return { protocol: 'fc', wwpn: fcWwpn };

  const components = deviceRealPath.split('/');
  // iSCSI: the session directory sits between the host and the target in the device path.
  const session = components.find((c) => /^session\d+$/.test(c));
  if (session !== undefined) {
    const sessionDir = join(sysfsRoot, 'class', 'iscsi_session', session);
    const name =
      (await readText(join(sessionDir, 'initiatorname'))) ??
      (await readText(join(sysfsRoot, 'class', 'iscsi_host', `host${host}`, 'initiatorname')));
    if (name && name !== '(null)') {
      const isid = await readText(join(sessionDir, 'isid'));
      return isid && /^[0-9a-fA-F]{12}$/.test(isid)
        ? { protocol: 'iscsi', name, isid: isid.toLowerCase() }
        : { protocol: 'iscsi', name };
    }
  }

  // SAS: the HBA port (port-H:N, directly under hostH) and its phys' SAS address.
  const sasPort = components.find((c) => new RegExp(`^port-${host}:\\d+$`).test(c));
  if (sasPort !== undefined) {
    const portIndex = components.indexOf(sasPort);
    const portDir = components.slice(0, portIndex + 1).join('/');
    for (const phy of (await listDir(portDir)).filter((e) => /^phy-\d+:\d+$/.test(e)).sort()) {
      const address = parseHex64(
        await readText(join(sysfsRoot, 'class', 'sas_phy', phy, 'sas_address')),
      );
      if (address !== undefined) return { protocol: 'sas', sasAddress: address };
    }
  }
  const sasHost = parseHex64(
    await readText(join(sysfsRoot, 'class', 'sas_host', `host${host}`, 'host_sas_address')),
  );
  if (sasHost !== undefined) return { protocol: 'sas', sasAddress: sasHost };

  if (hostDriver === 'tcm_loopback') return tcmLoopInitiatorPort(configfsRoot, host, target);
  return undefined;
}

/**
 * Lists /dev/sgN nodes from sysfs, sorted by number: tapes (01h) and medium changers (08h) by default, disks
 * too with `includeDisks`. Nodes whose sysfs entries vanish while reading are skipped. Never throws for a
 * missing sysfs (returns []).
 */
export async function listScsiGenericNodes(
  options: ListScsiGenericNodesOptions = {},
): Promise<ScsiGenericNode[]> {
  const sysfsRoot = options.sysfsRoot ?? '/sys';
  const configfsRoot = options.configfsRoot ?? join(sysfsRoot, 'kernel', 'config');
  const devRoot = options.devRoot ?? '/dev';
  const wanted = new Set(
    options.peripheralTypes ?? [
      PDT_TAPE,
      PDT_MEDIUM_CHANGER,
      ...(options.includeDisks ? [PDT_DISK] : []),
    ],
  );
  const classDir = join(sysfsRoot, 'class', 'scsi_generic');
  const names = (await listDir(classDir))
    .filter((n) => /^sg\d+$/.test(n))
    .sort((a, b) => Number(a.slice(2)) - Number(b.slice(2)));

  const nodes: ScsiGenericNode[] = [];
  for (const name of names) {
    const deviceLink = join(classDir, name, 'device');
    let hctl: string;
    let deviceDir: string;
    try {
      hctl = basename(await readlink(deviceLink));
      deviceDir = await realpath(deviceLink);
    } catch {
      continue; // vanished between readdir and readlink
    }
    if (!/^\d+:\d+:\d+:\d+$/.test(hctl)) continue;
    const typeText = await readText(join(deviceDir, 'type'));
    const peripheralDeviceType =
      typeText === undefined ? Number.NaN : Number.parseInt(typeText, 10);
    if (!wanted.has(peripheralDeviceType)) continue;
    const [vendor = '', model = '', rev = ''] = await Promise.all(
      ['vendor', 'model', 'rev'].map(async (f) => (await readText(join(deviceDir, f))) ?? ''),
    );
    const host = hctl.split(':')[0] ?? '';
    const hostDriver = await readText(
      join(sysfsRoot, 'class', 'scsi_host', `host${host}`, 'proc_name'),
    );
    const initiatorPort =
      (await initiatorPortOf(sysfsRoot, configfsRoot, deviceDir, hctl, hostDriver)) ??
      options.defaultInitiatorPort;
    nodes.push({
      path: join(devRoot, name),
      name,
      hctl,
      peripheralDeviceType,
      vendor: vendor.trim(),
      model: model.trim(),
      rev: rev.trim(),
      ...(hostDriver !== undefined ? { hostDriver } : {}),
      ...(initiatorPort !== undefined ? { initiatorPort } : {}),
    });
  }
  return nodes;
}
