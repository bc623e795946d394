import { describe, expect, it } from 'vitest';
import { PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { pathsByLu } from '../../src/server/devices.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { EventKind, fleetClient, watch } from './helpers.js';

const A_DRIVE = { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE };
const C_DRIVE = { agentId: 'host-c', path: '/dev/sg1', luId: LOADER1_DRIVE };

describe('the observation baselines an LU when it appears', { timeout: 60_000 }, () => {
  it('reads every new LU at once, so a RESERVE and a PREEMPT right after start-up are told', async () => {
    const { address, client, server } = await startTestServer({
      config: {
        events: {
          retainEvents: 10_000,
          retainMs: 3_600_000,
          maxLag: 10_000,
          pollMs: 50,
          // A round every 10 minutes: LUs after the first in a round are read minutes later.
          observeIntervalMs: 600_000,
          observeConcurrency: 4,
        },
      },
    });
    const all = watch(fleetClient(address), { afterCursor: 0n });
    await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    const lus = [...pathsByLu(server.agents).keys()];
    expect(lus.length).toBeGreaterThan(2);
    await expect
      .poll(
        async () => {
          const observed = await server.events.observed.list(lus);
          return observed.filter((o) => o.state !== undefined).length;
        },
        { timeout: 15_000 },
      )
      .toBe(lus.length);

    await client.register({ target: A_DRIVE, newKey: 0xa1n });
    await client.register({ target: C_DRIVE, newKey: 0xc1n });
    await client.reserve({ target: C_DRIVE, key: 0xc1n, type: PrType.PR_TYPE_EXCLUSIVE_ACCESS });
    await client.preempt({
      target: A_DRIVE,
      key: 0xa1n,
      preemptKey: 0xc1n,
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
    });
    const moved = await all.next(
      (e) =>
        e.kind === EventKind.EVENT_KIND_RESERVATION_CHANGED &&
        e.detail?.$case === 'prChange' &&
        e.detail.value.after?.holderKey === 0xa1n,
    );
    expect(moved).toMatchObject({ luId: LOADER1_DRIVE });
  });
});
