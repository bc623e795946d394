import { createChannel, createClient, createServer, Status } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { Command } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, PrinAction, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import {
  commandKindOf,
  createMetrics,
  instrumentRouter,
  observeAgents,
  rpcObserver,
  startMetricsServer,
  type ServerMetrics,
} from '../../src/server/metrics.js';
import { rpcMiddleware } from '../../src/server/middleware.js';
import { createInProcessRouter, type CommandRouter } from '../../src/server/router.js';
import { startTestServer } from '../helpers/server.js';
import { connectScriptedAgent } from '../redis/scripted-agent.js';

const log = createLogger({ level: 'silent' });

async function scrape(metrics: ServerMetrics): Promise<string> {
  const server = await startMetricsServer(metrics.registry, { port: 0, host: '127.0.0.1' });
  onTestFinished(() => server.close());
  const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/plain');
  return response.text();
}

/** A real server whose router is instrumented, with agent gauges observed. */
async function instrumentedServer() {
  const metrics = createMetrics({ processMetrics: false });
  let router: CommandRouter | undefined;
  const test = await startTestServer({
    deps: {
      createRouter: (registry) =>
        (router = instrumentRouter(
          createInProcessRouter({ registry, log, instanceId: 'metrics-test', resultSlackMs: 200 }),
          metrics,
        )),
    },
  });
  const stop = observeAgents(metrics, test.server.agents, { pollMs: 20 });
  onTestFinished(stop);
  return { metrics, test, router: router as CommandRouter };
}

const readKeys = Command.fromPartial({
  path: '/dev/sg1',
  kind: { $case: 'prin', value: { action: PrinAction.PRIN_ACTION_READ_KEYS } },
});
const reserve = Command.fromPartial({
  path: '/dev/sg1',
  kind: {
    $case: 'prout',
    value: { action: ProutAction.PROUT_ACTION_RESERVE, reservationKey: 0x77n },
  },
});

describe('server metrics', () => {
  it('counts command results by kind and outcome, with latency, and exposes them on /metrics', async () => {
    const { metrics, test, router } = await instrumentedServer();
    await connectScriptedAgent(test.address, 'host-a', (c) =>
      c.kind?.$case === 'prout'
        ? { outcome: Outcome.OUTCOME_RESERVATION_CONFLICT, status: 0x18 }
        : {},
    );
    expect(test.server.router).toBe(router);
    await router.dispatch('host-a', readKeys, { timeoutMs: 1_000 });
    await router.dispatch('host-a', readKeys, { timeoutMs: 1_000 });
    await router.dispatch('host-a', reserve, { timeoutMs: 1_000 });
    const text = await scrape(metrics);
    expect(text).toContain('prfleet_commands_total{kind="prin_read_keys",outcome="good"} 2');
    expect(text).toContain(
      'prfleet_commands_total{kind="prout_reserve",outcome="reservation_conflict"} 1',
    );
    expect(text).toContain('prfleet_command_duration_seconds_count{kind="prin_read_keys"} 2');
    expect(text).toContain('prfleet_agents_connected 1');
    expect(text).toContain('prfleet_devices 1');
    expect(text).toContain('prfleet_paths 1');
  });

  it('counts a refused dispatch by its gRPC code, and keeps the router’s own properties', async () => {
    const { metrics, router } = await instrumentedServer();
    await expect(router.dispatch('nobody', readKeys, { timeoutMs: 1_000 })).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
    });
    expect(
      await metrics.registry.getSingleMetricAsString('prfleet_command_errors_total'),
    ).toContain('prfleet_command_errors_total{kind="prin_read_keys",code="UNAVAILABLE"} 1');
    expect(router.draining).toBe(false);
    router.startDraining();
    expect(router.draining).toBe(true);
    expect(router.inFlight).toBe(0);
  });

  it('counts a late result after the caller gave up, and the abort as an error', async () => {
    const { metrics, test, router } = await instrumentedServer();
    const agent = await connectScriptedAgent(test.address, 'host-a', () => 'hold');
    const caller = new AbortController();
    const pending = router.dispatch('host-a', readKeys, {
      timeoutMs: 5_000,
      signal: caller.signal,
    });
    await expect.poll(() => agent.commands.length).toBe(1);
    caller.abort(new Error('gave up'));
    await expect(pending).rejects.toThrow('gave up');
    agent.respond(agent.commands[0] as Command);
    await expect
      .poll(() => metrics.registry.getSingleMetricAsString('prfleet_commands_total'))
      .toContain('outcome="good"} 1');
    expect(
      await metrics.registry.getSingleMetricAsString('prfleet_command_errors_total'),
    ).toContain('code="UNKNOWN"} 1');
  });

  it('counts agent reconnects and follows connects and disconnects in the gauges', async () => {
    const { metrics, test } = await instrumentedServer();
    const first = await connectScriptedAgent(test.address, 'host-a');
    await expect
      .poll(async () =>
        (await metrics.registry.getSingleMetricAsString('prfleet_agents_connected')).endsWith(' 1'),
      )
      .toBe(true);
    first.kill();
    await first.ended;
    await expect.poll(() => test.server.agents.session('host-a')).toBeUndefined();
    await connectScriptedAgent(test.address, 'host-a');
    await expect
      .poll(async () => metrics.registry.getSingleMetricAsString('prfleet_agent_reconnects_total'))
      .toContain('prfleet_agent_reconnects_total 1');
  });

  it('replaces the audit findings with the latest audit', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.setAuditFindings({ partial_registration: 2, deadlock: 1 });
    metrics.setAuditFindings({ partial_registration: 1 });
    const text = await metrics.registry.getSingleMetricAsString('prfleet_audit_findings');
    expect(text).toContain('prfleet_audit_findings{kind="partial_registration"} 1');
    expect(text).not.toContain('deadlock');
  });

  it('counts RPCs by method and status code through the middleware', async () => {
    const metrics = createMetrics({ processMetrics: false });
    // As prfleet-server wires it: the one RPC middleware reports each call's code to the metrics.
    const server = createServer().use(rpcMiddleware(log, rpcObserver(metrics)));
    server.add(HealthDefinition, HealthServiceImpl(HealthState()));
    const port = await server.listen('127.0.0.1:0');
    const channel = createChannel(`127.0.0.1:${port}`);
    onTestFinished(async () => {
      channel.close();
      await server.shutdown();
    });
    const health = createClient(HealthDefinition, channel);
    await health.check({ service: '' });
    await expect(health.check({ service: 'no.such.Service' })).rejects.toMatchObject({
      code: Status.NOT_FOUND,
    });
    const text = await scrape(metrics);
    expect(text).toContain(
      'prfleet_grpc_server_handled_total{method="/grpc.health.v1.Health/Check",code="OK"} 1',
    );
    expect(text).toContain(
      'prfleet_grpc_server_handled_total{method="/grpc.health.v1.Health/Check",code="NOT_FOUND"} 1',
    );
    expect(text).toContain(
      'prfleet_grpc_server_handling_seconds_count{method="/grpc.health.v1.Health/Check",code="OK"} 1',
    );
  });

  it('answers 404 for anything but GET /metrics, and serves process metrics when asked', async () => {
    const metrics = createMetrics();
    const server = await startMetricsServer(metrics.registry, { port: 0, host: '127.0.0.1' });
    onTestFinished(() => server.close());
    expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
    expect(
      (await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST' })).status,
    ).toBe(404);
    expect(await (await fetch(`http://127.0.0.1:${server.port}/metrics?x=1`)).text()).toContain(
      'prfleet_process_cpu_user_seconds_total',
    );
  });

  it('names command kinds after the SPC service action', () => {
    const kinds = [
      readKeys,
      reserve,
      Command.fromPartial({
        kind: { $case: 'prout', value: { action: ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT } },
      }),
      Command.fromPartial({ kind: { $case: 'inquiry', value: {} } }),
      Command.fromPartial({ kind: { $case: 'testUnitReady', value: {} } }),
      Command.fromPartial({}),
    ].map(commandKindOf);
    expect(kinds).toEqual([
      'prin_read_keys',
      'prout_reserve',
      'prout_preempt_and_abort',
      'inquiry',
      'test_unit_ready',
      'none',
    ]);
  });
});
