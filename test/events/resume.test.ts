import { Status } from 'nice-grpc-common';
import { describe, expect, it } from 'vitest';
import { EventKind } from '../../src/gen/prfleet/v1/events.js';
import { defaultServerConfig } from '../../src/server/config.js';
import { createMetrics, eventsObserver } from '../../src/server/metrics.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { fleetClient, watch } from './helpers.js';

const events = (over: Partial<ReturnType<typeof defaultServerConfig>['events']>) => ({
  ...defaultServerConfig().events,
  pollMs: 50,
  ...over,
});

describe('Watch cursors on the memory store', { timeout: 120_000 }, () => {
  it('refuses a cursor older than the retention (CURSOR_EXPIRED) and one ahead of the log, and starts from a snapshot', async () => {
    const { address, client, server } = await startTestServer({
      config: { events: events({ retainEvents: 5 }) },
    });
    const fleet = fleetClient(address);
    await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    await expect.poll(() => server.events.log.head()).toBeGreaterThan(10);
    await server.events.log.prune();
    const head = await server.events.log.head();

    const old = watch(fleet, { afterCursor: 1n });
    await expect
      .poll(() => old.ended?.error)
      .toMatchObject({ code: Status.FAILED_PRECONDITION, reason: 'CURSOR_EXPIRED' });
    expect(old.ended?.metadata).toMatchObject({ cursor: '1', oldest_cursor: String(head - 5) });
    expect(old.ended?.error?.message).toMatch(/older than the event log's retention.*snapshot/);
    const badKind = watch(fleet, { kinds: [EventKind.EVENT_KIND_PROUT, 99 as EventKind] });
    await expect
      .poll(() => badKind.ended?.error)
      .toMatchObject({ code: Status.INVALID_ARGUMENT, field: 'kinds[1]' });
    const ahead = watch(fleet, { afterCursor: BigInt(head + 100) });
    await expect
      .poll(() => ahead.ended?.error)
      .toMatchObject({ code: Status.OUT_OF_RANGE, reason: 'CURSOR_AHEAD' });

    // The snapshot: agents and LUs as they are now, then every event after its cursor.
    const fresh = watch(fleet, { snapshot: true, agentIds: ['host-a'] });
    await expect.poll(() => fresh.snapshot).toBeDefined();
    expect(Number(fresh.snapshot?.cursor)).toBe(head);
    expect(fresh.snapshot?.agents).toEqual([
      { agentId: 'host-a', site: 'dc1', connected: true, paths: 5 },
    ]);
    expect(fresh.snapshot?.logicalUnits.map((u) => u.luId)).toHaveLength(4);
    await client.register({
      target: { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE },
      newKey: 0xa1n,
    });
    const prout = await fresh.next((e) => e.kind === EventKind.EVENT_KIND_PROUT);
    expect(Number(prout.cursor)).toBe(head + 1);
    expect(prout).toMatchObject({
      agentId: 'host-a',
      luId: LOADER1_DRIVE,
      path: '/dev/sg2',
      loaderId: 'loader1',
      site: 'dc1',
    });
  });

  it('ends a watcher that falls too far behind (RESOURCE_EXHAUSTED) without holding anyone up; it resumes from its cursor', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const { address, server } = await startTestServer({
      config: { events: events({ maxLag: 2_000 }) },
      deps: { eventsObserver: eventsObserver(metrics) },
    });
    const fleet = fleetClient(address);
    let pause: Promise<void> | undefined = new Promise((r) => setTimeout(r, 4_000));
    const slow = watch(
      fleet,
      {},
      {
        slow: async () => {
          await pause;
          pause = undefined;
        },
      },
    );
    const fast = watch(fleet, {});
    await new Promise((r) => setTimeout(r, 300));
    // Far more than HTTP/2 buffers hold, at a pace a reader keeps up with: the slow watcher's stream stops and
    // its lag grows past 2,000; the fast one follows.
    const total = 20_000;
    const started = performance.now();
    for (let i = 0; i < total; i += 100) {
      await new Promise((r) => setTimeout(r, 10));
      await server.events.log.append(
        Array.from({ length: 100 }, (_, j) => ({
          kind: EventKind.EVENT_KIND_AGENT_CONNECTED,
          agentId: `host-${i + j}`,
          summary: `host-${i + j} connected, with a summary long enough to fill the transport's buffers quickly`,
        })),
      );
    }
    const appendMs = performance.now() - started;
    await expect.poll(() => fast.ended ?? fast.events.length, { timeout: 60_000 }).toBe(total);
    await expect
      .poll(() => slow.ended?.error, { timeout: 30_000 })
      .toMatchObject({
        code: Status.RESOURCE_EXHAUSTED,
        reason: 'WATCHER_TOO_SLOW',
      });
    const cursor = BigInt(slow.ended?.metadata['cursor'] ?? '-1');
    expect(cursor).toBe(slow.events.at(-1)?.cursor);
    const resumed = watch(fleet, { afterCursor: cursor });
    await expect
      .poll(() => resumed.events.length, { timeout: 30_000 })
      .toBe(total - Number(cursor));
    expect(resumed.events[0]?.cursor).toBe(cursor + 1n);
    // /metrics: events recorded by kind, watchers open, watchers ended for being slow.
    const text = await metrics.registry.metrics();
    expect(text).toContain(`prfleet_events_total{kind="agent_connected"} ${total}`);
    expect(text).toContain('prfleet_watchers_ended_slow_total 1');
    expect(text).toMatch(/prfleet_watchers 2\n/); // the fast one and the resumed one
    resumed.stop();
    fast.stop();
    await expect
      .poll(() => metrics.registry.getSingleMetricAsString('prfleet_watchers'))
      .toMatch(/prfleet_watchers 0/);
    console.log(
      `slow watcher: ended after ${slow.events.length} events; ${total} appended in ${appendMs.toFixed(0)} ms`,
    );
  });
});
