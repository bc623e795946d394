// Shared pieces of the end-to-end tests: how agents are run (in-process or as child processes, behind one
// interface), waiting for the fleet to report its paths, and small request builders.
import { expect } from 'vitest';
import type { ControlClient } from '../../src/common/client.js';
import type { Target } from '../../src/gen/prfleet/v1/control.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { DEMO_FABRIC, ensureBuilt, startSimChild } from '../helpers/processes.js';

/** Starts the demo fabric's agents against a server. */
export interface AgentRunner {
  /** Shown in test names. */
  readonly name: string;
  /** Starts every host of the demo fabric and resolves when they are connected (stopped when the test ends). */
  start(address: string): Promise<void>;
}

/** In-process agents (agent/fleet.ts through test/helpers/agents.ts) sharing one emulated fabric. */
export const inProcessAgents: AgentRunner = {
  name: 'in-process agents',
  async start(address) {
    await startEmulatedAgents({ address, fabric: DEMO_FABRIC });
  },
};

/** `node dist/agent/sim.js`: every host of the fabric as an agent in one child process. */
export const simChildProcess: AgentRunner = {
  name: 'prfleet-sim child process',
  async start(address) {
    await ensureBuilt();
    await startSimChild(address, DEMO_FABRIC);
  },
};

/** LU ids of examples/fabric-demo.yaml. */
export const LOADER1_CHANGER = 'naa.5000e11100000001';
export const LOADER1_DRIVE = 'naa.5000e11100000002';

/** Paths of examples/fabric-demo.yaml to loader 1's drive, per host. */
export const DRIVE_PATHS = {
  'host-a': { luId: LOADER1_DRIVE, agentId: 'host-a', path: '/dev/sg2' },
  'host-b': { luId: LOADER1_DRIVE, agentId: 'host-b', path: '/dev/sg1' },
  'host-c': { luId: LOADER1_DRIVE, agentId: 'host-c', path: '/dev/sg1' },
} as const satisfies Record<string, Target>;

/** Waits until `count` connected paths lead to `luId` (inventories arrive just after the agents connect). */
export async function waitForPaths(
  client: ControlClient,
  luId: string,
  count: number,
): Promise<void> {
  await expect
    .poll(
      async () => {
        const { logicalUnits } = await client.listDevices({});
        return (
          logicalUnits.find((lu) => lu.luId === luId)?.paths.filter((p) => p.agentConnected)
            .length ?? 0
        );
      },
      { timeout: 20_000, interval: 100 },
    )
    .toBe(count);
}

/** Waits until `agentId` is (or is no longer) connected, as ListAgents reports it. */
export async function waitForAgent(
  client: ControlClient,
  agentId: string,
  connected: boolean,
): Promise<void> {
  await expect
    .poll(
      async () => {
        const { agents } = await client.listAgents({});
        return agents.find((a) => a.agentId === agentId)?.connected ?? false;
      },
      { timeout: 20_000, interval: 100 },
    )
    .toBe(connected);
}

/** Device command timeout used by the tests' requests. */
export const TEN_SECONDS = { seconds: 10n, nanos: 0 };
