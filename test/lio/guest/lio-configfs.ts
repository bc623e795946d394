/**
 * LIO topology inside the test VM, driven through configfs from Node: one fileio LU (sparse file on tmpfs) exported through
 * tcm_loop TPGs, one I_T nexus per TPG. Mirrors test/scsi-vm/guest/lio-setup.sh with testbed.backstore=fileio (same names), and adds what the
 * conformance run needs: recreating the LU so every scenario starts from a fresh PR state (PRgeneration 0, no
 * registrations, no pending unit attentions), and building extra LUs on new TPGs for scenarios that trip LIO
 * bugs after which the LU can no longer be removed.
 */
import {
  mkdir,
  readFile,
  readlink,
  rm,
  rmdir,
  stat,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { listScsiGenericNodes } from '../../../agent/sysfs.js';
import type { TransportId } from '../../../src/scsi/index.js';

/** One exported LU and its nexuses. */
export interface LioLogicalUnit {
  /** configfs backstore directory. */
  readonly backstore: string;
  /** Unit serial number (VPD 80h). */
  readonly serial: string;
  /** TPG tags of the nexuses, in nexus order (= SCSI target ids on the tcm_loop host). */
  readonly tpgs: readonly number[];
  /** /dev/sgN of each nexus, in nexus order. */
  readonly paths: readonly string[];
  /** Initiator port of each nexus (the TPG's nexus name as a SAS TransportID). */
  readonly initiators: readonly TransportId[];
}

/** Options of createLioTopology. */
export interface LioTopologyOptions {
  /** @default '/sys/kernel/config' */
  readonly configfsRoot?: string;
  /** @default '/sys' */
  readonly sysfsRoot?: string;
  /** tcm_loop WWN (one SCSI host). @default 'naa.5001405000000001' (lio-setup.sh) */
  readonly wwn?: string;
  /** Nexuses per LU. @default 3 */
  readonly nexuses?: number;
  /** Time allowed for configfs operations and for sg nodes to appear or vanish. @default 20000 */
  readonly timeoutMs?: number;
}

/** The LIO configuration of the VM. */
export interface LioTopology {
  /** Describes the primary LU as lio-setup.sh left it (tpgt_1..N); waits for its sg nodes. */
  primary(): Promise<LioLogicalUnit>;
  /**
   * Removes the primary LU (tpgt_1..N, backstore rd_mcp_0/pr_lun) and creates it again with the same names and
   * serial; waits for the new sg nodes. Hangs (→ rejects after timeoutMs) if LIO leaked a reference to it.
   */
  recreatePrimary(): Promise<LioLogicalUnit>;
  /** Creates a further LU on new TPGs (never removed): for scenarios after which LIO cannot remove an LU. */
  createSpare(): Promise<LioLogicalUnit>;
}

const PRIMARY_SERIAL = 'testbed-pr-lun-0001';
/** fileio LU size; the conformance scenarios touch LBA 0 only, so keep each LU small. */
const LU_BYTES = 1 << 20;

async function withTimeout<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no progress within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Creates the helper for the VM's LIO; the primary LU must exist already (lio-setup.sh made it). */
export function createLioTopology(options: LioTopologyOptions = {}): LioTopology {
  const configfs = options.configfsRoot ?? '/sys/kernel/config';
  const sysfsRoot = options.sysfsRoot ?? '/sys';
  const wwn = options.wwn ?? 'naa.5001405000000001';
  const nexusCount = options.nexuses ?? 3;
  const timeoutMs = options.timeoutMs ?? 20_000;
  const target = join(configfs, 'target');
  const fabric = join(target, 'loopback', wwn);
  let spares = 0;

  /** tcm_loop host number of our WWN, from tpgt_1/address ("host:0:tpgt"). */
  async function hostNumber(): Promise<string> {
    const address = (await readFile(join(fabric, 'tpgt_1', 'address'), 'utf8')).trim();
    return address.split(':')[0] ?? '';
  }

  /** Waits until every TPG in `tpgs` has an sg node (present = true) or none has (present = false). */
  async function waitForNodes(tpgs: readonly number[], present: boolean): Promise<string[]> {
    const host = await hostNumber();
    for (;;) {
      const nodes = await listScsiGenericNodes({ sysfsRoot, includeDisks: true });
      const paths = tpgs.map((t) => nodes.find((n) => n.hctl === `${host}:0:${t}:0`)?.path);
      if (!present && paths.every((p) => p === undefined)) return [];
      if (present && paths.every((p) => p !== undefined)) {
        const all = paths;
        // devtmpfs creates the node a little after sysfs shows the device.
        if ((await Promise.all(all.map(exists))).every(Boolean)) return all;
      }
      await sleep(20);
    }
  }

  async function createBackstore(dir: string, serial: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    // A fresh sparse file reads as zeros (rd_mcp pages are not zeroed: a new ramdisk LU can show an old one's
    // data, which READ(10) in the differential check would report as a difference).
    const image = `/tmp/${serial}.img`;
    await rm(image, { force: true });
    await writeFile(join(dir, 'control'), `fd_dev_name=${image},fd_dev_size=${LU_BYTES}`);
    await writeFile(join(dir, 'enable'), '1');
    await writeFile(join(dir, 'wwn', 'vpd_unit_serial'), serial);
  }

  /** TPG with its nexus first, then the LUN link: tcm_loop scans at link time and needs the nexus then. */
  async function linkTpg(tpg: number, backstore: string): Promise<void> {
    const tpgDir = join(fabric, `tpgt_${tpg}`);
    await mkdir(tpgDir, { recursive: true });
    // Reading `nexus` of a TPG without one fails with ENODEV.
    const current = await readFile(join(tpgDir, 'nexus'), 'utf8').then(
      (t) => t.trim(),
      () => '',
    );
    if (current === '') await writeFile(join(tpgDir, 'nexus'), nexusName(tpg));
    await mkdir(join(tpgDir, 'lun', 'lun_0'), { recursive: true });
    await symlink(backstore, join(tpgDir, 'lun', 'lun_0', 'lu'));
  }

  async function unlinkTpg(tpg: number): Promise<void> {
    const lunDir = join(fabric, `tpgt_${tpg}`, 'lun', 'lun_0');
    if (!(await exists(lunDir))) return;
    for (const name of ['lu', 'pr_lun']) {
      const link = join(lunDir, name);
      const isLink = await readlink(link).then(
        () => true,
        () => false,
      );
      if (isLink) await unlink(link);
    }
    await rmdir(lunDir);
  }

  async function describe(
    backstore: string,
    serial: string,
    tpgs: number[],
  ): Promise<LioLogicalUnit> {
    const paths = await waitForNodes(tpgs, true);
    const initiators: TransportId[] = [];
    for (const t of tpgs) {
      const nexus = (await readFile(join(fabric, `tpgt_${t}`, 'nexus'), 'utf8')).trim();
      initiators.push({ protocol: 'sas', sasAddress: BigInt(`0x${nexus.replace(/^naa\./, '')}`) });
    }
    return { backstore, serial, tpgs, paths, initiators };
  }

  const primaryTpgs = Array.from({ length: nexusCount }, (_, i) => i + 1);
  const primaryBackstore = join(target, 'core', 'fileio_0', 'pr_lun');

  return {
    async primary() {
      return withTimeout(
        'finding the LIO LU',
        timeoutMs,
        describe(primaryBackstore, PRIMARY_SERIAL, primaryTpgs),
      );
    },
    async recreatePrimary() {
      return withTimeout(
        'recreating the LIO LU',
        timeoutMs,
        (async () => {
          for (const t of primaryTpgs) await unlinkTpg(t);
          await waitForNodes(primaryTpgs, false);
          if (await exists(primaryBackstore)) await rmdir(primaryBackstore);
          await createBackstore(primaryBackstore, PRIMARY_SERIAL);
          for (const t of primaryTpgs) await linkTpg(t, primaryBackstore);
          return describe(primaryBackstore, PRIMARY_SERIAL, primaryTpgs);
        })(),
      );
    },
    async createSpare() {
      spares++;
      // tcm_loop allows TPG tags below TL_TPGS_PER_HBA (32): spares take the next free block of tags.
      const tpgs = Array.from({ length: nexusCount }, (_, i) => nexusCount * spares + i + 1);
      if ((tpgs.at(-1) ?? 0) >= 32)
        throw new Error(`no TPG tags left for spare LU ${spares} (tcm_loop allows 0..31)`);
      const serial = `testbed-pr-lun-spare-${String(spares).padStart(3, '0')}`;
      const backstore = join(target, 'core', 'fileio_0', `spare_${spares}`);
      return withTimeout(
        'creating a spare LIO LU',
        timeoutMs,
        (async () => {
          await createBackstore(backstore, serial);
          for (const t of tpgs) await linkTpg(t, backstore);
          return describe(backstore, serial, tpgs);
        })(),
      );
    },
  };
}

/** Initiator port name of TPG `tpg`: lio-setup.sh's naa.50014050000000aN, widened for TPG tags ≥ 10. */
export function nexusName(tpg: number): string {
  return `naa.5001405${(0xa0 + tpg).toString(16).padStart(9, '0')}`;
}
