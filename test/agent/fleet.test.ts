import { describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';

describe('emulated agents against the prfleet server', () => {
  it('connects every demo host, reports their paths grouped into LUs, and runs PR commands through them', async () => {
    const { address, client } = await startTestServer();
    const fleet = await startEmulatedAgents({ address });
    expect(fleet.agents.map((a) => a.state)).toEqual(['connected', 'connected', 'connected']);

    await expect
      .poll(async () =>
        (await client.listAgents({})).agents
          .map((a) => [a.agentId, a.connected, a.pathCount])
          .sort(),
      )
      .toEqual([
        ['host-a', true, 5],
        ['host-b', true, 4],
        ['host-c', true, 4],
      ]);
    const { logicalUnits } = await client.listDevices({});
    expect(logicalUnits).toHaveLength(4);
    const changer1 = logicalUnits.find((lu) => lu.serial === 'PM0000000001')!;
    expect(changer1.loaderId).toBe('loader1');
    // host-a (two nexuses), host-b, host-c.
    expect(changer1.paths.map((p) => `${p.agentId}:${p.path?.path}`).sort()).toEqual([
      'host-a:/dev/sg0',
      'host-a:/dev/sg1',
      'host-b:/dev/sg0',
      'host-c:/dev/sg0',
    ]);

    const register = await client.register({
      target: { luId: changer1.luId, agentId: 'host-b', path: '/dev/sg0' },
      newKey: 0xbbn,
    });
    expect(register.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const keys = await client.readKeys({
      target: { luId: changer1.luId, agentId: 'host-c', path: '/dev/sg0' },
    });
    expect(keys.result?.data).toMatchObject({ $case: 'readKeys', value: { keys: [0xbbn] } });
  });
});
