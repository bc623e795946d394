// Issue 11, point 1: nothing a client does ends or wedges the server. Every method of every service the server
// serves (enumerated from the service definitions: a new RPC is covered without editing this file) × every way
// a client abandons a call, against a real prfleet-server process (embedded PGlite store, plaintext) with the
// demo fabric's three emulated hosts attached. Afterwards the server still serves, every agent is still
// connected, and its output is JSON lines only, none of them an unhandled rejection or uncaught exception.
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import { createChannel, createClient } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthDefinition } from 'nice-grpc-server-health';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import { startServerProcess, startSimProcess } from '../../src/demo/processes.js';
import { AgentServiceDefinition } from '../../src/gen/prfleet/v1/agent.js';
import {
  ControlServiceDefinition,
  ReadKeysRequest,
  type CommandSessionRequest,
  type CommandSessionResponse,
} from '../../src/gen/prfleet/v1/control.js';
import { AsyncQueue } from '../../src/common/async-queue.js';
import { FleetServiceDefinition } from '../../src/gen/prfleet/v1/fleet.js';
import { ServerReflectionV1AlphaService } from '../../src/server/reflection.js';
import {
  ABUSES,
  abuse,
  runBounded,
  wireMethods,
  type CallOutcome,
  type WireMethod,
} from './hostile-client.js';
import { DEMO_FABRIC, ensureBuilt, type ChildHandle } from '../helpers/processes.js';

const target = { agentId: 'host-a', path: '/dev/sg2' };
const control = `/${ControlServiceDefinition.fullName}`;
const fleet = `/${FleetServiceDefinition.fullName}`;

/** ServerReflectionRequest{list_services: "*"} and {file_containing_symbol: ControlService}, hand-encoded. */
const reflectionRequests = [
  Uint8Array.from([0x3a, 0x01, 0x2a]),
  Uint8Array.from([
    0x22,
    ControlServiceDefinition.fullName.length,
    ...Buffer.from(ControlServiceDefinition.fullName),
  ]),
];

/**
 * Bodies that reach past validation into the deeper code (target resolution, the agent round trip, the store,
 * the fleet engine): the fabric's own names. Methods not listed get the empty body only.
 */
const SAMPLES: Record<string, readonly unknown[]> = {
  [`${control}/GetDevice`]: [{ luId: 'naa.5000e11100000002' }],
  [`${control}/ReadKeys`]: [{ target }],
  [`${control}/ReadReservation`]: [{ target }],
  [`${control}/ReportCapabilities`]: [{ target }],
  [`${control}/ReadFullStatus`]: [{ target }],
  [`${control}/Register`]: [{ target, newKey: 0xa1n }],
  [`${control}/Reserve`]: [{ target, key: 0xa1n, type: 1 }],
  [`${control}/Release`]: [{ target, key: 0xa1n, type: 1 }],
  [`${control}/Clear`]: [{ target, key: 0xa1n }],
  [`${control}/Preempt`]: [{ target, key: 0xa1n, preemptKey: 0xc1n, type: 1 }],
  [`${control}/RegisterAndMove`]: [{ target, key: 0xa1n }],
  [`${control}/CommandSession`]: [
    { requestId: 'h1', command: { $case: 'readKeys', value: { target } } },
    { requestId: 'h2', command: { $case: 'readReservation', value: { target } } },
    { requestId: 'h3', command: { $case: 'register', value: { target, newKey: 0xa1n } } },
  ],
  [`${control}/ListHistory`]: [{ luId: 'naa.5000e11100000002' }],
  [`${fleet}/Audit`]: [{ batchReports: true }],
  [`${fleet}/AllocateKey`]: [{ agentId: 'host-a', purpose: 'hostile', owner: 'hostile' }],
  [`${fleet}/DecodeKey`]: [{ key: 0xa1n }],
  [`${fleet}/SetDesiredState`]: [{ scope: { scope: { $case: 'loaderId', value: 'loader1' } } }],
  [`${fleet}/GetDesiredState`]: [{ scope: { scope: { $case: 'loaderId', value: 'loader1' } } }],
  [`${fleet}/Takeover`]: [
    { victim: { $case: 'victimAgentId', value: 'host-c' }, agentId: 'host-a' },
  ],
  [`/${AgentServiceDefinition.fullName}/Connect`]: [
    { message: { $case: 'hello', value: { agentId: 'hostile-agent', hostname: 'hostile' } } },
  ],
  [ServerReflectionService.serverReflectionInfo.path]: reflectionRequests,
  [ServerReflectionV1AlphaService.serverReflectionInfo.path]: reflectionRequests,
};

/** What the server serves, from the definitions it is built from. */
const METHODS: WireMethod[] = wireMethods(
  [ControlServiceDefinition, FleetServiceDefinition, AgentServiceDefinition, HealthDefinition],
  [ServerReflectionService, ServerReflectionV1AlphaService],
  SAMPLES,
);

// google-protobuf message classes of the reflection service (CommonJS).
const require = createRequire(import.meta.url);
const reflectionPb =
  require('nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js') as {
    ServerReflectionRequest: new () => { setListServices(v: string): unknown };
  };

/** The service names the server lists over reflection. */
async function listedServices(address: string): Promise<string[]> {
  const channel = createChannel(address);
  try {
    const reflection = createClient(ServerReflectionService, channel);
    const request = new reflectionPb.ServerReflectionRequest();
    request.setListServices('*');
    async function* one() {
      yield request as never;
    }
    for await (const response of reflection.serverReflectionInfo(one())) {
      return (response.getListServicesResponse()?.getServiceList() ?? []).map((s) => s.getName());
    }
    return [];
  } finally {
    channel.close();
  }
}

/** Concurrent hostile calls: enough to overlap, few enough for a loaded 2-core machine. */
const CONCURRENCY = 8;
/**
 * Sessions per principal (all clients here are 127.0.0.1): above the matrix's concurrency, so it is never the
 * reason a call fails, and small enough to open all of them afterwards, which proves no abandoned session kept
 * its slot.
 */
const SESSION_QUOTA = 12;
/** Times the whole matrix runs. */
const ROUNDS = 3;

/**
 * Opens SESSION_QUOTA CommandSessions, each answering a READ KEYS while all stay open, then expects one more to
 * be refused with RESOURCE_EXHAUSTED.
 */
async function expectSessionQuotaFree(client: ControlClient): Promise<void> {
  const queues = Array.from(
    { length: SESSION_QUOTA + 1 },
    () => new AsyncQueue<CommandSessionRequest>(10),
  );
  try {
    const opened = queues.map((queue, i) => {
      queue.push({
        requestId: `quota-${i}`,
        command: {
          $case: 'readKeys',
          value: ReadKeysRequest.fromPartial({ target: { agentId: 'host-b', path: '/dev/sg1' } }),
        },
      });
      return client.commandSession(queue, { deadline: 30_000 })[Symbol.asyncIterator]();
    });
    const first = await Promise.all(
      opened.slice(0, SESSION_QUOTA).map((replies) => replies.next()),
    );
    expect(first.map((r) => (r.value as CommandSessionResponse | undefined)?.reply?.$case)).toEqual(
      Array.from({ length: SESSION_QUOTA }, () => 'result'),
    );
    await expect(opened[SESSION_QUOTA]!.next()).rejects.toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
    });
  } finally {
    for (const queue of queues) queue.close();
  }
}

describe('hostile clients against a prfleet-server process', () => {
  let server: Awaited<ReturnType<typeof startServerProcess>>;
  let sim: ChildHandle;
  let client: ControlClient;
  /** Every line the server printed, stdout and stderr. */
  const output: string[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({
      env: { PRFLEET_PRINCIPAL_MAX_SESSIONS: String(SESSION_QUOTA) },
      onLine: (line) => output.push(line),
    });
    sim = await startSimProcess({ address: server.address, fabric: DEMO_FABRIC });
    client = createControlClient(server.address);
  }, 600_000);

  afterAll(async () => {
    client?.close();
    await sim?.stop({ graceMs: 5000 });
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('outlives every method × every way to abandon a call, agents attached, no unhandled error', async () => {
    // Every service reflection lists is enumerated here (a new service must be added to METHODS).
    // Every service the server lists over reflection is in the matrix (a new service is a failure here
    // until its definition is added to METHODS).
    const inMatrix = new Set(METHODS.map((m) => m.path.split('/')[1]));
    const listed = await listedServices(server.address);
    expect(listed.length).toBeGreaterThanOrEqual(4);
    expect(listed.filter((name) => !inMatrix.has(name))).toEqual([]);

    const calls = new grpc.Client(server.address, grpc.credentials.createInsecure());
    const tasks: (() => Promise<CallOutcome>)[] = [];
    let variant = 0;
    // Rounds with different delays: what a cancel hits depends on the moment (the original crash took 1 to
    // 4 tries).
    for (let round = 0; round < ROUNDS; round++) {
      for (const method of METHODS) {
        for (const body of method.bodies) {
          for (const kind of ABUSES) {
            const v = variant++;
            tasks.push(() => abuse(calls, server.port, method, body, kind, v));
          }
        }
      }
    }
    const started = Date.now();
    const outcomes = await runBounded(tasks, CONCURRENCY);
    const elapsedMs = Date.now() - started;
    calls.close();

    const hung = outcomes.filter((o) => o.ending === 'hung');
    const endings = new Map<string, number>();
    for (const o of outcomes) {
      const name =
        typeof o.ending === 'number' ? (grpc.status[o.ending] ?? String(o.ending)) : o.ending;
      endings.set(name, (endings.get(name) ?? 0) + 1);
    }
    console.log(
      `hostile: ${outcomes.length} calls over ${METHODS.length} methods in ${elapsedMs} ms; ` +
        `endings ${JSON.stringify(Object.fromEntries(endings))}; ` +
        `hung: ${hung.map((o) => `${o.path} ${o.abuse}`).join(', ') || 'none'}`,
    );
    expect(server.handle.hasExited()).toBe(false);
    // Every call ended within its bound: a server that answers nothing to a finished request wedges clients.
    expect(hung).toEqual([]);

    // Still serving, with every agent of the fabric still attached, and still sending commands to them.
    const { agents } = await client.listAgents({}, { deadline: 10_000 });
    const fabricAgents = agents.filter((a) => a.agentId.startsWith('host-'));
    expect(fabricAgents.map((a) => [a.agentId, a.connected])).toEqual([
      ['host-a', true],
      ['host-b', true],
      ['host-c', true],
    ]);
    const read = await client.readKeys(
      { target: { agentId: 'host-b', path: '/dev/sg1' } },
      { deadline: 20_000 },
    );
    expect(read.result?.agentId).toBe('host-b');

    // No abandoned call kept a session slot: the whole quota opens, and one more is refused.
    await expectSessionQuotaFree(client);

    // The log: JSON lines only, and not one unhandled rejection or uncaught exception.
    const notJson = output.filter((line) => {
      try {
        return typeof JSON.parse(line) !== 'object';
      } catch {
        return true;
      }
    });
    expect(notJson).toEqual([]);
    const entries = output.map(
      (line) => JSON.parse(line) as { msg?: string; level?: string; err?: { stack?: string } },
    );
    const crashes = entries
      .filter(
        (e) => e.msg?.startsWith('unhandled rejection') || e.msg?.startsWith('uncaught exception'),
      )
      .map((e) => `${e.msg}: ${e.err?.stack?.split('\n').slice(0, 4).join(' | ') ?? '?'}`);
    expect(crashes).toEqual([]);
    // Nor an error: an 'unexpected error' (INTERNAL) is a bug a client found.
    const errors = entries
      .filter((e) => e.level === 'error' || e.level === 'fatal')
      .map((e) => `${e.msg}: ${e.err?.stack?.split('\n').slice(0, 3).join(' | ') ?? ''}`);
    expect(errors).toEqual([]);
  }, 240_000);
});
