// Three hosts contend for one tape drive through a real server: registration, reservation, a conflict returned as
// a result, PREEMPT, and the unit attention the victim sees next. The same test runs with in-process agents and
// with prfleet-sim as a child process.
import { describe, expect, it } from 'vitest';
import { Outcome, PrType, type CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import { startTestServer } from '../helpers/server.js';
import {
  DRIVE_PATHS,
  inProcessAgents,
  LOADER1_DRIVE,
  simChildProcess,
  TEN_SECONDS,
  waitForPaths,
} from './fleet.js';

const KEY = { 'host-a': 0xa1n, 'host-b': 0xb1n, 'host-c': 0xc1n } as const;

function keysOf(result: CommandResult | undefined): bigint[] {
  expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  if (result?.data?.$case !== 'readKeys')
    throw new Error(`no READ KEYS data: ${String(result?.data?.$case)}`);
  return result.data.value.keys;
}

describe.each([inProcessAgents, simChildProcess])(
  'multi-host contention on one LU ($name)',
  (runner) => {
    it('registers, reserves, returns the conflict as a result, preempts and reports the unit attention', async () => {
      const { client, address } = await startTestServer();
      await runner.start(address);
      await waitForPaths(client, LOADER1_DRIVE, 3);
      const options = { commandTimeout: TEN_SECONDS };

      for (const host of ['host-a', 'host-b', 'host-c'] as const) {
        const { result } = await client.register({
          target: DRIVE_PATHS[host],
          key: 0n,
          newKey: KEY[host],
          options,
        });
        expect(result?.outcome, `REGISTER ${host}`).toBe(Outcome.OUTCOME_GOOD);
      }
      const keys = await client.readKeys({
        target: { luId: LOADER1_DRIVE, agentId: '', path: '' },
        options,
      });
      expect(keysOf(keys.result)).toEqual([0xa1n, 0xb1n, 0xc1n]);
      expect(keys.result?.generation).toBe(3);

      const reserved = await client.reserve({
        target: DRIVE_PATHS['host-a'],
        key: KEY['host-a'],
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        options,
      });
      expect(reserved.result?.outcome).toBe(Outcome.OUTCOME_GOOD);

      // host-b's RESERVE is refused by the device: an answer with status OK, not an RPC error.
      const conflict = await client.reserve({
        target: DRIVE_PATHS['host-b'],
        key: KEY['host-b'],
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        options,
      });
      expect(conflict.result).toMatchObject({
        outcome: Outcome.OUTCOME_RESERVATION_CONFLICT,
        status: 0x18,
        agentId: 'host-b',
        path: '/dev/sg1',
        luId: LOADER1_DRIVE,
      });

      const holder = await client.readReservation({ target: DRIVE_PATHS['host-c'], options });
      expect(holder.result?.data).toEqual({
        $case: 'readReservation',
        value: expect.objectContaining({
          reserved: true,
          key: 0xa1n,
          type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        }),
      });

      const preempt = await client.preempt({
        target: DRIVE_PATHS['host-b'],
        key: KEY['host-b'],
        preemptKey: KEY['host-a'],
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        abort: false,
        options,
      });
      expect(preempt.result?.outcome).toBe(Outcome.OUTCOME_GOOD);

      // host-a's next command meets REGISTRATIONS PREEMPTED (2Ah/05h); the agent retries and lists it.
      const news = await client.readKeys({ target: DRIVE_PATHS['host-a'], options });
      expect(keysOf(news.result)).toEqual([0xb1n, 0xc1n]);
      expect(
        news.result?.unitAttentions.map((ua) => [
          ua.sense?.senseKey,
          ua.sense?.asc,
          ua.sense?.ascq,
        ]),
      ).toEqual([[6, 0x2a, 0x05]]);
      expect(news.result?.unitAttentions[0]?.sense?.description).toMatch(
        /registrations preempted/i,
      );
      // A unit attention is news once: the next command runs without one.
      const again = await client.readKeys({ target: DRIVE_PATHS['host-a'], options });
      expect(again.result?.unitAttentions).toEqual([]);
      expect(keysOf(again.result)).toEqual([0xb1n, 0xc1n]);
      expect(again.result?.generation).toBe(4);

      // host-a's old key is gone: its RESERVE conflicts; host-b holds the drive.
      const stale = await client.reserve({
        target: DRIVE_PATHS['host-a'],
        key: KEY['host-a'],
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        options,
      });
      expect(stale.result?.outcome).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
      const after = await client.readReservation({
        target: { luId: LOADER1_DRIVE, agentId: '', path: '' },
        options,
      });
      expect(after.result?.data).toEqual({
        $case: 'readReservation',
        value: expect.objectContaining({ reserved: true, key: 0xb1n }),
      });
    }, 180_000);
  },
);
