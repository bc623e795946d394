import { credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import { createServer } from 'nice-grpc';
import { ServerError, Status } from 'nice-grpc-common';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createAgentClient } from '../../src/common/client.js';
import { createLogger } from '../../src/common/logger.js';
import {
  AgentServiceDefinition,
  ConnectRequest,
  ConnectResponse,
} from '../../src/gen/prfleet/v1/agent.js';
import { AgentRegistry } from '../../src/server/agents/index.js';
import { createAgentService } from '../../src/server/agents/service.js';
import { createInProcessRouter } from '../../src/server/router.js';
import { Outcome, PrinAction } from '../../src/gen/prfleet/v1/scsi.js';
import { ManualClock } from '../helpers/clock.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';

const LU1 = 'naa.5000e11100000001';
const LU2 = 'naa.5000e11100000002';

describe('AgentService.Connect', () => {
  it('answers Hello with a Welcome carrying session, instance and heartbeat interval', async () => {
    const { address, client } = await startTestServer({ config: { heartbeatMs: 1234 } });
    const agent = await connectFakeAgent(address, { agentId: 'host-a' });
    expect(agent.welcome.serverInstance).toBe('test');
    expect(agent.welcome.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(agent.welcome.heartbeatInterval).toEqual({ seconds: 1n, nanos: 234_000_000 });
    const { agents } = await client.listAgents({});
    expect(agents).toHaveLength(1);
    expect(agents[0]).toMatchObject({
      agentId: 'host-a',
      hostname: 'host-a.example',
      connected: true,
      sessionId: agent.welcome.sessionId,
      serverInstance: 'test',
      transport: 'emulated',
    });
  });

  it('ends the stream with INVALID_ARGUMENT when the first message is not Hello', async () => {
    const { address, client } = await startTestServer();
    await expect(
      connectFakeAgent(address, { agentId: 'x', skipHello: true }),
    ).rejects.toMatchObject({
      end: { ok: false, code: Status.INVALID_ARGUMENT },
    });
    expect((await client.listAgents({})).agents).toEqual([]);
  });

  it('ends the stream with INVALID_ARGUMENT when the agent half-closes before saying Hello', async () => {
    const { address } = await startTestServer();
    const client = createAgentClient(address);
    onTestFinished(() => client.close());
    const error = await (async () => {
      for await (const _ of client.connect((async function* () {})())) void _;
    })().catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringContaining('must be hello') as unknown,
    });
  });

  it('refuses a Hello without agent_id, naming the field, and registers nothing', async () => {
    const { address, client } = await startTestServer();
    await expect(connectFakeAgent(address, { agentId: '' })).rejects.toMatchObject({
      end: { ok: false, code: Status.INVALID_ARGUMENT },
    });
    expect((await client.listAgents({})).agents).toEqual([]);
  });

  it('counts each Connect stream by its final status, as every other RPC is counted', async () => {
    const seen: [string, string][] = [];
    const { address } = await startTestServer({
      deps: { observeRpc: (method, code) => seen.push([method, code]) },
    });
    const ok = await connectFakeAgent(address, { agentId: 'host-a' });
    ok.end();
    expect(await ok.ended).toEqual({ ok: true });
    await expect(
      connectFakeAgent(address, { agentId: 'x', skipHello: true }),
    ).rejects.toBeDefined();
    const replaced = await connectFakeAgent(address, { agentId: 'host-b' });
    await connectFakeAgent(address, { agentId: 'host-b' });
    expect(await replaced.ended).toMatchObject({ ok: false, code: Status.ABORTED });
    const connect = '/prfleet.v1.AgentService/Connect';
    await expect
      .poll(() => seen.filter(([method]) => method === connect).map(([, code]) => code))
      .toEqual(['OK', 'INVALID_ARGUMENT', 'ABORTED']);
  });

  it('ends only that stream, INTERNAL, when handling an agent message fails; the server keeps serving', async () => {
    const { address, client, server } = await startTestServer();
    const agent = await connectFakeAgent(address, { agentId: 'host-a' });
    const heartbeat = server.agents.heartbeat.bind(server.agents);
    server.agents.heartbeat = () => {
      throw new Error('boom');
    };
    agent.send({ message: { $case: 'heartbeat', value: {} } });
    expect(await agent.ended).toMatchObject({ ok: false, code: Status.INTERNAL });
    server.agents.heartbeat = heartbeat;
    await expect.poll(async () => (await client.listAgents({})).agents[0]?.connected).toBe(false);
    const again = await connectFakeAgent(address, { agentId: 'host-a' });
    expect(again.welcome.sessionId).not.toBe(agent.welcome.sessionId);
  });

  it('ends a stream that says no Hello in time (DEADLINE_EXCEEDED), registering nothing', async () => {
    const log = createLogger({ level: 'silent' });
    const registry = new AgentRegistry({
      heartbeatMs: 10_000,
      missedHeartbeats: 3,
      outboxCapacity: 16,
      log,
    });
    const router = createInProcessRouter({ registry, log, instanceId: 'slow-hello' });
    const agentService = createAgentService({
      registry,
      router,
      instanceId: 'slow-hello',
      log,
      helloTimeoutMs: 150,
    });
    const server = createServer({ interceptors: [agentService.interceptor] });
    server.add(AgentServiceDefinition, agentService.implementation);
    const port = await server.listen('127.0.0.1:0');
    onTestFinished(() => server.forceShutdown());
    const client = createAgentClient(`127.0.0.1:${port}`);
    onTestFinished(() => client.close());
    const silent = new AbortController();
    onTestFinished(() => silent.abort());
    const error = await (async () => {
      const nothing = (async function* () {
        await new Promise((r) => silent.signal.addEventListener('abort', r));
      })();
      for await (const _ of client.connect(nothing)) void _;
    })().catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: Status.DEADLINE_EXCEEDED,
      details: expect.stringContaining('no Hello within 150 ms') as unknown,
    });
    expect(registry.list()).toEqual([]);
  });

  it('says what is missing when a server registers AgentService without its interceptor', async () => {
    const log = createLogger({ level: 'silent' });
    const registry = new AgentRegistry({
      heartbeatMs: 10_000,
      missedHeartbeats: 3,
      outboxCapacity: 16,
      log,
    });
    const router = createInProcessRouter({ registry, log, instanceId: 'bare' });
    const server = createServer();
    server.add(
      AgentServiceDefinition,
      createAgentService({ registry, router, instanceId: 'bare', log }).implementation,
    );
    const port = await server.listen('127.0.0.1:0');
    onTestFinished(() => server.forceShutdown());
    await expect(
      connectFakeAgent(`127.0.0.1:${port}`, { agentId: 'host-a' }),
    ).rejects.toMatchObject({
      end: {
        ok: false,
        code: Status.INTERNAL,
        details: expect.stringContaining('createAgentService().interceptor') as unknown,
      },
    });
  });

  it('groups inventories by lu_id across agents in ListDevices and filters by site, label, type and loader', async () => {
    const { address, client } = await startTestServer();
    await connectFakeAgent(address, {
      agentId: 'host-a',
      labels: { role: 'media-server' },
      paths: [
        fakePath('/dev/sg0', LU1),
        fakePath('/dev/sg1', LU1),
        fakePath('/dev/sg2', LU2, { peripheralDeviceType: 1, loaderId: 'loader1' }),
      ],
    });
    await connectFakeAgent(address, {
      agentId: 'host-c',
      site: 'dc2',
      labels: { role: 'vault' },
      paths: [fakePath('/dev/sg5', LU1)],
    });
    await expect
      .poll(async () => (await client.listDevices({})).logicalUnits.flatMap((u) => u.paths).length)
      .toBe(4);

    const { logicalUnits } = await client.listDevices({});
    expect(logicalUnits.map((u) => u.luId)).toEqual([LU1, LU2]);
    expect(logicalUnits[0]?.paths.map((p) => `${p.agentId}:${p.path?.path}`)).toEqual([
      'host-a:/dev/sg0',
      'host-a:/dev/sg1',
      'host-c:/dev/sg5',
    ]);
    expect(logicalUnits[0]?.capabilities?.profile).toBe('superloader-changer');

    const dc2 = await client.listDevices({ site: 'dc2' });
    expect(dc2.logicalUnits.map((u) => [u.luId, u.paths.length])).toEqual([[LU1, 1]]);
    const media = await client.listDevices({ labels: ['role=media-server'] });
    expect(media.logicalUnits.map((u) => u.luId)).toEqual([LU1, LU2]);
    const tapes = await client.listDevices({ peripheralDeviceType: 1 });
    expect(tapes.logicalUnits.map((u) => u.luId)).toEqual([LU2]);
    expect((await client.listDevices({ loaderId: 'nope' })).logicalUnits).toEqual([]);
    await expect(client.listDevices({ labels: ['role'] })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });

    const device = await client.getDevice({ luId: LU2 });
    expect(device.logicalUnit?.paths).toHaveLength(1);
    await expect(client.getDevice({ luId: 'naa.0' })).rejects.toMatchObject({
      code: Status.NOT_FOUND,
    });
  });

  it('replaces the inventory on each Inventory message', async () => {
    const { address, client } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(async () => (await client.listAgents({})).agents[0]?.pathCount).toBe(1);
    agent.sendInventory([fakePath('/dev/sg0', LU2), fakePath('/dev/sg1', LU2)]);
    await expect
      .poll(async () => (await client.listDevices({})).logicalUnits.map((u) => u.luId))
      .toEqual([LU2]);
  });

  it('replaces the old session of a reconnecting agent: old stream ended, its in-flight command UNKNOWN', async () => {
    const { address, client, server } = await startTestServer();
    const old = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const pending = client.readKeys({ target: { agentId: 'host-a', path: '/dev/sg0' } });
    await old.nextCommand();

    const fresh = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    const { result } = await pending; // RPC OK, never an error
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toMatch(/replaced/);
    expect(result?.agentId).toBe('host-a');
    expect(result?.luId).toBe(LU1);
    expect(await old.ended).toMatchObject({ ok: false, code: Status.ABORTED });
    expect(server.agents.session('host-a')?.sessionId).toBe(fresh.welcome.sessionId);
    expect(fresh.welcome.sessionId).not.toBe(old.welcome.sessionId);
    expect((await client.listAgents({})).agents).toHaveLength(1);
  });

  it('turns in-flight commands into UNKNOWN results when the agent stream drops mid-command', async () => {
    const { address, client, server } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const pending = client.reserve({
      target: { agentId: 'host-a', path: '/dev/sg0' },
      key: 0x77n,
      type: 3,
    });
    await agent.nextCommand();
    agent.kill();
    const { result } = await pending;
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toMatch(/may or may not have run/);
    await expect.poll(async () => (await client.listAgents({})).agents[0]?.connected).toBe(false);
    // The offline agent's paths stay listed, marked disconnected.
    const { logicalUnits } = await client.listDevices({});
    expect(logicalUnits[0]?.paths[0]?.agentConnected).toBe(false);
  });

  it('treats an agent half-close the same way: in-flight command UNKNOWN, agent disconnected', async () => {
    const { address, client, server } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const pending = client.readReservation({ target: { luId: LU1 } });
    await agent.nextCommand();
    agent.end();
    expect((await pending).result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(await agent.ended).toEqual({ ok: true });
  });

  it('drops an agent silent for more than 3 heartbeat intervals', async () => {
    // Liveness runs on the server's manual clock: time moves only between the chatty agent's heartbeats.
    const clock = new ManualClock();
    const { address, client, server } = await startTestServer({
      config: { heartbeatMs: 100 },
      deps: { clock },
    });
    const silent = await connectFakeAgent(address, { agentId: 'silent' });
    const chatty = await connectFakeAgent(address, { agentId: 'chatty' });
    for (let elapsedMs = 0; elapsedMs < 300; elapsedMs += 50) {
      chatty.send({ message: { $case: 'heartbeat', value: { inFlight: 0 } } });
      await expect
        .poll(() => server.agents.localRecord('chatty')?.lastHeartbeatAt?.getTime(), {
          interval: 5,
        })
        .toBe(clock.now());
      await clock.advance(50);
    }
    expect(server.agents.session('silent')?.isEnded).toBe(false); // silent exactly 3 intervals: not more
    await clock.advance(50);
    expect(await silent.ended).toMatchObject({ ok: false, code: Status.UNAVAILABLE });
    const agents = (await client.listAgents({})).agents;
    expect(agents.map((a) => [a.agentId, a.connected])).toEqual([
      ['chatty', true],
      ['silent', false],
    ]);
    expect(agents[0]?.lastHeartbeatAt).toBeInstanceOf(Date);
  });

  it('records a result that arrives for a command no longer in flight without failing the stream', async () => {
    const { address, client, server } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    agent.respond({
      commandId: 'nope',
      path: '/dev/sg0',
      timeout: undefined,
      idempotencyKey: '',
      traceparent: '',
      tracestate: '',
      kind: undefined,
    });
    const pending = client.readKeys({ target: { luId: LU1 } });
    const command = await agent.nextCommand();
    expect(command.kind).toMatchObject({
      $case: 'prin',
      value: { action: PrinAction.PRIN_ACTION_READ_KEYS },
    });
    agent.respond(command, { status: 0 });
    expect((await pending).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });
  it('ends the stream of an agent that stopped reading when its session ends, leaving what is queued unsent', async () => {
    const { address, server } = await startTestServer();
    // A raw grpc-js client: it can stop reading (pause), which the fake agent's for-await loop cannot.
    const Client = makeGenericClientConstructor(
      {
        Connect: {
          path: `/${AgentServiceDefinition.fullName}/Connect`,
          requestStream: true,
          responseStream: true,
          requestSerialize: (m: ConnectRequest) => Buffer.from(ConnectRequest.encode(m).finish()),
          requestDeserialize: (b: Buffer) => ConnectRequest.decode(b),
          responseSerialize: (m: ConnectResponse) =>
            Buffer.from(ConnectResponse.encode(m).finish()),
          responseDeserialize: (b: Buffer) => ConnectResponse.decode(b),
        },
      },
      'AgentService',
    );
    const client = new Client(address, credentials.createInsecure());
    const call = (
      client as unknown as { Connect(): ClientDuplexStream<ConnectRequest, ConnectResponse> }
    ).Connect();
    onTestFinished(() => {
      call.cancel();
      client.close();
    });
    let received = 0;
    call.on('data', () => (received += 1));
    const ended = new Promise<number>((resolve) => {
      call.on('status', (s: { code: number }) => resolve(s.code));
      call.on('error', () => undefined);
    });
    call.write(
      ConnectRequest.fromPartial({ message: { $case: 'hello', value: { agentId: 'stall' } } }),
    );
    await expect.poll(() => received).toBe(1); // the Welcome
    call.pause();
    const session = server.agents.session('stall');
    if (session === undefined) throw new Error('no session');
    // Far more than HTTP/2 flow control lets through while the agent reads nothing: the writer pauses.
    const MESSAGES = 200;
    for (let i = 0; i < MESSAGES; i++) session.cancel(`c${i}-${'x'.repeat(4000)}`);
    // The writer waits for the agent, not for the outbox: the queue stops shrinking once flow control is spent.
    let queued = -1;
    await expect
      .poll(
        async () => {
          const before = session.queued;
          await new Promise((r) => setTimeout(r, 300));
          queued = session.queued;
          return queued > 0 && queued === before;
        },
        { timeout: 10_000 },
      )
      .toBe(true);
    server.agents.close(session, 'test', new ServerError(Status.ABORTED, 'replaced'));
    call.resume();
    expect(await ended).toBe(Status.ABORTED);
    // What the writer had handed over still arrives; what was queued behind it does not.
    expect(received).toBeLessThan(1 + MESSAGES - queued + 1);
  });
});
