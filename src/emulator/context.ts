/**
 * What command handlers see of their logical unit: the profile knobs, the PR state, the target ports, and the
 * side channels (unit attentions, PREEMPT AND ABORT victims).
 * @internal
 */
import type { ProfileKnobs } from '../scsi/profiles.js';
import type { Initiator, PrState, Registration } from './pr-state.js';
import type { TransportId } from '../scsi/index.js';

/** The logical unit as a handler sees it. @internal */
export interface LuContext {
  readonly knobs: ProfileKnobs;
  readonly pr: PrState;
  /** Relative target port identifiers of the LU's target. */
  readonly targetPorts: readonly number[];
  /** Registration table size (→ 55h/04h when full). */
  readonly maxRegistrations: number;
  /**
   * Initiator ports each relative target port knows (LIO: TPG ACLs), named by SPEC_I_PT / REGISTER AND MOVE;
   * undefined = every port knows any initiator port of the fabric's protocol.
   */
  readonly acl: Readonly<Record<number, readonly TransportId[]>> | undefined;
  /** Queues a unit attention (sense key 6h) for one I_T nexus. */
  queueUnitAttention(nexus: Initiator, asc: number, ascq: number): void;
  /** I_T nexuses of `transportId`'s initiator port that have sent a command since power on, in target port order. */
  knownNexusesOf(transportId: TransportId): Initiator[];
  /** The I_T nexuses a registration covers (one, or one per target port with ALL_TG_PT). */
  nexusesOf(reg: Registration): Initiator[];
  /** Reports PREEMPT AND ABORT victims to the abort listeners. */
  abortTasks(victims: Initiator[]): void;
}
