import { describe, expect, it, onTestFinished } from 'vitest';
import { createAgent } from '../../agent/agent.js';
import { createEmulatedFabric, loadFabric } from '../../agent/fabric.js';
import { createEmulatedSource } from '../../agent/sources.js';
import { createLogger } from '../../src/common/logger.js';
import { DEMO_FABRIC } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';

const CHANGER = 'naa.5000e11100000001';
const DRIVE = 'naa.5000e11100000002';

describe('periodic rescan', () => {
  it('reports device nodes that appear and disappear to the server, without a reconnect', async () => {
    const { address, client } = await startTestServer();
    const fabric = createEmulatedFabric(await loadFabric(DEMO_FABRIC));
    onTestFinished(() => fabric.close());
    const host = fabric.host('host-b');
    // host-b's loader 1 drive (/dev/sg1) is unplugged at first: the source hides it until `plugged`.
    let plugged = false;
    const inner = createEmulatedSource(host);
    const source = {
      ...inner,
      listTargets: async () =>
        (await inner.listTargets()).filter((t) => plugged || t.path !== '/dev/sg1'),
    };
    const agent = createAgent(
      { server: address, agentId: 'host-b', plaintext: true, rescanMs: 100 },
      { log: createLogger({ level: 'silent' }), source },
    );
    await agent.start();
    onTestFinished(() => agent.stop());

    const pathsOf = async (lu: string) => {
      const { logicalUnits } = await client.listDevices({});
      return logicalUnits.find((u) => u.luId === lu)?.paths.map((p) => p.path?.path) ?? [];
    };
    await expect.poll(() => pathsOf(CHANGER)).toEqual(['/dev/sg0']);
    expect(await pathsOf(DRIVE)).toEqual([]);

    plugged = true;
    await expect.poll(() => pathsOf(DRIVE), { timeout: 5_000 }).toEqual(['/dev/sg1']);
    plugged = false;
    await expect.poll(() => pathsOf(DRIVE), { timeout: 5_000 }).toEqual([]);
    expect(agent.sessions).toBe(1);
  });
});
