/**
 * The CDBs (and parameter lists) of a scenario's commands: PROUT service actions, PRIN reads, the profile's
 * medium commands and the plain SPC commands. Pure: the runner supplies the nexus identities a command names.
 */
import {
  encodeInitializeElementStatus,
  encodeInquiry,
  encodePrin,
  encodeProut,
  encodeProutCdb,
  encodeRead10,
  encodeRead6,
  encodeReadElementStatus,
  encodeRelease6,
  encodeReportLuns,
  encodeRequestSense,
  encodeReserve6,
  encodeTestUnitReady,
  encodeWrite10,
  encodeWrite6,
  fromHex,
  type ProutBasic,
  type ProutRequest,
  type ScsiRequest,
  type TransportId,
} from '../scsi/index.js';
import type { ScenarioCommand, TransportRef } from './scenario.js';

/** The scenario commands that are PERSISTENT RESERVE OUT service actions. */
export type ProutCommand = Extract<
  ScenarioCommand,
  { kind: 'register' | 'reserve' | 'release' | 'clear' | 'preempt' | 'move' }
>;

/** The scenario commands that are neither PROUT, medium access nor an emulator control. */
export type PlainCommand = Exclude<
  ScenarioCommand,
  ProutCommand | { kind: 'medium-read' | 'medium-write' | 'power-cycle' | 'reset' | 'nexus-loss' }
>;

/** What a PROUT command needs from the run: the nexuses' identities, learnt by discovery. */
export interface NexusIdentities {
  /** The TransportID a command names. */
  transportId(ref: TransportRef): TransportId;
  /** The relative target port of nexus `nexus`, or undefined when it was not discovered. */
  relativeTargetPort(nexus: number): number | undefined;
}

/** A basic PROUT parameter list for service action `sa` (0–6), zero but for `fields`. */
export function basicProut(
  sa: 0 | 1 | 2 | 3 | 4 | 5 | 6,
  fields: Partial<Omit<ProutBasic, 'serviceAction'>>,
): ProutRequest {
  return {
    serviceAction: sa,
    scope: 0,
    type: 0,
    reservationKey: 0n,
    serviceActionKey: 0n,
    specIPt: [],
    allTgPt: false,
    aptpl: false,
    ...fields,
  };
}

/**
 * The PROUT command of `req`; with `parameterListLength`, the CDB says that length and the list is cut or
 * zero-padded to it (scenarios that send a malformed length).
 */
export function proutRequest(
  req: ProutRequest,
  timeoutMs: number,
  parameterListLength?: number,
): ScsiRequest {
  const { cdb, parameters } = encodeProut(req);
  if (parameterListLength === undefined)
    return { cdb, dataOut: parameters, dataInLength: 0, timeoutMs };
  const list = new Uint8Array(parameterListLength);
  list.set(parameters.subarray(0, parameterListLength));
  const forced = encodeProutCdb({
    serviceAction: req.serviceAction,
    scope: req.scope,
    type: req.type,
    parameterListLength,
  });
  return { cdb: forced, dataOut: list, dataInLength: 0, timeoutMs };
}

/** A PRIN command of service action `serviceAction`. */
export function prin(
  serviceAction: number,
  allocationLength: number,
  timeoutMs: number,
): ScsiRequest {
  return {
    cdb: encodePrin(serviceAction, allocationLength),
    dataInLength: allocationLength,
    timeoutMs,
  };
}

/** The PROUT command a scenario step sends. */
export function proutCommandRequest(
  command: ProutCommand,
  nexuses: NexusIdentities,
  timeoutMs: number,
): ScsiRequest {
  switch (command.kind) {
    case 'register':
      return proutRequest(
        basicProut(command.ignore ? 6 : 0, {
          reservationKey: command.key ?? 0n,
          serviceActionKey: command.sark,
          aptpl: command.aptpl ?? false,
          allTgPt: command.allTgPt ?? false,
          specIPt: (command.specIPt ?? []).map((r) => nexuses.transportId(r)),
        }),
        timeoutMs,
        command.parameterListLength,
      );
    case 'reserve':
    case 'release':
      return proutRequest(
        basicProut(command.kind === 'reserve' ? 1 : 2, {
          reservationKey: command.key,
          type: command.type,
          scope: command.scope ?? 0,
        }),
        timeoutMs,
      );
    case 'clear':
      return proutRequest(basicProut(3, { reservationKey: command.key }), timeoutMs);
    case 'preempt':
      return proutRequest(
        basicProut(command.abort ? 5 : 4, {
          reservationKey: command.key,
          serviceActionKey: command.sark,
          type: command.type,
          scope: command.scope ?? 0,
        }),
        timeoutMs,
      );
    case 'move': {
      const port = nexuses.relativeTargetPort(command.relativeTargetPortOf);
      if (port === undefined)
        throw new Error(`no identity for nexus ${command.relativeTargetPortOf}`);
      return proutRequest(
        {
          serviceAction: 7,
          scope: 0,
          type: 0,
          reservationKey: command.key,
          serviceActionKey: command.sark,
          unreg: command.unreg ?? false,
          aptpl: false,
          relativeTargetPort: port,
          transportId: nexuses.transportId(command.destination),
        },
        timeoutMs,
      );
    }
  }
}

/**
 * The read-class or write-class medium command of a device of peripheral type `pdt`: the changer's READ ELEMENT
 * STATUS / INITIALIZE ELEMENT STATUS, the tape drive's READ(6) / WRITE(6), a disk's READ(10) / WRITE(10).
 */
export function mediumRequest(
  kind: 'medium-read' | 'medium-write',
  pdt: number,
  t: number,
): ScsiRequest {
  if (kind === 'medium-read') {
    if (pdt === 8)
      return {
        cdb: encodeReadElementStatus({ numberOfElements: 1, allocationLength: 8 }),
        dataInLength: 8,
        timeoutMs: t,
      };
    if (pdt === 1)
      return { cdb: encodeRead6({ transferLength: 0 }), dataInLength: 0, timeoutMs: t };
    return { cdb: encodeRead10({ lba: 0, transferLength: 1 }), dataInLength: 512, timeoutMs: t };
  }
  // INITIALIZE ELEMENT STATUS: write-class like MOVE MEDIUM, but GOOD whatever the cartridges are.
  if (pdt === 8) return { cdb: encodeInitializeElementStatus(), dataInLength: 0, timeoutMs: t };
  if (pdt === 1) return { cdb: encodeWrite6({ transferLength: 0 }), dataInLength: 0, timeoutMs: t };
  return {
    cdb: encodeWrite10({ lba: 0, transferLength: 1 }),
    dataOut: new Uint8Array(512),
    dataInLength: 0,
    timeoutMs: t,
  };
}

/** The command of a PRIN read, a plain SPC command or a raw CDB. */
export function plainRequest(command: PlainCommand, t: number): ScsiRequest {
  switch (command.kind) {
    case 'read-keys':
      return prin(0, command.allocationLength ?? 4096, t);
    case 'read-reservation':
      return prin(1, command.allocationLength ?? 4096, t);
    case 'report-capabilities':
      return prin(2, command.allocationLength ?? 4096, t);
    case 'read-full-status':
      return prin(3, command.allocationLength ?? 8192, t);
    case 'prin':
      return prin(command.serviceAction, command.allocationLength ?? 4096, t);
    case 'test-unit-ready':
      return { cdb: encodeTestUnitReady(), dataInLength: 0, timeoutMs: t };
    case 'inquiry':
      return command.page === undefined
        ? { cdb: encodeInquiry({ allocationLength: 96 }), dataInLength: 96, timeoutMs: t }
        : {
            cdb: encodeInquiry({ evpd: true, pageCode: command.page, allocationLength: 252 }),
            dataInLength: 252,
            timeoutMs: t,
          };
    case 'request-sense':
      return { cdb: encodeRequestSense(96), dataInLength: 96, timeoutMs: t };
    case 'report-luns':
      return { cdb: encodeReportLuns(0, 256), dataInLength: 256, timeoutMs: t };
    case 'reserve6':
      return { cdb: encodeReserve6(), dataInLength: 0, timeoutMs: t };
    case 'release6':
      return { cdb: encodeRelease6(), dataInLength: 0, timeoutMs: t };
    case 'raw':
      return {
        cdb: fromHex(command.cdb),
        ...(command.dataOut ? { dataOut: fromHex(command.dataOut) } : {}),
        dataInLength: command.dataInLength,
        timeoutMs: t,
      };
  }
}
