// An agent's inventory naming one device node twice, for two LUs (a lying agent with a valid certificate, or a
// confused one). Found: both entries were kept, so ListDevices listed host-a:/dev/sg0 as a path to both LUs,
// while a command through it always went to the first LU ("/dev/sg0 on agent host-a leads to logical unit …1,
// not …2"): the listing offered a nexus to the second LU that no command could use. Now the first entry of a device node is kept and the later ones are dropped and
// logged, as paths that break the request rules are.
import { describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { captureLog } from '../helpers/log-capture.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';

const LU1 = 'naa.5000e11100000001';
const LU2 = 'naa.5000e11100000002';
const LU3 = 'naa.5000e11100000003';

describe('an inventory naming one device node twice', () => {
  it('keeps the first entry, drops and logs the others, and lists only nexuses commands can use', async () => {
    const capture = captureLog('warn');
    const { address, server, client } = await startTestServer({ log: capture.log });
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [
        fakePath('/dev/sg0', LU1),
        fakePath('/dev/sg0', LU2, { serial: 'SN-other' }),
        fakePath('/dev/sg1', LU3),
        fakePath('/dev/sg1', LU3),
      ],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBeGreaterThan(0);
    expect(server.agents.get('host-a')?.paths.map((p) => [p.path, p.luId])).toEqual([
      ['/dev/sg0', LU1],
      ['/dev/sg1', LU3],
    ]);
    const { logicalUnits } = await client.listDevices({});
    expect(logicalUnits.map((u) => [u.luId, u.paths.map((p) => p.path?.path)])).toEqual([
      [LU1, ['/dev/sg0']],
      [LU3, ['/dev/sg1']],
    ]);
    const [logged] = capture.withMessage(/inventory paths that break the request rules dropped/);
    expect(logged).toMatchObject({ agentId: 'host-a', count: 2 });
    expect(JSON.stringify(logged?.['dropped'])).toMatch(
      /inventory\.paths\[1\]\.path: .*reported again/,
    );

    // What is listed works: a command through host-a:/dev/sg0 goes to LU1.
    const read = client.readKeys({ target: { agentId: 'host-a', path: '/dev/sg0' } });
    agent.respond(await agent.nextCommand());
    expect((await read).result).toMatchObject({ outcome: Outcome.OUTCOME_GOOD, luId: LU1 });
  });
});
