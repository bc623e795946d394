/**
 * The pure pieces of one LU read (src/server/fleet/observe.ts): what a path's answer says about the path, and the
 * LU state taken from READ FULL STATUS or from READ KEYS + READ RESERVATION.
 */
import { describe, expect, it } from 'vitest';
import {
  CommandResult,
  FullStatusData,
  PrType,
  UnitAttention,
} from '../../src/gen/prfleet/v1/scsi.js';
import type { FleetPath } from '../../src/server/devices.js';
import {
  pathObservation,
  stateFromFullStatus,
  stateFromKeysAndReservation,
  type PathObservation,
} from '../../src/server/fleet/observe.js';

const before: PathObservation = {
  fleetPath: {} as FleetPath,
  reachable: false,
  error: 'agent offline',
  unitAttentions: [],
};
const ua = (asc: number) => UnitAttention.fromPartial({ sense: { asc, ascq: 0 } });

describe('pathObservation', () => {
  it('keeps the path and takes the error of a failed read', () => {
    const p = pathObservation(before, { error: 'BUSY' });
    expect(p).toEqual({ ...before, reachable: false, error: 'BUSY' });
    expect(p.fleetPath).toBe(before.fleetPath);
  });

  it('takes keys and unit attentions from READ KEYS, and the unit attentions of the extra results too', () => {
    const keys = CommandResult.fromPartial({
      unitAttentions: [ua(0x29)],
      data: { $case: 'readKeys', value: { generation: 3, keys: [1n, 2n] } },
    });
    const extra = CommandResult.fromPartial({ unitAttentions: [ua(0x2a)] });
    const p = pathObservation(before, { result: keys }, [extra]);
    expect(p).toEqual({
      fleetPath: before.fleetPath,
      reachable: true,
      error: '',
      unitAttentions: [ua(0x29), ua(0x2a)],
      keys: [1n, 2n],
    });
  });

  it('takes keys from READ FULL STATUS and has none for other data', () => {
    const full = CommandResult.fromPartial({
      data: { $case: 'fullStatus', value: { descriptors: [{ key: 7n }, { key: 8n }] } },
    });
    expect(pathObservation(before, { result: full }).keys).toEqual([7n, 8n]);
    const none = pathObservation(before, { result: CommandResult.fromPartial({}) });
    expect('keys' in none).toBe(false);
  });
});

describe('LU state', () => {
  it('from READ FULL STATUS: the holder descriptor gives key, type and scope', () => {
    const fs = FullStatusData.fromPartial({
      generation: 9,
      descriptors: [
        { key: 1n },
        { key: 2n, reservationHolder: true, type: PrType.PR_TYPE_WRITE_EXCLUSIVE, scope: 0 },
      ],
    });
    expect(stateFromFullStatus(fs)).toEqual({
      generation: 9,
      keys: [1n, 2n],
      reserved: true,
      holderKey: 2n,
      type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      scope: 0,
      fullStatus: fs.descriptors,
    });
    const free = stateFromFullStatus(FullStatusData.fromPartial({ descriptors: [{ key: 1n }] }));
    expect([free.reserved, free.holderKey, free.type]).toEqual([false, 0n, 0]);
  });

  it('from READ KEYS + READ RESERVATION: the newer generation wins', () => {
    const s = stateFromKeysAndReservation(
      { generation: 4, keys: [5n], additionalLength: 8, truncated: false },
      {
        generation: 5,
        reserved: true,
        key: 5n,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        scope: 0,
        additionalLength: 16,
        truncated: false,
      },
    );
    expect(s).toEqual({
      generation: 5,
      keys: [5n],
      reserved: true,
      holderKey: 5n,
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      scope: 0,
    });
  });
});
