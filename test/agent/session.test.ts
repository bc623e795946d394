import { describe, expect, it, onTestFinished } from 'vitest';
import { createAgent, type Agent } from '../../agent/agent.js';
import { backoffDelayMs } from '../../agent/reconnect.js';
import { allowedPath, globToRegExp, isNormalPath } from '../../src/common/device-glob.js';
import { createEmulatedFabric, loadFabric } from '../../agent/fabric.js';
import { createEmulatedSource } from '../../agent/sources.js';
import { Outcome, PrinAction, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import { ManualClock } from '../helpers/clock.js';
import { startFakeAgentServer } from './fake-server.js';
import { prin, prout, silentLog } from './helpers.js';

const demo = new URL('../../examples/fabric-demo.yaml', import.meta.url).pathname;

async function startAgent(
  address: string,
  hostId: string,
  options: { latencyMs?: number; allow?: string[] } = {},
): Promise<Agent> {
  const fabric = createEmulatedFabric(
    await loadFabric(demo),
    options.latencyMs ? { latencyMs: options.latencyMs } : {},
  );
  const agent = createAgent(
    {
      server: address,
      agentId: hostId,
      site: 'dc1',
      labels: { role: 'test' },
      plaintext: true,
      heartbeatMs: 50,
      backoff: { initialMs: 20, maxMs: 100, healthyMs: 1000 },
      drainMs: 2000,
      ...(options.allow ? { allow: options.allow } : {}),
    },
    { log: silentLog, source: createEmulatedSource(fabric.host(hostId), { closeFabric: fabric }) },
  );
  onTestFinished(() => agent.stop());
  await agent.start();
  return agent;
}

describe('agent session against a real gRPC server', () => {
  it('sends Hello, then Inventory, heartbeats, and answers a Command with its Result', async () => {
    const server = await startFakeAgentServer({ heartbeatMs: 40 });
    const agent = await startAgent(server.address, 'host-a');
    const session = await server.session(0);
    expect(session.hello).toMatchObject({
      agentId: 'host-a',
      site: 'dc1',
      labels: { role: 'test' },
      transport: 'emulated',
    });
    const inventory = await session.next('inventory');
    expect(inventory.paths.map((p) => p.path)).toEqual([
      '/dev/sg0',
      '/dev/sg1',
      '/dev/sg2',
      '/dev/sg3',
      '/dev/sg4',
    ]);
    expect(inventory.paths[0]!.luId).toBe(inventory.paths[1]!.luId); // multipath: one LU, two nexuses
    await agent.waitForState('connected');
    const heartbeat = await session.next('heartbeat');
    expect(heartbeat.sentAt).toBeInstanceOf(Date);

    session.send({
      $case: 'command',
      value: prout(
        '/dev/sg0',
        { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: 0x77n },
        { commandId: 'cmd-1' },
      ),
    });
    const result = await session.next('result');
    expect(result).toMatchObject({
      commandId: 'cmd-1',
      outcome: Outcome.OUTCOME_GOOD,
      agentId: 'host-a',
      path: '/dev/sg0',
      luId: inventory.paths[0]!.luId,
    });
    const before = session.received.length;
    session.send({
      $case: 'command',
      value: prin('/dev/sg1', PrinAction.PRIN_ACTION_READ_KEYS, { commandId: 'cmd-2' }),
    });
    const keys = await session.next('result', before);
    expect(keys.data).toMatchObject({ $case: 'readKeys', value: { keys: [0x77n] } });
  });

  it('reports only allowed nodes and refuses the others', async () => {
    const server = await startFakeAgentServer();
    await startAgent(server.address, 'host-b', { allow: ['/dev/sg[01]'] });
    const session = await server.session(0);
    const inventory = await session.next('inventory');
    expect(inventory.paths.map((p) => p.path)).toEqual(['/dev/sg0', '/dev/sg1']);
    session.send({
      $case: 'command',
      value: prin('/dev/sg2', PrinAction.PRIN_ACTION_READ_KEYS, { commandId: 'x' }),
    });
    const refused = await session.next('result');
    expect(refused.outcome).toBe(Outcome.OUTCOME_REFUSED);
    expect(refused.message).toMatch(/not in this agent's inventory/);
  });

  it('reconnects when the server ends the stream with OK', async () => {
    const server = await startFakeAgentServer();
    const agent = await startAgent(server.address, 'host-c');
    const first = await server.session(0);
    await first.next('inventory');
    first.outbox.close(); // the server ends the stream: status OK
    const second = await server.session(1);
    expect(second.hello.agentId).toBe('host-c');
    await second.next('inventory');
    await expect.poll(() => agent.sessions).toBe(2);
    expect(agent.state).toBe('connected');
  });

  it('finishes in-flight commands and sends their results before reconnecting on Reconnect', async () => {
    const server = await startFakeAgentServer();
    const agent = await startAgent(server.address, 'host-a', { latencyMs: 150 });
    const first = await server.session(0);
    await first.next('inventory');
    first.send({
      $case: 'command',
      value: prout(
        '/dev/sg0',
        { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: 0x99n },
        { commandId: 'slow' },
      ),
    });
    await expect.poll(() => agent.executor.inFlight).toBe(1);
    first.send({ $case: 'reconnect', value: { reason: 'server draining' } });
    const result = await first.next('result');
    expect(result).toMatchObject({ commandId: 'slow', outcome: Outcome.OUTCOME_GOOD });
    await first.ended; // the agent half-closed after the result
    const second = await server.session(1);
    await second.next('inventory');
    expect(agent.sessions).toBe(2);
  });

  it('drops a cancelled command before submission and sends a new inventory on Rescan', async () => {
    const server = await startFakeAgentServer();
    await startAgent(server.address, 'host-b', { latencyMs: 100 });
    const session = await server.session(0);
    await session.next('inventory');
    const mark = session.received.length;
    session.send({
      $case: 'command',
      value: prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS, { commandId: 'first' }),
    });
    session.send({
      $case: 'command',
      value: prout(
        '/dev/sg0',
        { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: 5n },
        { commandId: 'second' },
      ),
    });
    session.send({ $case: 'cancel', value: { commandId: 'second' } });
    const results = [await session.next('result', mark)];
    while (results.length < 2) {
      await new Promise((r) => setTimeout(r, 10));
      results.splice(
        0,
        results.length,
        ...session.received
          .slice(mark)
          .filter((m) => m.message?.$case === 'result')
          .map((m) => m.message!.value as never),
      );
    }
    const byId = Object.fromEntries(
      results.map((r: { commandId: string; outcome: Outcome; message: string }) => [
        r.commandId,
        r,
      ]),
    );
    expect(byId['first']!.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(byId['second']).toMatchObject({
      outcome: Outcome.OUTCOME_REFUSED,
      message: 'cancelled before submission',
    });

    const beforeRescan = session.received.length;
    session.send({ $case: 'rescan', value: {} });
    const again = await session.next('inventory', beforeRescan);
    expect(again.paths).toHaveLength(4);
  });

  it('keeps trying while no server listens, then stops cleanly', async () => {
    const server = await startFakeAgentServer();
    const address = server.address;
    await server.server.shutdown(); // nothing listens on the port any more
    const agent = await startAgent(address, 'host-a');
    await new Promise((r) => setTimeout(r, 150));
    expect(agent.state).toBe('connecting');
    expect(agent.sessions).toBe(0);
    await agent.stop();
    expect(agent.state).toBe('stopped');
  });

  it('stops: drains, ends the stream, state stopped', async () => {
    const server = await startFakeAgentServer();
    const agent = await startAgent(server.address, 'host-a');
    const session = await server.session(0);
    await session.next('inventory');
    const states: string[] = [];
    agent.onStateChange((s) => states.push(s));
    await agent.stop();
    await session.ended;
    expect(states).toEqual(['draining', 'stopped']);
  });
  it('reports a failed path offline in a new inventory, and online again once it answers', async () => {
    const server = await startFakeAgentServer();
    const fabric = createEmulatedFabric(await loadFabric(demo));
    const host = fabric.host('host-c');
    const agent = createAgent(
      { server: server.address, agentId: 'host-c', plaintext: true },
      { log: silentLog, source: createEmulatedSource(host, { closeFabric: fabric }) },
    );
    onTestFinished(() => agent.stop());
    await agent.start();
    const session = await server.session(0);
    await session.next('inventory');
    host.transport.failPath('/dev/sg2');
    let mark = session.received.length;
    session.send({
      $case: 'command',
      value: prin('/dev/sg2', PrinAction.PRIN_ACTION_READ_KEYS, { commandId: 'f1' }),
    });
    expect((await session.next('result', mark)).outcome).toBe(Outcome.OUTCOME_OS_ERROR);
    const offline = await session.next('inventory', mark);
    expect(offline.paths.find((p) => p.path === '/dev/sg2')?.online).toBe(false);
    host.transport.restorePath('/dev/sg2');
    mark = session.received.length;
    session.send({
      $case: 'command',
      value: prin('/dev/sg2', PrinAction.PRIN_ACTION_READ_KEYS, { commandId: 'f2' }),
    });
    const online = await session.next('inventory', mark);
    expect(online.paths.find((p) => p.path === '/dev/sg2')?.online).toBe(true);
    expect((await session.next('result', mark)).outcome).toBe(Outcome.OUTCOME_GOOD);
  });
});

describe('backoff', () => {
  it('draws full jitter below min(max, initial · 2^attempt)', () => {
    const top = () => 0.999999;
    expect(backoffDelayMs(0, { initialMs: 100, maxMs: 1000 }, top)).toBe(99);
    expect(backoffDelayMs(3, { initialMs: 100, maxMs: 1000 }, top)).toBe(799);
    expect(backoffDelayMs(4, { initialMs: 100, maxMs: 1000 }, top)).toBe(999);
    expect(backoffDelayMs(500, { initialMs: 100, maxMs: 1000 }, top)).toBe(999);
    expect(backoffDelayMs(7, { initialMs: 100, maxMs: 1000 }, () => 0)).toBe(0);
    for (let attempt = 0; attempt < 40; attempt++) {
      const d = backoffDelayMs(attempt);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(30_000);
    }
  });

  it('resets after a healthy session: a reconnect right after a long session waits at most initialMs', async () => {
    // The agent's clock is manual: sessions last, and backoffs pass, only as the test moves time.
    const clock = new ManualClock();
    const server = await startFakeAgentServer();
    const fabric = createEmulatedFabric(await loadFabric(demo));
    const agent = createAgent(
      {
        server: server.address,
        agentId: 'host-b',
        plaintext: true,
        backoff: { initialMs: 40, maxMs: 5000, healthyMs: 100 },
      },
      {
        log: silentLog,
        source: createEmulatedSource(fabric.host('host-b'), { closeFabric: fabric }),
        random: () => 0.999,
        clock,
      },
    );
    onTestFinished(() => agent.stop());
    await agent.start();
    /** Ends session `index` and checks the agent reconnects after exactly `waitMs` on its clock. */
    const reconnectsAfter = async (index: number, waitMs: number) => {
      (await server.session(index)).outbox.close();
      await expect.poll(() => clock.pending, { interval: 5 }).toBe(1); // the backoff's sleep
      await clock.advance(waitMs - 1);
      expect(server.sessions).toHaveLength(index + 1);
      await clock.advance(1);
      await expect.poll(() => server.sessions.length, { timeout: 5_000 }).toBe(index + 2);
    };
    // Three short sessions raise the attempt count: waits grow 39, 79, 159 ms.
    for (const [i, waitMs] of [39, 79, 159].entries()) {
      await (await server.session(i)).next('inventory');
      await reconnectsAfter(i, waitMs);
    }
    await (await server.session(3)).next('inventory');
    await clock.advance(100); // healthy now
    await reconnectsAfter(3, 39); // not 319: the attempt count started again
  });
});

describe('globToRegExp', () => {
  it('matches device nodes like a shell glob', () => {
    expect(globToRegExp('/dev/sg*').test('/dev/sg12')).toBe(true);
    expect(globToRegExp('/dev/sg?').test('/dev/sg12')).toBe(false);
    expect(globToRegExp('/dev/sg[0-3]').test('/dev/sg3')).toBe(true);
    expect(globToRegExp('/dev/sg[0-3]').test('/dev/sg4')).toBe(false);
    expect(globToRegExp('/dev/sg.1').test('/dev/sgx1')).toBe(false);
  });

  it('matches normalized paths only, and `*` never matches `/`', () => {
    const allow = [globToRegExp('/dev/sg1*')];
    expect(allowedPath(allow, '/dev/sg12')).toBe(true);
    for (const path of [
      '/dev/sg1/../sg0',
      '/dev/sg1/./sg0',
      '/dev//sg1',
      '/dev/sg1/',
      '/dev/sg1x/y',
    ])
      expect(allowedPath(allow, path), path).toBe(false);
    expect(isNormalPath('/dev/sg0')).toBe(true);
    expect(allowedPath([], '/dev/../dev/sg0')).toBe(false); // no allow-list: still normalized paths only
  });
});
