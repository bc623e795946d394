/**
 * The registration reconciler as prfleet-server wires it (PRFLEET_RECONCILER=on): a real server on real
 * PostgreSQL, the demo fabric's agents, the ControlService client. A power cycle without APTPL wipes a drive's
 * registrations; the next command meets the 29h unit attention, and the server registers the desired hosts again
 * by itself, through the pipeline and into the history. With the reconciler off (the default) nothing happens.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChannel, createClientFactory } from 'nice-grpc';
import { FleetServiceDefinition } from '../../src/gen/prfleet/v1/fleet.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import { RECONCILER_ACTOR } from '../../src/server/fleet/registration-reconciler.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { TEST_DATABASE_URL, probePg } from '../store/backends.js';

const unreachable = await probePg();
const schema = `prfleet_t_reconcile_${process.pid}_${randomBytes(3).toString('hex')}`;
let store: Store | undefined;
const DRIVE1 = 'naa.5000e11100000002';

beforeAll(async () => {
  if (unreachable === undefined)
    store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
}, 60_000);
afterAll(async () => {
  await store?.close();
  if (unreachable !== undefined) return;
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
});

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(unreachable !== undefined)(
  'registration reconciler wired into prfleet-server',
  { timeout: 120_000 },
  () => {
    it('re-registers the desired hosts after a power cycle (UA 29h) on PostgreSQL, REGISTER only', async () => {
      const s = store as Store;
      const { address, server, client } = await startTestServer({
        config: { reconciler: { mode: 'on', cooldownMs: 0, maxPerMinute: 100 } },
        deps: { store: s },
      });
      expect(server.reconciler).toBeDefined();
      const channel = createChannel(address);
      const fleetClient = createClientFactory().create(FleetServiceDefinition, channel);
      for (const agentId of ['host-a', 'host-b'])
        await fleetClient.allocateKey({ site: 'dc1', agentId, purpose: 'backup', owner: 'ops' });
      await fleetClient.setDesiredState({
        scope: { scope: { $case: 'loaderId', value: 'loader1' } },
        state: { registeredAgentIds: ['host-a', 'host-b'] },
        updatedBy: 'test',
      });
      const mine = async (reason: RegExp) =>
        (await s.history.list({ luId: DRIVE1, limit: 10_000 }))
          .filter((e) => e.actor === RECONCILER_ACTOR && reason.test(e.reason ?? ''))
          .map((e) => [e.agentId, e.action, e.outcome])
          .sort();
      const both = [
        ['host-a', 'PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY', 'OUTCOME_GOOD'],
        ['host-b', 'PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY', 'OUTCOME_GOOD'],
      ];
      const fleet = await startEmulatedAgents({ address });
      try {
        // The agents connecting is the first trigger: the desired hosts get registered.
        await until(
          'registrations on connect',
          async () => (await mine(/agent connected/)).length === 2,
        );
        expect(await mine(/agent connected/)).toEqual(both);
        const drive = fleet.fabric.logicalUnit('loader1-drive');
        drive.powerCycle();
        expect(drive.snapshot().registrations).toEqual([]);
        // Any command meets the unit attention (here a READ KEYS through host-b's path).
        const read = await client.readKeys({
          target: { agentId: 'host-b', path: '/dev/sg1', luId: '' },
        });
        expect(read.result?.unitAttentions.map((u) => u.sense?.asc)).toEqual([0x29]);
        await until(
          'registrations after the power cycle',
          async () => (await mine(/unit attention/)).length >= 2,
        );
        expect(await mine(/unit attention/)).toEqual(both);
        expect(drive.snapshot().registrations).toHaveLength(2);
        expect(server.reconciler?.recent().some((r) => r.outcome === 'registered')).toBe(true);
      } finally {
        channel.close();
        await fleet.stop();
      }
    });

    it('is off by default: nothing registers by itself', async () => {
      const { address, server } = await startTestServer({ deps: { store: store } });
      expect(server.reconciler).toBeUndefined();
      const fleet = await startEmulatedAgents({ address });
      try {
        await new Promise((r) => setTimeout(r, 700));
        expect(fleet.fabric.logicalUnit('loader1-drive').snapshot().registrations).toEqual([]);
      } finally {
        await fleet.stop();
      }
    });
  },
);
