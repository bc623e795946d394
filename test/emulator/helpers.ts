import {
  encodePrin,
  encodeProut,
  type ProutBasic,
  type ScsiResponse,
  type TransportId,
} from '../../src/scsi/index.js';
import {
  createEmulator,
  type EmulatedLogicalUnit,
  type Initiator,
  type LogicalUnitSpec,
  type ProfileName,
} from '../../src/emulator/index.js';

/** Nexus i: SAS initiator 0x50014050000000a1 + i through target port i + 1 (like the tcm_loop test bed). */
export function nexus(i: number, port = i + 1): Initiator {
  return {
    transportId: { protocol: 'sas', sasAddress: 0x50014050000000a1n + BigInt(i) },
    relativeTargetPort: port,
  };
}

export function newLu(
  profile: ProfileName,
  spec: Partial<LogicalUnitSpec> = {},
): EmulatedLogicalUnit {
  return createEmulator().addLogicalUnit({
    id: 'lu',
    profile,
    serial: 'SERIAL0001',
    targetPorts: [1, 2, 3],
    ...spec,
  });
}

export type BasicFields = Partial<Omit<ProutBasic, 'serviceAction'>> & {
  serviceAction: ProutBasic['serviceAction'];
};

export function prout(lu: EmulatedLogicalUnit, who: Initiator, fields: BasicFields): ScsiResponse {
  const { cdb, parameters } = encodeProut({
    scope: 0,
    type: 0,
    reservationKey: 0n,
    serviceActionKey: 0n,
    specIPt: [] as TransportId[],
    allTgPt: false,
    aptpl: false,
    ...fields,
  });
  return lu.execute(who, { cdb, dataOut: parameters, dataInLength: 0, timeoutMs: 1000 });
}

export function prin(
  lu: EmulatedLogicalUnit,
  who: Initiator,
  serviceAction: number,
  allocationLength = 4096,
): ScsiResponse {
  return lu.execute(who, {
    cdb: encodePrin(serviceAction, allocationLength),
    dataInLength: allocationLength,
    timeoutMs: 1000,
  });
}

export function raw(
  lu: EmulatedLogicalUnit,
  who: Initiator,
  cdb: number[],
  dataInLength = 0,
  dataOut?: Uint8Array,
): ScsiResponse {
  return lu.execute(who, {
    cdb: Uint8Array.from(cdb),
    dataInLength,
    timeoutMs: 1000,
    ...(dataOut ? { dataOut } : {}),
  });
}
