import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startScaleServer, type ScaleClusterEnv } from '../../bench/scale-cluster.js';
import { createControlClient } from '../../src/common/client.js';
import { EventKind } from '../../src/gen/prfleet/v1/events.js';
import { PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { ensureBuilt } from '../helpers/processes.js';
import { LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { fleetClient, pgSchema, pgSkip, watch } from './helpers.js';

const REDIS_URL = process.env['PRFLEET_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

async function redisSkip(): Promise<string | undefined> {
  if (process.env['CI'] === 'true') return undefined;
  const probe = new Redis(REDIS_URL, {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  try {
    await probe.connect();
    await probe.ping();
    return undefined;
  } catch (error) {
    return `Redis at ${REDIS_URL} unreachable (${(error as Error).message})`;
  } finally {
    probe.disconnect();
  }
}
const skip = pgSkip ?? (await redisSkip());

describe.skipIf(skip !== undefined)(
  'fleet events with several server processes (Redis routing, one PostgreSQL)',
  { timeout: 180_000 },
  () => {
    it('every instance serves every event, whichever recorded it; a watcher resumes on another instance after a kill', async () => {
      await ensureBuilt();
      const { databaseUrl, schema } = pgSchema();
      const redisPrefix = `prfleet-test:events:${randomUUID().slice(0, 8)}:`;
      onTestFinished(async () => {
        const admin = new Redis(REDIS_URL);
        const keys = await admin.keys(`${redisPrefix}*`);
        if (keys.length > 0) await admin.del(...keys);
        await admin.quit();
      });
      const env: ScaleClusterEnv = {
        redisUrl: REDIS_URL,
        databaseUrl,
        schema,
        redisPrefix,
        extra: {
          // Far longer than the test waits: events recorded by the other instance arrive by the Redis wake-up.
          PRFLEET_EVENTS_POLL_MS: '30000',
          PRFLEET_OBSERVE_INTERVAL_MS: '0',
          PRFLEET_INSTANCE_TTL_MS: '1500',
          PRFLEET_HEARTBEAT_MS: '1000',
        },
      };
      const a = await startScaleServer('events-a', env); // runs the migrations first
      const b = await startScaleServer('events-b', env);
      onTestFinished(async () => {
        await Promise.all([a.handle.stop({ signal: 'SIGKILL' }), b.handle.stop({ graceMs: 3000 })]);
      });
      const onA = watch(fleetClient(a.address), { afterCursor: 0n });
      const onB = watch(fleetClient(b.address), { afterCursor: 0n });
      // The agents hold their streams on a (b is their fallback); b's commands reach them through Redis.
      await startEmulatedAgents({ address: `${a.address},${b.address}` });
      const viaB = createControlClient(b.address);
      const viaA = createControlClient(a.address);
      onTestFinished(() => {
        viaA.close();
        viaB.close();
      });
      await waitForPaths(viaB, LOADER1_DRIVE, 3);
      const drive = (agentId: string, path: string) => ({ agentId, path, luId: LOADER1_DRIVE });
      await viaB.register({ target: drive('host-c', '/dev/sg1'), newKey: 0xc1n });
      await viaB.register({ target: drive('host-a', '/dev/sg2'), newKey: 0xa1n });
      await viaB.reserve({
        target: drive('host-c', '/dev/sg1'),
        key: 0xc1n,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      });
      await viaA.preempt({
        target: drive('host-a', '/dev/sg2'),
        key: 0xa1n,
        preemptKey: 0xc1n,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      });
      await viaB.readKeys({ target: drive('host-c', '/dev/sg1') });

      // Agent events recorded by a, PROUTs by a and b, the unit attention by b: both watchers see all, in one order.
      for (const w of [onA, onB]) {
        await w.next(
          (e) => e.kind === EventKind.EVENT_KIND_AGENT_CONNECTED && e.agentId === 'host-c',
        );
        await w.next(
          (e) => e.kind === EventKind.EVENT_KIND_UNIT_ATTENTION && e.agentId === 'host-c',
        );
        await expect
          .poll(() => w.events.filter((e) => e.kind === EventKind.EVENT_KIND_PROUT).length)
          .toBe(4);
      }
      await expect.poll(() => onB.events.length).toBe(onA.events.length);
      expect(onB.events.map((e) => e.cursor)).toEqual(onA.events.map((e) => e.cursor));

      // a is killed: its watcher resumes on b after its last cursor; the agents re-attach to b, which records it.
      const last = onA.events.at(-1)!.cursor;
      await a.handle.stop({ signal: 'SIGKILL' });
      await expect.poll(() => onA.ended).toBeDefined();
      const resumed = watch(fleetClient(b.address), { afterCursor: last });
      for (const id of ['host-a', 'host-b', 'host-c'])
        await resumed.next(
          (e) => e.kind === EventKind.EVENT_KIND_AGENT_CONNECTED && e.agentId === id,
        );
      expect(resumed.events[0]?.cursor).toBe(last + 1n);
      const cursors = resumed.events.map((e) => e.cursor);
      expect(cursors).toEqual(cursors.map((_, i) => last + 1n + BigInt(i)));
      // b's original watcher saw the same, in the same order.
      await expect
        .poll(() => onB.events.length)
        .toBeGreaterThanOrEqual(onA.events.length + resumed.events.length);
      expect(
        onB.events
          .slice(onA.events.length)
          .map((e) => e.cursor)
          .slice(0, cursors.length),
      ).toEqual(cursors);
    });
  },
);
