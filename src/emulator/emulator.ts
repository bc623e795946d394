/**
 * The emulator: a set of logical units, each reachable through any number of I_T nexuses. Pure and synchronous;
 * time enters only through the `clock` option.
 */
import {
  createLogicalUnit,
  DEFAULT_TARGET_PORTS,
  type EmulatedLogicalUnit,
  type LogicalUnitSpec,
} from './logical-unit.js';
import { isProfileName } from '../scsi/profiles.js';

/** Options of createEmulator. */
export interface EmulatorOptions {
  /** Milliseconds clock used for response durations. @default () => 0 */
  clock?: () => number;
}

/** A set of emulated logical units. */
export interface Emulator {
  /** Adds an LU; throws Error when the id is taken or the profile unknown (a configuration mistake, not device input). */
  addLogicalUnit(spec: LogicalUnitSpec): EmulatedLogicalUnit;
  /** The LU with this id, if any. */
  logicalUnit(id: string): EmulatedLogicalUnit | undefined;
  /** Every LU, in the order added. */
  logicalUnits(): EmulatedLogicalUnit[];
}

/** Creates an empty emulator. */
export function createEmulator(options: EmulatorOptions = {}): Emulator {
  const clock = options.clock ?? (() => 0);
  const units = new Map<string, { unit: EmulatedLogicalUnit; target: string; lun: number }>();
  // LUNs per target in the order added: adding an LU and REPORT LUNS cost O(LUs of that target), not O(all LUs)
  // (a 10,000-LU fabric spent ~1 s scanning every LU for each one added).
  const lunsByTarget = new Map<string, number[]>();
  const directory = {
    lunsOf(target: string): number[] {
      return [...(lunsByTarget.get(target) ?? [])];
    },
  };
  return {
    addLogicalUnit(spec) {
      if (units.has(spec.id)) throw new Error(`logical unit ${spec.id} already exists`);
      if (!isProfileName(spec.profile)) throw new Error(`unknown profile: ${String(spec.profile)}`);
      // INQUIRY must never fail later, so identity strings are checked here (printable ASCII, VPD 80h fits).
      if (!/^[\x20-\x7e]{1,250}$/.test(spec.serial))
        throw new Error(`invalid serial: ${JSON.stringify(spec.serial)}`);
      for (const field of [spec.vendor, spec.product, spec.revision]) {
        if (field !== undefined && !/^[\x20-\x7e]*$/.test(field))
          throw new Error(`invalid identity string: ${JSON.stringify(field)}`);
      }
      const ports = spec.targetPorts ?? DEFAULT_TARGET_PORTS;
      if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 0xffff)) {
        throw new Error(
          `invalid targetPorts: ${JSON.stringify(ports)} (relative target ports are 1..65535)`,
        );
      }
      const aclPorts = Object.keys(spec.acl ?? {}).map(Number);
      const strayPort = aclPorts.find((p) => !ports.includes(p));
      if (strayPort !== undefined)
        throw new Error(`acl names relative target port ${strayPort}, which is not in targetPorts`);
      if (
        spec.blockCount !== undefined &&
        (!Number.isInteger(spec.blockCount) || spec.blockCount < 1 || spec.blockCount > 2 ** 32)
      )
        throw new Error(`invalid blockCount: ${spec.blockCount} (1..2^32)`);
      if (
        spec.maxRegistrations !== undefined &&
        (!Number.isInteger(spec.maxRegistrations) || spec.maxRegistrations < 1)
      ) {
        throw new Error(`invalid maxRegistrations: ${spec.maxRegistrations}`);
      }
      const target = spec.target ?? 'target0';
      let luns = lunsByTarget.get(target);
      const lun = spec.lun ?? luns?.length ?? 0;
      if (luns?.includes(lun)) throw new Error(`lun ${lun} of target ${target} already exists`);
      const unit = createLogicalUnit(spec, { clock, directory, lun, target });
      units.set(spec.id, { unit, target, lun });
      if (luns === undefined) lunsByTarget.set(target, (luns = []));
      luns.push(lun);
      return unit;
    },
    logicalUnit(id) {
      return units.get(id)?.unit;
    },
    logicalUnits() {
      return [...units.values()].map((u) => u.unit);
    },
  };
}
