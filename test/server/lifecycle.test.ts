import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { createChannel, createClient, Status } from 'nice-grpc';
import {
  HealthCheckResponse_ServingStatus,
  HealthDefinition,
} from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { summarizeRpcError } from '../../src/common/errors.js';
import { createControlClient } from '../../src/common/client.js';
import { ensureBuilt, startServerChild } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';

// google-protobuf message classes of the reflection service (CommonJS).
const require = createRequire(import.meta.url);
const reflectionPb =
  require('nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js') as {
    ServerReflectionRequest: new () => {
      setListServices(v: string): unknown;
      setFileContainingSymbol(v: string): unknown;
    };
  };

const LU1 = 'naa.5000e11100000001';
const A_SG0 = { agentId: 'host-a', path: '/dev/sg0' };

describe('health and reflection', () => {
  it('serves grpc.health.v1 SERVING, and NOT_SERVING once draining', async () => {
    const { address, server } = await startTestServer();
    const channel = createChannel(address);
    try {
      const health = createClient(HealthDefinition, channel);
      expect((await health.check({ service: '' })).status).toBe(
        HealthCheckResponse_ServingStatus.SERVING,
      );
      expect((await health.check({ service: 'prfleet.v1.ControlService' })).status).toBe(
        HealthCheckResponse_ServingStatus.SERVING,
      );
      await server.drain(100);
      expect((await health.check({ service: '' })).status).toBe(
        HealthCheckResponse_ServingStatus.NOT_SERVING,
      );
    } finally {
      channel.close();
    }
  });

  it('lists the prfleet services over reflection v1 and returns their file descriptors', async () => {
    const { address } = await startTestServer();
    const channel = createChannel(address);
    try {
      const reflection = createClient(ServerReflectionService, channel);
      const list = new reflectionPb.ServerReflectionRequest();
      list.setListServices('*');
      const symbol = new reflectionPb.ServerReflectionRequest();
      symbol.setFileContainingSymbol('prfleet.v1.ControlService');
      async function* requests() {
        yield list as never;
        yield symbol as never;
      }
      const responses = [];
      for await (const response of reflection.serverReflectionInfo(requests()))
        responses.push(response);
      const names = responses[0]
        ?.getListServicesResponse()
        ?.getServiceList()
        .map((s) => s.getName());
      expect(names).toEqual([
        'prfleet.v1.ControlService',
        'prfleet.v1.AgentService',
        'grpc.health.v1.Health',
        'prfleet.v1.FleetService',
      ]);
      const files =
        responses[1]?.getFileDescriptorResponse()?.getFileDescriptorProtoList_asU8() ?? [];
      expect(files.length).toBeGreaterThan(0);
      expect(Buffer.from(files[0] ?? []).toString('latin1')).toContain('prfleet/v1/control.proto');
    } finally {
      channel.close();
    }
  });
});

describe('drain', () => {
  it('refuses new work, tells agents to reconnect, waits for in-flight results, then ends agent streams OK', async () => {
    const { address, client, server } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const inFlight = client.reserve({ target: A_SG0, key: 0x77n, type: 3 });
    const command = await agent.nextCommand();

    const drained = server.drain(5_000);
    await expect.poll(() => agent.reconnectRequested()).toBe(true);
    const refused = await client
      .readKeys({ target: A_SG0 }, { retry: false })
      .catch((e: unknown) => e);
    expect(summarizeRpcError(refused)).toMatchObject({
      code: Status.UNAVAILABLE,
      reason: 'SERVER_DRAINING',
    });
    await expect(connectFakeAgent(address, { agentId: 'host-b' })).rejects.toMatchObject({
      end: { ok: false, code: Status.UNAVAILABLE },
    });

    agent.respond(command, { status: 0 });
    expect((await inFlight).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    await drained;
    expect(await agent.ended).toEqual({ ok: true });
    await server.shutdown(2_000);
  });

  it('turns results still missing after the grace into UNKNOWN', async () => {
    const { address, client, server } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const inFlight = client.clear({ target: A_SG0, key: 0x77n });
    await agent.nextCommand();
    await server.drain(200);
    const { result } = await inFlight;
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toMatch(/server shut down/);
  });

  it('drains the real built server on SIGTERM: in-flight command completes, agent stream ends OK, exit 0', async () => {
    await ensureBuilt();
    const { handle, address } = await startServerChild({
      PRFLEET_DRAIN_GRACE_MS: '5000',
      PRFLEET_LOG_LEVEL: 'info',
      PRFLEET_STORE: 'memory',
    });
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    const client = createControlClient(address);
    try {
      await expect.poll(async () => (await client.listAgents({})).agents[0]?.pathCount).toBe(1);
      const inFlight = client.readKeys({ target: A_SG0 });
      const command = await agent.nextCommand();
      const sentAt = Date.now();
      handle.signal('SIGTERM');
      await expect.poll(() => agent.reconnectRequested()).toBe(true);
      agent.respond(command, {
        data: { $case: 'readKeys', value: { generation: 1, keys: [0x77n] } },
      });
      expect((await inFlight).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
      expect(await agent.ended).toEqual({ ok: true });
      expect(await handle.exited).toMatchObject({ code: 0 });
      expect(Date.now() - sentAt).toBeLessThan(5_000);
      const messages = handle.lines.flatMap((line) => {
        try {
          return [(JSON.parse(line) as { msg?: string }).msg];
        } catch {
          return [];
        }
      });
      expect(messages).toEqual(
        expect.arrayContaining(['effective config', 'listening', 'draining', 'drained', 'stopped']),
      );
    } finally {
      client.close();
    }
  }, 120_000);
});
