import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { createChannel, createClient } from 'nice-grpc';
import {
  FindingKind,
  FleetServiceDefinition,
  Severity,
  type Finding,
} from '../../src/gen/prfleet/v1/fleet.js';
import { MAX_SENSE_BYTES } from '../../src/server/agents/results.js';
import { captureLog } from '../helpers/log-capture.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';
import { pgStore } from '../helpers/pg-store.js';

// A compromised agent (fake-agent.ts: it says whatever the test tells it) against a real server: what it sends
// can only supply the device's answer.

const LU1 = 'naa.5000e11100000001';
const LU2 = 'naa.5000e11100000002';

/** A real server with a history, and a fake host-a reporting /dev/sg0 → LU1. */
async function fleetWithHostA(options: Parameters<typeof startTestServer>[0] = {}) {
  const started = await startTestServer({
    ...options,
    deps: { ...options.deps, store: await pgStore('evil') },
  });
  const agent = await connectFakeAgent(started.address, {
    agentId: 'host-a',
    paths: [fakePath('/dev/sg0', LU1)],
  });
  await expect.poll(() => started.server.agents.get('host-a')?.paths.length).toBe(1);
  return { ...started, agent };
}

describe('a compromised agent’s results', () => {
  it('cannot rename what was sent: agent, path, LU and idempotency key come from the server’s record', async () => {
    const { client, agent } = await fleetWithHostA();
    const pending = client.register({
      target: { agentId: 'host-a', path: '/dev/sg0' },
      newKey: 0xa1n,
      options: { idempotencyKey: 'ops-1' },
    });
    const command = await agent.nextCommand();
    agent.respond(command, {
      agentId: 'host-b',
      path: '/dev/sg2',
      luId: LU2,
      idempotencyKey: 'made-up',
    });
    const { result } = await pending;
    expect(result).toMatchObject({
      outcome: Outcome.OUTCOME_GOOD,
      agentId: 'host-a',
      path: '/dev/sg0',
      luId: LU1,
      idempotencyKey: 'ops-1',
    });
    const { entries } = await client.listHistory({});
    expect(entries.map((e) => [e.agentId, e.path, e.luId, e.idempotencyKey])).toEqual([
      ['host-a', '/dev/sg0', LU1, 'ops-1'],
    ]);
  });

  it('settles a result that cannot be a device’s answer as UNKNOWN and keeps none of it', async () => {
    const { client, agent } = await fleetWithHostA();
    const huge = Buffer.alloc(1_500_000, 0x70);
    const prout = client.register({
      target: { agentId: 'host-a', path: '/dev/sg0' },
      newKey: 0xa1n,
    });
    agent.respond(await agent.nextCommand(), {
      outcome: Outcome.OUTCOME_CHECK_CONDITION,
      status: 2,
      sense: { raw: huge },
    });
    const { result } = await prout;
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toContain(`sense of 1500000 bytes (at most ${MAX_SENSE_BYTES})`);
    expect(result?.sense).toBeUndefined();
    const { entries } = await client.listHistory({});
    expect(entries[0]?.sense.length).toBe(0);
    // A sense of exactly 252 bytes is a device's right.
    const fine = client.register({
      target: { agentId: 'host-a', path: '/dev/sg0' },
      newKey: 0xa2n,
    });
    agent.respond(await agent.nextCommand(), {
      outcome: Outcome.OUTCOME_CHECK_CONDITION,
      status: 2,
      sense: { raw: Buffer.alloc(MAX_SENSE_BYTES, 0x70) },
    });
    expect((await fine).result?.outcome).toBe(Outcome.OUTCOME_CHECK_CONDITION);

    // READ KEYS with an allocation length of 16: 17 bytes of data-in, or 3 keys, cannot have come from it.
    for (const answer of [
      { dataIn: Buffer.alloc(17) },
      { data: { $case: 'readKeys' as const, value: { generation: 4242, keys: [1n, 2n, 3n] } } },
    ]) {
      const read = client.readKeys({ target: { luId: LU1 }, allocationLength: 16 });
      agent.respond(await agent.nextCommand(), answer);
      const got = (await read).result;
      expect(got?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
      expect(got?.message).toMatch(/allocation length of 16/);
    }
  });

  it('drops results for commands not in flight, logging a few lines for 10,000 of them', async () => {
    const capture = captureLog('warn');
    const { client, agent } = await fleetWithHostA({ log: capture.log });
    const stray = {
      path: '/dev/sg0',
      timeout: undefined,
      idempotencyKey: '',
      traceparent: '',
      tracestate: '',
      kind: undefined,
    };
    for (let i = 0; i < 10_000; i += 1) agent.respond({ ...stray, commandId: `never-sent-${i}` });
    // Messages are handled in order: once this command's result is in, every stray one was handled.
    const read = client.readKeys({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand());
    expect((await read).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const logged = capture.withMessage(/result for a command not in flight/);
    expect(logged.length).toBeGreaterThanOrEqual(1);
    expect(logged.length).toBeLessThanOrEqual(5); // one per 10 s, with the count of those left out
    expect(logged[0]).toMatchObject({ agentId: 'host-a', commandId: 'never-sent-0' });
  });
});

describe('an LU’s identity is established, not claimed', () => {
  it('quarantines a path claiming another agent’s LU with another identity: not shown, not routed, logged', async () => {
    const capture = captureLog('info');
    const { client, agent, address, server } = await fleetWithHostA({ log: capture.log });
    const evil = await connectFakeAgent(address, {
      agentId: 'evil',
      paths: [
        fakePath('/dev/sg9', LU1, { vendor: 'EVIL', serial: 'EVIL-SERIAL' }),
        fakePath('/dev/sg8', LU2),
      ],
    });
    await expect
      .poll(() => server.agents.get('evil')?.paths.map((p) => p.path))
      .toEqual(['/dev/sg8']);
    const { logicalUnit: device } = await client.getDevice({ luId: LU1 });
    expect(device).toMatchObject({ vendor: 'QUANTUM', serial: `SN-${LU1}` });
    expect(device?.paths.map((p) => p.agentId)).toEqual(['host-a']);
    // A viewer's READ KEYS by lu_id goes to the LU's real path, never to the impostor.
    const read = client.readKeys({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand(), {
      data: { $case: 'readKeys', value: { generation: 7, keys: [] } },
    });
    expect((await read).result).toMatchObject({ agentId: 'host-a', path: '/dev/sg0' });
    expect(evil.received.filter((m) => m.message?.$case === 'command')).toEqual([]);
    expect(capture.withMessage(/conflicting LU identity quarantined/)).toMatchObject([
      {
        level: 'error',
        agentId: 'evil',
        path: '/dev/sg9',
        luId: LU1,
        establishedBy: { agentId: 'host-a' },
      },
    ]);
    expect([...server.agents.quarantined().keys()]).toEqual(['evil']);
    // The audit raises it as a CRITICAL finding (its reads may time out: the fake agent does not answer them).
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const fleet = createClient(FleetServiceDefinition, channel);
    let findings: Finding[] = [];
    for await (const e of fleet.audit({
      selector: { luIds: [LU1] },
      commandTimeout: { seconds: 0n, nanos: 200_000_000 },
    }))
      if (e.event?.$case === 'summary') findings = e.event.value.loaderFindings;
    expect(
      findings.find((f) => f.kind === FindingKind.FINDING_KIND_CONFLICTING_IDENTITY),
    ).toMatchObject({
      severity: Severity.SEVERITY_CRITICAL,
      luId: LU1,
      agentId: 'evil',
      path: '/dev/sg9',
    });
    // The same identity from a second host is a second path to the LU, as multipathing has it.
    await connectFakeAgent(address, { agentId: 'host-b', paths: [fakePath('/dev/sg4', LU1)] });
    await expect
      .poll(async () =>
        (await client.getDevice({ luId: LU1 })).logicalUnit?.paths.map((p) => p.agentId),
      )
      .toEqual(['host-a', 'host-b']);
  });

  it('keeps agents to the sites, LU ids and loaders the server’s policy gives them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'prfleet-policy-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const policy = join(dir, 'agents.yaml');
    await writeFile(
      policy,
      'agents:\n  host-a: { sites: [dc1], luIds: ["naa.5000e111*"] }\n  host-b: { loaders: [loader2] }\n',
    );
    const capture = captureLog('info');
    const { address, server } = await fleetWithHostA({
      log: capture.log,
      config: { agentPolicyFile: policy },
    });
    expect(server.agents.get('host-a')?.paths.map((p) => p.luId)).toEqual([LU1]);
    await connectFakeAgent(address, {
      agentId: 'host-b',
      paths: [fakePath('/dev/sg1', LU2), fakePath('/dev/sg2', 'naa.6001', { loaderId: 'loader2' })],
    });
    await connectFakeAgent(address, {
      agentId: 'stranger',
      paths: [fakePath('/dev/sg1', 'naa.6002')],
    });
    await connectFakeAgent(address, {
      agentId: 'host-a',
      site: 'dc2',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect
      .poll(() =>
        ['host-a', 'host-b', 'stranger'].map((id) =>
          server.agents.get(id)?.paths.map((p) => p.path),
        ),
      )
      .toEqual([[], ['/dev/sg2'], []]);
    const refusals = capture.withMessage(/outside the agent policy refused/);
    expect(refusals.map((l) => l['agentId'])).toEqual(['host-b', 'stranger', 'host-a']);
    expect(JSON.stringify(refusals)).toContain('has no rule in PRFLEET_AGENT_POLICY');
    expect(JSON.stringify(refusals)).toContain('site \\"dc2\\" is not one of dc1');
  });

  it('refuses an inventory of more paths than one agent may report, saying so', async () => {
    const capture = captureLog('info');
    const { address, server, client } = await startTestServer({
      log: capture.log,
      config: { maxAgentPaths: 3 },
    });
    const paths = [0, 1, 2, 3].map((i) => fakePath(`/dev/sg${i}`, `naa.5000e1110000010${i}`));
    const agent = await connectFakeAgent(address, { agentId: 'host-a', paths: paths.slice(0, 3) });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(3);
    agent.sendInventory(paths);
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(0);
    expect((await client.listDevices({})).logicalUnits).toEqual([]);
    expect(capture.withMessage(/inventory refused: 4 paths/)).toHaveLength(1);
  });
});
