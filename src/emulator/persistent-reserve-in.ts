/**
 * PERSISTENT RESERVE IN (5Eh) on the device side (scsi-pr.md §8): full data from the codec's encoders, cut to
 * the ALLOCATION LENGTH, with LIO's short-allocation and READ FULL STATUS departures from the profile knobs.
 * @internal
 */
import {
  decodePrinCdb,
  encodeCapabilities,
  encodeFullStatus,
  encodeReadKeys,
  encodeReadReservation,
  type FullStatusDescriptor,
} from '../scsi/index.js';
import { good, invalidCdbField, type Answer } from './answers.js';
import type { LuContext } from './context.js';
import { isAllRegistrants } from './pr-state.js';

const READ_KEYS = 0;
const READ_RESERVATION = 1;
const REPORT_CAPABILITIES = 2;
const READ_FULL_STATUS = 3;
/** READ FULL STATUS header and fixed descriptor part (scsi-pr.md §8.6). */
const HEADER_LENGTH = 8;
const DESCRIPTOR_FIXED_LENGTH = 24;
const KEY_LENGTH = 8;
/** LIO core_scsi3_pri_read_reservation writes the reservation key and type only from this allocation length on. */
const RESERVATION_WRITTEN_FROM = 22;

/** Executes one PRIN; the SPC-2 reservation check happened before. @internal */
export function executePrin(lu: LuContext, cdb: Uint8Array): Answer {
  const { knobs, pr } = lu;
  const { serviceAction, allocationLength } = decodePrinCdb(cdb);
  if (!knobs.capabilities.prinServiceActions.includes(serviceAction)) return invalidCdbField(1, 4);
  const minimum = knobs.prinMinimumAllocationLength.get(serviceAction);
  if (minimum !== undefined && allocationLength < minimum) return invalidCdbField(7);

  const cut = (data: Uint8Array): Answer =>
    good(data.subarray(0, Math.min(data.length, allocationLength)));
  const wholeEntries = knobs.prinTruncation === 'whole-entries';
  switch (serviceAction) {
    case READ_KEYS: {
      const data = encodeReadKeys({
        generation: pr.generation,
        keys: pr.registrations.map((r) => r.key),
      });
      if (!wholeEntries || allocationLength >= data.length) return cut(data);
      // LIO: the allocation length is transferred; only keys whose 8 bytes fit are written, the rest is zero.
      const out = new Uint8Array(allocationLength);
      const whole =
        HEADER_LENGTH + Math.floor((allocationLength - HEADER_LENGTH) / KEY_LENGTH) * KEY_LENGTH;
      out.set(data.subarray(0, whole));
      return good(out);
    }
    case READ_RESERVATION: {
      const res = pr.reservation;
      const reservation = res
        ? {
            key: isAllRegistrants(res.type) ? 0n : (res.holder?.key ?? 0n),
            scope: res.scope,
            type: res.type,
          }
        : null;
      const data = encodeReadReservation({ generation: pr.generation, reservation });
      if (!wholeEntries || !reservation || allocationLength >= RESERVATION_WRITTEN_FROM)
        return cut(data);
      // LIO writes the key and type only when 22 bytes fit; the header (ADDITIONAL LENGTH 16) is written always.
      const out = new Uint8Array(Math.min(allocationLength, data.length));
      out.set(data.subarray(0, Math.min(HEADER_LENGTH, out.length)));
      return good(out);
    }
    case REPORT_CAPABILITIES:
      return cut(
        encodeCapabilities({
          rlrC: knobs.capabilities.proutServiceActions.includes(8),
          crh: knobs.crh,
          sipC: knobs.capabilities.specIPt,
          atpC: knobs.capabilities.allTgPt,
          ptplC: knobs.capabilities.aptpl,
          tmv: true,
          allowCommands: knobs.allowCommands,
          ptplA: pr.aptpl,
          supportedTypes: [...knobs.capabilities.types],
        }),
      );
    case READ_FULL_STATUS: {
      let descriptors: FullStatusDescriptor[] = pr.registrations.map((r) => {
        const holder = pr.isHolder(r);
        return {
          reservationKey: r.key,
          allTgPt: r.allTgPt,
          holder,
          scope: holder ? (pr.reservation?.scope ?? 0) : 0,
          type: holder ? (pr.reservation?.type ?? 0) : 0,
          relativeTargetPort: r.allTgPt ? 0 : r.relativeTargetPort,
          transportId: r.transportId,
        };
      });
      if (knobs.fullStatusTruncation === 'transport-id-fits') {
        // LIO writes a descriptor while its TransportID length plus the descriptors already written fit the
        // allocation length (header and descriptor header forgotten), so the last one written may be cut.
        const full = encodeFullStatus({ generation: pr.generation, descriptors });
        let at = HEADER_LENGTH;
        let written = 0;
        let fits = 0;
        while (fits < descriptors.length) {
          const transportIdLength = descriptorTransportIdLength(full, at);
          if (transportIdLength + written > allocationLength) break;
          const size = DESCRIPTOR_FIXED_LENGTH + transportIdLength;
          at += size;
          written += size;
          fits++;
        }
        descriptors = descriptors.slice(0, fits);
      }
      return cut(encodeFullStatus({ generation: pr.generation, descriptors }));
    }
    default:
      return invalidCdbField(1, 4);
  }
}

/** ADDITIONAL DESCRIPTOR LENGTH of the descriptor at `offset` in encoded READ FULL STATUS data. */
function descriptorTransportIdLength(data: Uint8Array, offset: number): number {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return view.getUint32(offset + 20);
}
