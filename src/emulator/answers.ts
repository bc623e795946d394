/**
 * What a command handler decides, before it becomes bytes: GOOD with data, RESERVATION CONFLICT, or CHECK
 * CONDITION with sense key/ASC/ASCQ and an optional field pointer. One place turns that into a ScsiResponse,
 * truncating data-in to what the initiator accepts.
 * @internal
 */
import { encodeSense, type ScsiResponse } from '../scsi/index.js';
import type { ErrorFlavour } from '../scsi/profiles.js';

/** Where an ILLEGAL REQUEST points (SENSE KEY SPECIFIC field pointer, scsi-pr.md §9.4). @internal */
export interface FieldPointer {
  readonly inCdb: boolean;
  readonly byte: number;
  readonly bit?: number;
}

/** A handler's decision. @internal */
export type Answer =
  | { readonly kind: 'good'; readonly data?: Uint8Array }
  | { readonly kind: 'conflict' }
  | {
      readonly kind: 'check';
      readonly senseKey: number;
      readonly asc: number;
      readonly ascq: number;
      readonly field?: FieldPointer;
    };

/** GOOD, optionally with data-in (already cut to the CDB's allocation length). @internal */
export function good(data?: Uint8Array): Answer {
  return data ? { kind: 'good', data } : { kind: 'good' };
}

/** RESERVATION CONFLICT (18h, no sense). @internal */
export const CONFLICT: Answer = { kind: 'conflict' };

/** CHECK CONDITION with the given sense. @internal */
export function check(senseKey: number, asc: number, ascq: number, field?: FieldPointer): Answer {
  return field
    ? { kind: 'check', senseKey, asc, ascq, field }
    : { kind: 'check', senseKey, asc, ascq };
}

/** ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (5/20/00). @internal */
export const INVALID_OPCODE: Answer = check(0x05, 0x20, 0x00);

/** ILLEGAL REQUEST, INVALID FIELD IN CDB (5/24/00) pointing at `byte`/`bit` of the CDB. @internal */
export function invalidCdbField(byte: number, bit?: number): Answer {
  return check(
    0x05,
    0x24,
    0x00,
    bit === undefined ? { inCdb: true, byte } : { inCdb: true, byte, bit },
  );
}

/** ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (5/26/00) pointing into the data-out. @internal */
export function invalidParameterField(byte: number, bit?: number): Answer {
  return check(
    0x05,
    0x26,
    0x00,
    bit === undefined ? { inCdb: false, byte } : { inCdb: false, byte, bit },
  );
}

/** ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR (5/1A/00), pointing at CDB bytes 5–8. @internal */
export const PARAMETER_LIST_LENGTH_ERROR: Answer = check(0x05, 0x1a, 0x00, {
  inCdb: true,
  byte: 5,
});

/** ILLEGAL REQUEST, INSUFFICIENT REGISTRATION RESOURCES (5/55/04). @internal */
export const INSUFFICIENT_REGISTRATION_RESOURCES: Answer = check(0x05, 0x55, 0x04);

/** The answer an error flavour stands for; `field` is used by the ILLEGAL REQUEST flavours. @internal */
export function flavourAnswer(flavour: ErrorFlavour, field?: FieldPointer): Answer {
  switch (flavour) {
    case 'reservation-conflict':
      return CONFLICT;
    case 'invalid-field-in-cdb':
      return check(0x05, 0x24, 0x00, field?.inCdb ? field : undefined);
    case 'invalid-field-in-parameter-list':
      return check(0x05, 0x26, 0x00, field && !field.inCdb ? field : undefined);
    case 'invalid-release':
      return check(0x05, 0x26, 0x04);
    case 'not-ready':
      // LIO: TCM_LUN_BUSY-style NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (target_core_pr.c).
      return check(0x02, 0x08, 0x00);
  }
}

/** Sense bytes for a CHECK CONDITION answer (fixed format; field pointer only when the profile gives one). @internal */
export function senseBytes(
  answer: Extract<Answer, { kind: 'check' }>,
  fieldPointers: boolean,
  descriptor = false,
): Uint8Array {
  return encodeSense({
    senseKey: answer.senseKey,
    asc: answer.asc,
    ascq: answer.ascq,
    format: descriptor ? 'descriptor' : 'fixed',
    ...(fieldPointers && answer.field ? { fieldPointer: answer.field } : {}),
  });
}

/** Empty sense/data-in, shared: a response's byte arrays are never written to after it is built. */
const NO_BYTES = new Uint8Array(0);

/** Turns an answer into the response the initiator sees; data-in is cut to `dataInLength`, resid set. @internal */
export function toResponse(
  answer: Answer,
  dataInLength: number,
  fieldPointers: boolean,
  durationMs: number,
): ScsiResponse {
  const accepted = Math.max(0, Math.floor(dataInLength));
  // Each response is one literal with every field named (no spread of a shared base): V8 builds it in one go,
  // where keys added after a spread take a slow path costing microseconds per command.
  switch (answer.kind) {
    case 'good': {
      const data = answer.data ?? NO_BYTES;
      const dataIn = data.length > accepted ? data.slice(0, accepted) : data;
      return {
        status: 0x00,
        sense: NO_BYTES,
        dataIn,
        resid: accepted - dataIn.length,
        hostStatus: 0,
        driverStatus: 0,
        durationMs,
      };
    }
    case 'conflict':
      return {
        status: 0x18,
        sense: NO_BYTES,
        dataIn: NO_BYTES,
        resid: accepted,
        hostStatus: 0,
        driverStatus: 0,
        durationMs,
      };
    case 'check':
      return {
        status: 0x02,
        sense: senseBytes(answer, fieldPointers),
        dataIn: NO_BYTES,
        resid: accepted,
        hostStatus: 0,
        driverStatus: 0x08,
        durationMs,
      };
  }
}
