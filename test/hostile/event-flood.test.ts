// An agent (a valid certificate, or anyone on a plaintext server) alternating two large inventories: each one is
// a difference of thousands of paths, and each path was a PATH_APPEARED / PATH_LOST event. Found: ~117,000 events
// a second, enough to push every watcher's cursor out of the log's retention within a second. Now each agent has
// a path-event budget (a burst of a full reconnect of the largest inventory, then 1,024 a minute) and past it one
// PATHS_CHURNED event a minute with the counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentClient, type AgentClient } from '../../src/common/client.js';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import type { ConnectRequest } from '../../src/gen/prfleet/v1/agent.js';
import { PathEventBudget } from '../../src/server/events/agent-source.js';
import { EventKind, fleetClient, watch } from '../events/helpers.js';
import { ManualClock } from '../helpers/clock.js';
import { ensureBuilt } from '../helpers/processes.js';
import { fakePath } from '../server/fake-agent.js';

const inventory = (offset: number, count: number): ConnectRequest => ({
  message: {
    $case: 'inventory',
    value: {
      paths: Array.from({ length: count }, (_, i) =>
        fakePath(`/dev/sg${offset + i}`, `naa.5000e111${String(offset + i).padStart(8, '0')}`),
      ),
    },
  },
});

describe('an agent flapping its inventory', () => {
  let server: ServerProcess;
  let agents: AgentClient;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({ env: { PRFLEET_STORE: 'memory' } });
    agents = createAgentClient(server.address);
  }, 600_000);

  afterAll(async () => {
    agents?.close();
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('cannot flood the event log: its path events stop at the budget, then one PATHS_CHURNED', async () => {
    const watcher = watch(fleetClient(server.address), {});
    const done = new AbortController();
    async function* requests(): AsyncGenerator<ConnectRequest> {
      yield {
        message: {
          $case: 'hello',
          value: {
            agentId: 'flapper',
            hostname: 'flapper',
            version: 't',
            site: '',
            labels: {},
            transport: 'emulated',
            acceptsCommandBatches: true,
          },
        },
      };
      // 2 × 2,048 different paths, 12 times: 12 × 4,096 = 49,152 path events without a budget.
      for (let round = 0; round < 12; round++) yield inventory(round % 2 === 0 ? 0 : 2048, 2048);
      await new Promise((resolve) => done.signal.addEventListener('abort', resolve));
    }
    const stream = (async () => {
      for await (const _ of agents.connect(requests(), { signal: done.signal }));
    })().catch(() => undefined);

    await watcher.next((e) => e.kind === EventKind.EVENT_KIND_PATHS_CHURNED, 60_000);
    // Let the rest of the rounds land, then count.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const pathEvents = watcher.events.filter(
      (e) =>
        e.kind === EventKind.EVENT_KIND_PATH_APPEARED || e.kind === EventKind.EVENT_KIND_PATH_LOST,
    );
    expect(pathEvents.length).toBeLessThanOrEqual(8192 + 1024);
    expect(
      watcher.events.filter((e) => e.kind === EventKind.EVENT_KIND_PATHS_CHURNED),
    ).toHaveLength(1);
    done.abort();
    await stream;
  }, 120_000);
});

describe('PathEventBudget', () => {
  const events = (n: number) =>
    Array.from({ length: n }, () => ({ kind: EventKind.EVENT_KIND_PATH_APPEARED }));

  it('admits a burst, then tells the churn once a minute, then admits single events again', async () => {
    const clock = new ManualClock();
    const budget = new PathEventBudget(100, 60, clock);
    expect(budget.admit('a', '', events(100))).toHaveLength(100);
    const told = budget.admit('a', '', events(10));
    expect(told.map((e) => e.kind)).toEqual([EventKind.EVENT_KIND_PATHS_CHURNED]);
    expect(told[0]?.summary).toContain('10 appeared');
    await clock.advance(30_000);
    expect(budget.admit('a', '', events(5))).toEqual([]); // counted, told at most once a minute
    expect(budget.admit('b', '', events(5))).toHaveLength(5); // per agent
    await clock.advance(60_000); // 90 s of refill: over half the burst
    const again = budget.admit('a', '', events(3));
    expect(again[0]?.summary).toContain('8 appeared');
    expect(budget.admit('a', '', events(3))).toHaveLength(3);
  });

  it('refills a bucket up to the burst and no further, whatever other agents do meanwhile', async () => {
    const clock = new ManualClock();
    const budget = new PathEventBudget(100, 60, clock);
    expect(budget.admit('a', '', events(60))).toHaveLength(60);
    await clock.advance(30_000); // 30 of the 60 back
    for (const other of ['b', 'c', 'd']) budget.admit(other, '', events(1));
    expect(budget.admit('a', '', events(71))[0]?.kind).toBe(EventKind.EVENT_KIND_PATHS_CHURNED);
    const fresh = new PathEventBudget(100, 60, clock);
    expect(fresh.admit('a', '', events(60))).toHaveLength(60);
    await clock.advance(600_000); // ten minutes: full again, not 100 + 600
    for (const other of ['b', 'c', 'd']) fresh.admit(other, '', events(1));
    expect(fresh.admit('a', '', events(100))).toHaveLength(100);
    expect(fresh.admit('a', '', events(1))[0]?.kind).toBe(EventKind.EVENT_KIND_PATHS_CHURNED);
  });
});
