import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createControlClient } from '../../src/common/client.js';
import { EventKind } from '../../src/gen/prfleet/v1/events.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { ensureBuilt, startServerChild } from '../helpers/processes.js';
import { LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { fleetClient, pgSchema, pgSkip, watch } from './helpers.js';

/** A port free right now (the restarted server must come back where the agents dial). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe.skipIf(pgSkip !== undefined)(
  'Watch across a killed server process',
  { timeout: 240_000 },
  () => {
    it('a watcher resuming by cursor gets every event after it, from the restarted server on the same PostgreSQL', async () => {
      await ensureBuilt();
      const { databaseUrl, schema } = pgSchema();
      const port = await freePort();
      const env = {
        PRFLEET_STORE: 'postgres',
        DATABASE_URL: databaseUrl,
        PRFLEET_DB_SCHEMA: schema,
        PRFLEET_INSTANCE_ID: 'events-restart',
        PORT: String(port),
        PRFLEET_EVENTS_POLL_MS: '50',
        PRFLEET_OBSERVE_INTERVAL_MS: '0',
      };
      const first = await startServerChild(env);
      const address = first.address;
      await startEmulatedAgents({ address });
      const control = createControlClient(address);
      await waitForPaths(control, LOADER1_DRIVE, 3);
      const before = watch(fleetClient(address), { afterCursor: 0n });
      await control.register({
        target: { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE },
        newKey: 0xa1n,
      });
      await before.next((e) => e.kind === EventKind.EVENT_KIND_PROUT);
      const last = before.events.at(-1)!.cursor;

      await first.handle.stop({ signal: 'SIGKILL' });
      await expect.poll(() => before.ended).toBeDefined();

      const second = await startServerChild(env);
      expect(second.address).toBe(address);
      await waitForPaths(control, LOADER1_DRIVE, 3);
      await control.register({
        target: { agentId: 'host-b', path: '/dev/sg1', luId: LOADER1_DRIVE },
        newKey: 0xb1n,
      });
      const after = watch(fleetClient(address), { afterCursor: last });
      const prout = await after.next(
        (e) => e.kind === EventKind.EVENT_KIND_PROUT && e.agentId === 'host-b',
      );
      await after.next(
        (e) => e.kind === EventKind.EVENT_KIND_AGENT_CONNECTED && e.agentId === 'host-a',
      );
      // Every event after the cursor, once, in order: the cursors run on from it without a gap.
      const cursors = after.events.map((e) => e.cursor);
      expect(cursors[0]).toBe(last + 1n);
      expect(cursors).toEqual(cursors.map((_, i) => last + 1n + BigInt(i)));
      expect(cursors).toContain(prout.cursor);
      // The paths the agents report again are the ones the store knew: no path "appears" twice.
      expect(after.kinds()).not.toContain(EventKind.EVENT_KIND_PATH_APPEARED);
      control.close();
    });
  },
);
