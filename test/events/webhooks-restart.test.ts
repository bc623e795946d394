// Webhook deliveries survive a killed server: events recorded while the receiver was failing are delivered, in
// order, by the server started again on the same PostgreSQL (another instance id: it takes the lease over once
// the dead one's expires). The webhook is added with the CLI, as an operator would.
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createControlClient } from '../../src/common/client.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { ensureBuilt, runCliBinary, startServerChild } from '../helpers/processes.js';
import { LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { fleetClient, pgSchema, pgSkip } from './helpers.js';
import { startReceiver, verifiesAsDocumented } from './webhook-receiver.js';

const SECRET = 'restart-secret-0123456789';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe.skipIf(pgSkip !== undefined)(
  'webhooks across a killed server process',
  { timeout: 240_000 },
  () => {
    it('delivers every event recorded before the kill, in order, from the restarted server', async () => {
      await ensureBuilt();
      const receiver = await startReceiver();
      receiver.behave(() => 503);
      const { databaseUrl, schema } = pgSchema();
      const port = await freePort();
      const env = {
        PRFLEET_STORE: 'postgres',
        DATABASE_URL: databaseUrl,
        PRFLEET_DB_SCHEMA: schema,
        PORT: String(port),
        PRFLEET_EVENTS_POLL_MS: '50',
        PRFLEET_OBSERVE_INTERVAL_MS: '0',
        PRFLEET_WEBHOOKS_ALLOW_HTTP: 'true',
        PRFLEET_WEBHOOKS_BACKOFF_MS: '100',
        PRFLEET_WEBHOOKS_BACKOFF_MAX_MS: '400',
        PRFLEET_WEBHOOKS_TIMEOUT_MS: '1000',
        PRFLEET_WEBHOOKS_LEASE_MS: '2000',
      };
      const first = await startServerChild({ ...env, PRFLEET_INSTANCE_ID: 'wh-restart-1' });
      const address = first.address;
      const added = await runCliBinary(address, [
        'webhooks',
        'add',
        receiver.url,
        '--events',
        'prout',
        '--secret',
        SECRET,
      ]);
      expect(added.stderr).toBe('');
      expect(added.stdout).toMatch(/^added webhook [0-9a-f]{12} → /);
      await startEmulatedAgents({ address });
      const control = createControlClient(address);
      await waitForPaths(control, LOADER1_DRIVE, 3);
      await control.register({
        target: { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE },
        newKey: 0xa1n,
      });
      await control.register({
        target: { agentId: 'host-b', path: '/dev/sg1', luId: LOADER1_DRIVE },
        newKey: 0xb1n,
      });
      // The first event is being retried when the server dies.
      await expect.poll(() => receiver.received.length, { timeout: 20_000 }).toBeGreaterThan(1);
      await first.handle.stop({ signal: 'SIGKILL' });
      receiver.behave(() => 204);

      const second = await startServerChild({ ...env, PRFLEET_INSTANCE_ID: 'wh-restart-2' });
      expect(second.address).toBe(address);
      await waitForPaths(control, LOADER1_DRIVE, 3);
      await control.register({
        target: { agentId: 'host-c', path: '/dev/sg1', luId: LOADER1_DRIVE },
        newKey: 0xc1n,
      });
      const got = await receiver.waitAccepted(3, 30_000);
      const keys = got.map(
        (r) => (r.event['prout'] as Record<string, unknown>)['serviceActionKey'],
      );
      expect(keys).toEqual(['0x00000000000000a1', '0x00000000000000b1', '0x00000000000000c1']);
      const ids = got.map((r) => BigInt(r.eventId));
      expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
      for (const r of receiver.received) expect(verifiesAsDocumented(SECRET, r)).toBe(true);
      // The attempts before the kill count: the event's retries carry on from them.
      expect(got[0]!.attempt).toBeGreaterThan(1);
      const { webhooks } = await fleetClient(address).listWebhooks({});
      expect(webhooks[0]?.deadLettered).toBe(0n);
      control.close();
    });
  },
);
