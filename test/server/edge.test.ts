/**
 * The edge (src/server/edge.ts): every request bounded and checked before a handler runs, against a real server
 * with real clients (nice-grpc, and a raw grpc-js client for bodies no generated client would send).
 */
import { Client, Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { createChannel, createClientFactory } from 'nice-grpc';
import { Status } from 'nice-grpc-common';
import { BadRequest, errorDetailsClientMiddleware, RichClientError } from 'nice-grpc-error-details';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetServiceDefinition, FindingKind } from '../../src/gen/prfleet/v1/fleet.js';
import { quoteInput, summarizeRpcError } from '../../src/common/errors.js';
import { ASSIGNED_KEY_PREFIX } from '../../src/server/command-executor.js';
import { STRING_LIMITS } from '../../src/server/edge.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { readKeysSession } from '../helpers/session.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';

const LU1 = 'naa.5000e11100000001';
const A_SG0 = { agentId: 'host-a', path: '/dev/sg0' };

async function failure(promise: Promise<unknown>) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RichClientError);
  const rich = error as RichClientError;
  const badRequest = rich.extra.find((d): d is BadRequest => d.$type === BadRequest.$type);
  return {
    summary: summarizeRpcError(error),
    fields: badRequest?.fieldViolations.map((v) => v.field) ?? [],
    error: rich,
  };
}

/** Sends `body` as the raw request of `method` and returns the status the server answered. */
function rawCall(address: string, method: string, body: Uint8Array): Promise<ServiceError> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      method,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      body,
      new Metadata(),
      { deadline: Date.now() + 30_000 },
      (error) => {
        client.close();
        if (error === null) reject(new Error('the call succeeded'));
        else resolve(error);
      },
    );
  });
}

describe('edge: ControlService requests', () => {
  it('refuses a 20,000-character id at once, quoting only a short escaped prefix', async () => {
    const { client } = await startTestServer();
    const long = `ghost${'x'.repeat(20_000)}`;
    const started = Date.now();
    const { summary, fields, error } = await failure(
      client.readKeys({ target: { agentId: long, path: '/dev/sg0' } }, { deadline: 60_000 }),
    );
    expect(summary).toMatchObject({ code: Status.INVALID_ARGUMENT, field: 'target.agent_id' });
    expect(fields).toEqual(['target.agent_id']);
    expect(summary?.message).toContain(`is longer than ${STRING_LIMITS.id} bytes`);
    expect(summary?.message).toContain('… (20005 bytes)');
    expect(summary?.message.length).toBeLessThan(300);
    expect(JSON.stringify(error.extra).length).toBeLessThan(600);
    // Answered, not timed out: generous bound for a loaded machine, far below the 60 s deadline.
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('reports every bad field of one request together in one BadRequest', async () => {
    const { client } = await startTestServer();
    const { summary, fields } = await failure(
      client.reserve({
        target: { agentId: 'a'.repeat(129), path: 'p'.repeat(4097), luId: 'lu\u001b[31m' },
        key: 1n,
        type: 3,
        options: {
          commandTimeout: { seconds: -1n, nanos: 0 },
          idempotencyKey: `${ASSIGNED_KEY_PREFIX}mine`,
          reason: 'r'.repeat(STRING_LIMITS.reason + 1),
        },
      }),
    );
    expect(summary?.code).toBe(Status.INVALID_ARGUMENT);
    expect(fields.sort()).toEqual(
      [
        'options.command_timeout',
        'options.idempotency_key',
        'options.reason',
        'target.agent_id',
        'target.lu_id',
        'target.path',
      ].sort(),
    );
    expect(summary?.message).toMatch(/\(6 problems: /);
    // The escape sequence is quoted escaped, never raw.
    expect(summary?.message).not.toContain('\u001b');
  });

  it('refuses idempotency keys with the server prefix or a control character, and sends nothing', async () => {
    const { client, address } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    for (const idempotencyKey of [`${ASSIGNED_KEY_PREFIX}x`, 'key\u0007bell', 'tab\tkey']) {
      const { summary } = await failure(
        client.register({ target: A_SG0, newKey: 1n, options: { idempotencyKey } }),
      );
      expect(summary).toMatchObject({
        code: Status.INVALID_ARGUMENT,
        field: 'options.idempotency_key',
      });
    }
    expect(agent.received.filter((m) => m.message?.$case === 'command')).toEqual([]);
  });

  it('names a required field left empty (the proto comment says "Required.")', async () => {
    const { client } = await startTestServer();
    const { summary } = await failure(client.getDevice({ luId: '' }));
    expect(summary).toMatchObject({ code: Status.INVALID_ARGUMENT, field: 'lu_id' });
    expect(summary?.message).toBe('lu_id: required');
  });

  it('answers INVALID_ARGUMENT, naming the field, for invalid UTF-8 and for a body that is not protobuf', async () => {
    const { address } = await startTestServer();
    // GetDeviceRequest { lu_id (1): FF FE } — ts-proto alone would decode it to "\uFFFD\uFFFD".
    const utf8 = await rawCall(
      address,
      '/prfleet.v1.ControlService/GetDevice',
      Uint8Array.from([0x0a, 0x02, 0xff, 0xfe]),
    );
    expect(utf8.code).toBe(Status.INVALID_ARGUMENT);
    expect(utf8.details).toBe('lu_id: not valid UTF-8');
    // ReadKeysRequest { target (1) { agent_id (2): FF } }: the nested field is named.
    const nested = await rawCall(
      address,
      '/prfleet.v1.ControlService/ReadKeys',
      Uint8Array.from([0x0a, 0x03, 0x12, 0x01, 0xff]),
    );
    expect(nested.code).toBe(Status.INVALID_ARGUMENT);
    expect(nested.details).toBe('target.agent_id: not valid UTF-8');
    // A truncated length-delimited field and a wire type that does not exist.
    for (const body of [
      [0x0a, 0x7f, 0x41],
      [0x0f, 0x01],
    ]) {
      const garbage = await rawCall(
        address,
        '/prfleet.v1.ControlService/GetDevice',
        Uint8Array.from(body),
      );
      expect(garbage.code).toBe(Status.INVALID_ARGUMENT);
      expect(garbage.details).toMatch(
        /^the request body is not a valid prfleet\.v1\.GetDeviceRequest/,
      );
    }
  });

  it('quotes at most a short prefix of an unknown id in NOT_FOUND (message and ResourceInfo)', async () => {
    const { client } = await startTestServer();
    const id = `naa.${'9'.repeat(120)}`; // within the id limit, longer than a quote
    const { summary } = await failure(client.getDevice({ luId: id }));
    expect(summary?.code).toBe(Status.NOT_FOUND);
    expect(summary?.resource).toBe(quoteInput(id));
    expect(summary?.resource).toMatch(/… \(124 bytes\)$/);
    expect(summary?.message).toBe(`no agent reports logical unit ${quoteInput(id)}`);
  });

  it('answers a CommandSession command that breaks an edge rule in-band and keeps the session', async () => {
    const { client, address } = await startTestServer();
    await connectFakeAgent(address, { agentId: 'host-a', paths: [fakePath('/dev/sg0', LU1)] });
    const ask = readKeysSession(client, { agentId: 'h'.repeat(200), path: '/dev/sg0' });
    expect(await ask()).toEqual({ errorCode: Status.INVALID_ARGUMENT });
    expect(await ask()).toEqual({ errorCode: Status.INVALID_ARGUMENT });
  });
});

describe('edge: FleetService requests (embedded store, emulated agents)', () => {
  let store: Store;
  beforeAll(async () => {
    store = await openStore({ inMemory: true });
  }, 180_000);
  afterAll(async () => {
    await store?.close();
  });

  async function fleet() {
    const started = await startTestServer({ deps: { store } });
    await startEmulatedAgents({ address: started.address });
    const channel = createChannel(started.address);
    const client = createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(FleetServiceDefinition, channel);
    return { ...started, fleet: client };
  }

  async function drain(stream: AsyncIterable<unknown>): Promise<void> {
    for await (const _ of stream);
  }

  it('refuses a negative Audit.progress_interval, as Plan refuses a negative command_timeout', async () => {
    const { fleet: client } = await fleet();
    const audit = await failure(
      drain(client.audit({ progressInterval: { seconds: -1n, nanos: 0 } })),
    );
    expect(audit.summary).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      field: 'progress_interval',
    });
    const plan = await failure(client.plan({ commandTimeout: { seconds: 0n, nanos: -5 } }));
    expect(plan.summary).toMatchObject({ code: Status.INVALID_ARGUMENT, field: 'command_timeout' });
  }, 120_000);

  it('answers NOT_FOUND for a selector naming an unknown loader, LU or site in Plan and Audit', async () => {
    const { fleet: client } = await fleet();
    const loader = await failure(client.plan({ selector: { loaderIds: ['loader1', 'loader9'] } }));
    expect(loader.summary).toMatchObject({ code: Status.NOT_FOUND, resource: 'loader9' });
    expect(loader.summary?.message).toMatch(/^selector\.loader_ids\[1\]: /);
    const lu = await failure(drain(client.audit({ selector: { luIds: ['naa.0'] } })));
    expect(lu.summary).toMatchObject({ code: Status.NOT_FOUND, resource: 'naa.0' });
    const site = await failure(drain(client.audit({ selector: { site: 'mars' } })));
    expect(site.summary).toMatchObject({ code: Status.NOT_FOUND, resource: 'mars' });
    // The known ones still work.
    const plan = await client.plan({ selector: { loaderIds: ['loader1'], site: 'dc1' } });
    expect(plan.logicalUnits).toBe(2);
  }, 120_000);

  it('warns about an unknown agent or site in AllocateKey and an unknown loader in SetDesiredState', async () => {
    const { fleet: client } = await fleet();
    const allocated = await client.allocateKey({
      site: 'nowhere',
      agentId: 'host-z',
      purpose: 'backup',
      owner: 'ops',
    });
    expect(allocated.key?.agentId).toBe('host-z');
    expect(allocated.warnings.map((w) => [w.kind, w.message])).toEqual([
      [FindingKind.FINDING_KIND_UNREACHABLE, 'agent host-z is unknown to this server'],
      [FindingKind.FINDING_KIND_UNREACHABLE, 'no agent reports site nowhere'],
    ]);
    const known = await client.allocateKey({
      site: 'dc1',
      agentId: 'host-a',
      purpose: 'backup',
      owner: 'ops',
    });
    expect(known.warnings).toEqual([]);
    const desired = await client.setDesiredState({
      scope: { scope: { $case: 'loaderId', value: 'loader9' } },
      state: { registeredAgentIds: ['host-a'] },
      updatedBy: 'ops',
    });
    expect(desired.warnings.map((w) => w.message)).toContain('no agent reports loader loader9');
  }, 120_000);

  it('reports the missing required fields of SetDesiredState together', async () => {
    const { fleet: client } = await fleet();
    const { fields } = await failure(client.setDesiredState({}));
    expect(fields).toEqual(['scope', 'state', 'updated_by']);
  }, 120_000);

  it('answers NOT_FOUND for a ListHistory filter naming nothing, an empty page for a known id', async () => {
    const { client } = await fleet();
    const ghost = await failure(client.listHistory({ agentId: 'ghost' }));
    expect(ghost.summary).toMatchObject({ code: Status.NOT_FOUND, resource: 'ghost' });
    const lu = await failure(client.listHistory({ luId: 'naa.0' }));
    expect(lu.summary).toMatchObject({ code: Status.NOT_FOUND, resource: 'naa.0' });
    const known = await client.listHistory({ agentId: 'host-c' });
    expect(known.entries.filter((e) => e.agentId !== 'host-c')).toEqual([]);
  }, 120_000);
});
