// Issue 12 row 4: one agent cannot break a listing for everyone. Fake agents (fake-agent.ts, against a real
// server) report thousands of devices with long strings, or labels of hundreds of KB, or history entries with
// 4 KB paths and 2 KB reasons: every ListDevices / ListAgents / ListHistory page and Audit batch stays under the
// byte budget (PRFLEET_LIST_PAGE_BYTES, 1 MiB by default, a quarter of a client's 4 MiB), the pages together
// hold every item once, in order; a disconnected agent's devices stay listed as offline, paged; the CLI follows
// the pages.
import { Status } from 'nice-grpc';
import { createChannel, createClient } from 'nice-grpc';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  listAllAgents,
  listAllDevices,
  listAllKeys,
  listAllLoaders,
} from '../../src/common/pages.js';
import { runCli } from '../../src/cli/program.js';
import {
  ListAgentsResponse,
  ListDevicesResponse,
  ListHistoryResponse,
} from '../../src/gen/prfleet/v1/control.js';
import {
  AuditResponse,
  FleetServiceDefinition,
  ListKeysResponse,
} from '../../src/gen/prfleet/v1/fleet.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { DEFAULT_PAGE_BYTES } from '../../src/server/pages.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';
import { pgStore } from '../helpers/pg-store.js';

/** A client's default receive limit. */
const CLIENT_LIMIT = 4 * 1024 * 1024;
/** What a page may pass the budget by: the response's own framing. */
const SLACK = 64;

const luIdOf = (agent: number, i: number) =>
  `naa.5${agent.toString(16)}${i.toString(16).padStart(14, '0')}`;

/** `count` paths with long names and serials: ~1.1 KB each as a LogicalUnit. */
function bigInventory(agent: number, count: number) {
  return Array.from({ length: count }, (_, i) =>
    fakePath(`/dev/disk/by-path/${'p'.repeat(600)}-${i}`, luIdOf(agent, i), {
      serial: `S${'0'.repeat(300)}${i}`,
      loaderId: `loader-${agent}`,
    }),
  );
}

describe('listings are paged by bytes as well as count', () => {
  it('keeps every ListDevices page under the budget with 6,000 large devices, shown offline once their agent left', async () => {
    const { address, client, server } = await startTestServer();
    // Two agents, 3,000 paths each (~3.3 MB of inventory apiece): one listing of all would be ~7 MB.
    const agents = await Promise.all(
      [1, 2].map((n) =>
        connectFakeAgent(address, { agentId: `host-big${n}`, paths: bigInventory(n, 3000) }),
      ),
    );
    await expect.poll(() => server.agents.get('host-big2')?.paths.length).toBe(3000);
    await expect.poll(() => server.agents.get('host-big1')?.paths.length).toBe(3000);

    const pages: ListDevicesResponse[] = [];
    let token = '';
    do {
      const page = await client.listDevices({ pageToken: token });
      pages.push(page);
      token = page.nextPageToken;
    } while (token !== '' && pages.length < 100);
    for (const page of pages)
      expect(ListDevicesResponse.encode(page).finish().length).toBeLessThanOrEqual(
        DEFAULT_PAGE_BYTES + SLACK,
      );
    expect(pages.length).toBeGreaterThanOrEqual(7);
    const listed = pages.flatMap((p) => p.logicalUnits.map((u) => u.luId));
    const expected = [1, 2].flatMap((n) => Array.from({ length: 3000 }, (_, i) => luIdOf(n, i)));
    expect(listed).toEqual(expected); // every LU once, sorted by loader then id
    // A count bound still applies under the byte bound.
    expect((await client.listDevices({ pageSize: 10 })).logicalUnits).toHaveLength(10);
    await expect(client.listDevices({ pageSize: 10_001 })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
    await expect(client.listDevices({ pageToken: 'not-a-token' })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });

    // host-big1 goes away: its devices stay listed, offline, still paged.
    agents[0]?.kill();
    await expect
      .poll(async () => (await listAllAgents(client)).find((a) => a.agentId === 'host-big1'))
      .toMatchObject({ connected: false });
    const after = await listAllDevices(client, { loaderId: 'loader-1' });
    expect(after).toHaveLength(3000);
    expect(after.every((u) => u.paths.every((p) => !p.agentConnected))).toBe(true);

    // The CLI follows the pages.
    let stdout = '';
    const code = await runCli(
      ['--server', address, '--plaintext', '--output', 'json', 'devices', '--loader', 'loader-2'],
      { stdout: (t) => (stdout += t), stderr: (t) => (stdout += t) },
    );
    expect(code).toBe(0);
    const printed = JSON.parse(stdout) as { logicalUnits: { luId: string }[] };
    expect(printed.logicalUnits.map((u) => u.luId)).toEqual(expected.slice(3000));
  }, 120_000);

  it('pages ListAgents by bytes when agents carry large labels', async () => {
    // Label values are at most 200 bytes (a Hello passes the edge rules), so the budget is made small instead:
    // 12 agents with ~19 KB of labels each, ~230 KB in one listing, pages of at most 64 KiB.
    const budget = 64 * 1024;
    const { address, client } = await startTestServer({ config: { listPageBytes: budget } });
    const labels = Object.fromEntries(
      Array.from({ length: 100 }, (_, i) => [`label-${i}`, 'v'.repeat(190)]),
    );
    for (let n = 0; n < 12; n++)
      await connectFakeAgent(address, {
        agentId: `host-${String(n).padStart(2, '0')}`,
        labels,
        paths: [fakePath('/dev/sg0', luIdOf(3, n))],
      });
    const pages: ListAgentsResponse[] = [];
    let token = '';
    do {
      const page = await client.listAgents({ pageToken: token });
      pages.push(page);
      token = page.nextPageToken;
    } while (token !== '' && pages.length < 100);
    expect(pages.length).toBeGreaterThanOrEqual(3);
    for (const page of pages)
      expect(ListAgentsResponse.encode(page).finish().length).toBeLessThanOrEqual(budget + SLACK);
    const ids = pages.flatMap((p) => p.agents.map((a) => a.agentId));
    expect(ids).toEqual(Array.from({ length: 12 }, (_, n) => `host-${String(n).padStart(2, '0')}`));
    expect((await client.listAgents({ pageSize: 2 })).agents).toHaveLength(2); // count bounds too
  }, 60_000);

  it('keeps ListHistory pages under the budget with 4 KB paths and 2 KB reasons, and audit batches too', async () => {
    const budget = 256 * 1024;
    const { address, client } = await startTestServer({
      config: { listPageBytes: budget },
      deps: { store: await pgStore('pages') },
    });
    const longPath = `/dev/${'q'.repeat(4000)}`;
    const agent = await connectFakeAgent(address, {
      agentId: 'host-long',
      paths: [fakePath(longPath, luIdOf(4, 0))],
    });
    // The fake agent answers every command GOOD.
    let answering = true;
    void (async () => {
      while (answering) {
        const command = await agent.nextCommand(60_000).catch(() => undefined);
        if (command !== undefined) agent.respond(command);
      }
    })();
    onTestFinished(() => {
      answering = false;
    });
    const reason = 'r'.repeat(2000);
    for (let i = 0; i < 150; i++) {
      const { result } = await client.register({
        target: { agentId: 'host-long', path: longPath },
        newKey: BigInt(i + 1),
        ignoreExistingKey: true,
        options: { reason },
      });
      expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    }
    const pages: ListHistoryResponse[] = [];
    let token = '';
    do {
      const page = await client.listHistory({ pageSize: 1000, pageToken: token });
      pages.push(page);
      token = page.nextPageToken;
    } while (token !== '' && pages.length < 100);
    // ~6.2 KB per entry: 150 entries are ~930 KB, four pages of at most 256 KiB.
    expect(pages.length).toBeGreaterThanOrEqual(4);
    for (const page of pages)
      expect(ListHistoryResponse.encode(page).finish().length).toBeLessThanOrEqual(budget + SLACK);
    const seqs = pages.flatMap((p) => p.entries.map((e) => Number(e.seq)));
    expect(seqs).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    expect(CLIENT_LIMIT).toBeGreaterThan(budget);

    // Audit: 40 LUs of a departed agent (reported unreachable), each report carrying a 4 KB path: the batches
    // of reports stay under the budget too.
    const many = Array.from({ length: 40 }, (_, i) =>
      fakePath(`${longPath}-${i}`, luIdOf(5, i), { loaderId: 'loader-5' }),
    );
    const departed = await connectFakeAgent(address, { agentId: 'host-gone', paths: many });
    await expect
      .poll(async () => (await client.listDevices({ loaderId: 'loader-5' })).logicalUnits.length)
      .toBe(40);
    departed.kill();
    await expect
      .poll(async () => (await client.listAgents({})).agents.find((a) => a.agentId === 'host-gone'))
      .toMatchObject({ connected: false });
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const fleet = createClient(FleetServiceDefinition, channel);
    const events: AuditResponse[] = [];
    for await (const e of fleet.audit({
      selector: { loaderIds: ['loader-5'] },
      batchReports: true,
    }))
      events.push(e);
    const reports = events.flatMap((e) =>
      e.event?.$case === 'reports'
        ? e.event.value.reports
        : e.event?.$case === 'report'
          ? [e.event.value]
          : [],
    );
    expect(reports.map((r) => r.luId).sort()).toEqual(
      Array.from({ length: 40 }, (_, i) => luIdOf(5, i)).sort(),
    );
    for (const e of events)
      expect(AuditResponse.encode(e).finish().length).toBeLessThanOrEqual(budget + SLACK);
    expect(events.filter((e) => e.event?.$case === 'reports').length).toBeGreaterThan(0);
  }, 120_000);
});

describe('no PROUT runs whose history entry the store would refuse', () => {
  it('refuses, before sending, a PROUT to an LU whose id is longer than the history keeps', async () => {
    const { address, client } = await startTestServer({ deps: { store: await pgStore('pages') } });
    // An agent reports an LU id of 600 characters (the history keeps 500): the inventory's edge rules drop that
    // path (and keep the agent's others), so it is never listed and a PROUT to it finds nothing to send to. (The
    // pipeline also checks the history entry before sending, for what the edge lets through.)
    const lu = `naa.${'f'.repeat(596)}`;
    const agent = await connectFakeAgent(address, {
      agentId: 'host-odd',
      paths: [fakePath('/dev/sg0', lu), fakePath('/dev/sg1', luIdOf(5, 0))],
    });
    await expect
      .poll(async () => (await client.listDevices({})).logicalUnits.map((u) => u.luId))
      .toContain(luIdOf(5, 0));
    expect((await client.listDevices({})).logicalUnits.map((u) => u.luId)).not.toContain(lu);
    await expect(
      client.register({
        target: { agentId: 'host-odd', path: '/dev/sg0' },
        newKey: 0x1n,
        ignoreExistingKey: true,
        options: { idempotencyKey: 'too-long-path' },
      }),
    ).rejects.toMatchObject({ code: Status.NOT_FOUND });
    await expect(agent.nextCommand(300)).rejects.toThrow(/no command/);
    expect((await client.listHistory({})).entries).toEqual([]);
    expect((await client.verifyHistory({})).ok).toBe(true);
  });
});

describe('fleet listings are paged too', () => {
  it('pages ListKeys by count and bytes, oldest first, every key once', async () => {
    const budget = 16 * 1024;
    const { address } = await startTestServer({
      config: { listPageBytes: budget },
      deps: { store: await pgStore('pages') },
    });
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const fleet = createClient(FleetServiceDefinition, channel);
    const allocated: bigint[] = [];
    for (let i = 0; i < 90; i++) {
      const { key } = await fleet.allocateKey({
        agentId: `host-${i % 7}`,
        site: 'dc1',
        purpose: 'backup',
        owner: 'pages test',
        note: `${'n'.repeat(900)} ${i}`,
      });
      allocated.push(key!.key);
    }
    const pages: ListKeysResponse[] = [];
    let token = '';
    do {
      const page = await fleet.listKeys({ pageSize: 40, pageToken: token });
      pages.push(page);
      token = page.nextPageToken;
    } while (token !== '' && pages.length < 100);
    // ~1 KB per key: a 16 KiB budget cuts pages well before 40 keys.
    expect(pages.length).toBeGreaterThanOrEqual(6);
    for (const page of pages) {
      expect(page.keys.length).toBeGreaterThan(0);
      expect(ListKeysResponse.encode(page).finish().length).toBeLessThanOrEqual(budget + SLACK);
    }
    expect(pages.flatMap((p) => p.keys.map((k) => k.key))).toEqual(allocated);
    expect((await listAllKeys(fleet, { agentId: 'host-3' })).map((k) => k.key)).toEqual(
      allocated.filter((_, i) => i % 7 === 3),
    );
    await expect(fleet.listKeys({ pageSize: 10_001 })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
    await expect(fleet.listKeys({ pageToken: 'not a token' })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
  }, 60_000);

  it('pages ListLoaders by count and bytes, and the pages hold what one listing does', async () => {
    const { address } = await startTestServer({
      // Smaller than one loader: every page holds one (a page always advances).
      config: { listPageBytes: 64 },
      deps: { store: await pgStore('pages') },
    });
    await startEmulatedAgents({ address });
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const fleet = createClient(FleetServiceDefinition, channel);
    await expect.poll(async () => (await listAllLoaders(fleet)).length).toBeGreaterThan(1);
    const all = await listAllLoaders(fleet);
    const first = await fleet.listLoaders({ pageSize: 100 });
    expect(first.loaders).toHaveLength(1);
    expect(first.nextPageToken).not.toBe('');
    expect(all.map((l) => l.loaderId)).toEqual([...new Set(all.map((l) => l.loaderId))].sort());
    // page_size 1 without the byte cut, on a server with the default budget: the same loaders.
    const { address: other } = await startTestServer({ deps: { store: await pgStore('pages') } });
    await startEmulatedAgents({ address: other });
    const otherChannel = createChannel(other);
    onTestFinished(() => otherChannel.close());
    const otherFleet = createClient(FleetServiceDefinition, otherChannel);
    await expect
      .poll(async () => (await otherFleet.listLoaders({})).loaders.length)
      .toBe(all.length);
    const one = await otherFleet.listLoaders({ pageSize: 1 });
    expect(one.loaders.map((l) => l.loaderId)).toEqual([all[0]!.loaderId]);
    const rest: string[] = [];
    for (let token = one.nextPageToken; token !== '';) {
      const page = await otherFleet.listLoaders({ pageSize: 1, pageToken: token });
      rest.push(...page.loaders.map((l) => l.loaderId));
      token = page.nextPageToken;
    }
    expect(rest).toEqual(all.slice(1).map((l) => l.loaderId));
    // A loader asked for by id: one page, one loader.
    const picked = await otherFleet.listLoaders({ selector: { loaderIds: [all[1]!.loaderId] } });
    expect(picked.loaders.map((l) => l.loaderId)).toEqual([all[1]!.loaderId]);
    expect(picked.nextPageToken).toBe('');
  }, 90_000);
});
