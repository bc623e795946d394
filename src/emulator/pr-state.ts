/**
 * Persistent-reservation state of one logical unit: registrations (one per I_T nexus, or per initiator port with
 * ALL_TG_PT), the reservation, PRgeneration, APTPL, and the per-nexus unit-attention queues it feeds.
 * @internal
 */
import { formatTransportId, type TransportId } from '../scsi/index.js';

/** One I_T nexus as the target sees it: initiator port TransportID + relative target port. */
export interface Initiator {
  readonly transportId: TransportId;
  readonly relativeTargetPort: number;
}

/** One registration. With `allTgPt` it covers the initiator port through every target port. @internal */
export interface Registration {
  key: bigint;
  readonly transportId: TransportId;
  /** formatTransportId(transportId): the initiator port's identity. */
  readonly initiatorPort: string;
  readonly relativeTargetPort: number;
  readonly allTgPt: boolean;
}

/** The (single, LU-scope) persistent reservation. @internal */
export interface Reservation {
  readonly type: number;
  readonly scope: number;
  /** The holder for WE/EA/RO types; undefined for all-registrants types (every registrant holds it). */
  holder: Registration | undefined;
  /** LIO keeps one registration as its internal holder of an AR reservation (target_core_pr.c). */
  internalHolder: Registration | undefined;
}

/** Whether `type` is one of the all-registrants types (7 WE-AR, 8 EA-AR). @internal */
export function isAllRegistrants(type: number): boolean {
  return type === 7 || type === 8;
}

/** Whether `type` is one of the registrants-only types (5 WE-RO, 6 EA-RO). @internal */
export function isRegistrantsOnly(type: number): boolean {
  return type === 5 || type === 6;
}

/** Identity of an initiator port. @internal */
export function initiatorPortOf(transportId: TransportId): string {
  return formatTransportId(transportId);
}

/**
 * Keys of the nexuses seen, by Initiator object: a path's Initiator lives as long as the path, and formatting its
 * TransportID again on every command it sends was repeated work on the command path.
 */
const nexusKeys = new WeakMap<Initiator, string>();

/** Identity of one I_T nexus. @internal */
export function nexusKeyOf(initiator: Initiator): string {
  let key = nexusKeys.get(initiator);
  if (key === undefined) {
    key = `${initiatorPortOf(initiator.transportId)}@${initiator.relativeTargetPort}`;
    nexusKeys.set(initiator, key);
  }
  return key;
}

/** PR state of one LU. @internal */
export class PrState {
  registrations: Registration[] = [];
  reservation: Reservation | undefined = undefined;
  /** PRgeneration, a wrapping uint32. */
  generation = 0;
  /** The last valid APTPL received (PTPL_A). */
  aptpl = false;

  /** Raises PRgeneration by `by` (wrapping at 2^32). */
  bump(by = 1): void {
    this.generation = (this.generation + by) >>> 0;
  }

  /** The registration that covers `initiator`, if any. */
  registrationOf(initiator: Initiator): Registration | undefined {
    const port = initiatorPortOf(initiator.transportId);
    return this.registrations.find(
      (r) =>
        r.initiatorPort === port &&
        (r.allTgPt || r.relativeTargetPort === initiator.relativeTargetPort),
    );
  }

  /** Whether `reg` holds the reservation (every registrant does under an AR type). */
  isHolder(reg: Registration | undefined): boolean {
    const res = this.reservation;
    if (!res || !reg) return false;
    return isAllRegistrants(res.type) ? this.registrations.includes(reg) : res.holder === reg;
  }

  /** Removes `reg`; releases a non-AR reservation it held, ends an AR one when it was the last registrant. */
  remove(reg: Registration): { releasedType: number | undefined } {
    this.registrations = this.registrations.filter((r) => r !== reg);
    const res = this.reservation;
    if (!res) return { releasedType: undefined };
    if (isAllRegistrants(res.type)) {
      if (res.internalHolder === reg) res.internalHolder = this.registrations[0];
      if (this.registrations.length === 0) {
        this.reservation = undefined;
        return { releasedType: res.type };
      }
      return { releasedType: undefined };
    }
    if (res.holder === reg) {
      this.reservation = undefined;
      return { releasedType: res.type };
    }
    return { releasedType: undefined };
  }
}
