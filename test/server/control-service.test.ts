import { describe, expect, it } from 'vitest';
import { ClientError, Metadata, Status } from 'nice-grpc-common';
import {
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  ResourceInfo,
  RichClientError,
} from 'nice-grpc-error-details';
import { Outcome, PrinAction, ProutAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { summarizeRpcError } from '../../src/common/errors.js';
import { TIMEOUT_METADATA_KEY } from '../../src/common/client.js';
import { ManualClock } from '../helpers/clock.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { CHANGER_CAPS, connectFakeAgent, fakePath, type FakeAgent } from './fake-agent.js';

const LU1 = 'naa.5000e11100000001';
const LU2 = 'naa.5000e11100000002';
const A_SG0 = { agentId: 'host-a', path: '/dev/sg0' };

/** Server + host-a with /dev/sg0 → LU1 and /dev/sg1 → LU2, inventory registered. */
async function fleet(
  config: Parameters<typeof startTestServer>[0] = {},
): Promise<TestServer & { agent: FakeAgent }> {
  const started = await startTestServer(config);
  const agent = await connectFakeAgent(started.address, {
    agentId: 'host-a',
    paths: [fakePath('/dev/sg0', LU1), fakePath('/dev/sg1', LU2)],
  });
  await expect.poll(() => started.server.agents.get('host-a')?.paths.length).toBe(2);
  return { ...started, agent };
}

async function rpcError(promise: Promise<unknown>, rich = true) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(rich ? RichClientError : ClientError);
  return { error: error as RichClientError, summary: summarizeRpcError(error) };
}

describe('ControlService PRIN/PROUT', () => {
  it('sends a typed PROUT to the agent and returns its result with lu, agent and path filled in', async () => {
    const { client, agent } = await fleet();
    const pending = client.register({
      target: { ...A_SG0, luId: LU1 },
      key: 0n,
      newKey: 0x77n,
      options: { reason: 'test' },
    });
    const command = await agent.nextCommand();
    expect(command.path).toBe('/dev/sg0');
    expect(command.commandId).not.toBe('');
    expect(command.kind).toEqual({
      $case: 'prout',
      value: expect.objectContaining({
        action: ProutAction.PROUT_ACTION_REGISTER,
        reservationKey: 0n,
        serviceActionKey: 0x77n,
      }),
    });
    agent.respond(command, { status: 0, luId: '', path: '' });
    const { result } = await pending;
    expect(result).toMatchObject({
      outcome: Outcome.OUTCOME_GOOD,
      luId: LU1,
      agentId: 'host-a',
      path: '/dev/sg0',
      commandId: command.commandId,
    });
  });

  it('returns RESERVATION CONFLICT as a result with status OK', async () => {
    const { client, agent } = await fleet();
    const pending = client.reserve({
      target: A_SG0,
      key: 0x77n,
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
    });
    const command = await agent.nextCommand();
    agent.respond(command, {
      outcome: Outcome.OUTCOME_RESERVATION_CONFLICT,
      status: 0x18,
      statusName: 'RESERVATION CONFLICT',
    });
    const { result } = await pending;
    expect(result?.outcome).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
    expect(result?.status).toBe(0x18);
  });

  it('picks an online path for a PRIN given only lu_id, skipping offline paths', async () => {
    const { address, client, server } = await startTestServer();
    const a = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1, { online: false })],
    });
    const b = await connectFakeAgent(address, {
      agentId: 'host-b',
      paths: [fakePath('/dev/sg7', LU1)],
    });
    await expect
      .poll(
        () =>
          server.agents.get('host-a')?.paths.length && server.agents.get('host-b')?.paths.length,
      )
      .toBe(1);
    const pending = client.readKeys({ target: { luId: LU1 } });
    const command = await b.nextCommand();
    expect(command.path).toBe('/dev/sg7');
    b.respond(command, { data: { $case: 'readKeys', value: { generation: 4, keys: [0x77n] } } });
    const { result } = await pending;
    expect(result?.agentId).toBe('host-b');
    expect(result?.data).toEqual({
      $case: 'readKeys',
      value: expect.objectContaining({ generation: 4, keys: [0x77n] }),
    });
    expect(a.received.filter((m) => m.message?.$case === 'command')).toEqual([]);
  });

  it('answers INVALID_ARGUMENT with a BadRequest naming the field', async () => {
    const { client, agent } = await fleet();
    const missingAgent = await rpcError(
      client.reserve({ target: { path: '/dev/sg0' }, key: 1n, type: 3 }),
    );
    expect(missingAgent.summary).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      field: 'target.agent_id',
    });
    expect(missingAgent.error.extra).toContainEqual(
      expect.objectContaining({ $type: BadRequest.$type }),
    );

    expect((await rpcError(client.reserve({ target: A_SG0, key: 1n }))).summary).toMatchObject({
      field: 'type',
    });
    expect(
      (await rpcError(client.reserve({ target: A_SG0, key: 0n, type: 3 }))).summary,
    ).toMatchObject({ field: 'key' });
    expect(
      (await rpcError(client.reserve({ target: A_SG0, key: 1n, type: 2 as PrType }))).summary,
    ).toMatchObject({ field: 'type' });
    expect(
      (await rpcError(client.readKeys({ target: A_SG0, allocationLength: 70_000 }))).summary,
    ).toMatchObject({
      field: 'allocation_length',
    });
    expect((await rpcError(client.readKeys({}))).summary).toMatchObject({ field: 'target' });
    expect(
      (
        await rpcError(
          client.readKeys({ target: A_SG0, options: { commandTimeout: { seconds: -1n } } }),
        )
      ).summary,
    ).toMatchObject({ field: 'options.command_timeout' });
    expect(
      (
        await rpcError(
          client.registerAndMove({ target: A_SG0, key: 1n, destinationKey: 0n, type: 3 }),
        )
      ).summary,
    ).toMatchObject({ field: 'destination_key' });
    // A path that leads to another LU than the one named: the request contradicts itself.
    const wrongLu = await rpcError(
      client.reserve({ target: { ...A_SG0, luId: LU2 }, key: 1n, type: 3 }),
    );
    expect(wrongLu.summary).toMatchObject({ code: Status.INVALID_ARGUMENT, field: 'target.path' });
    expect(agent.received.filter((m) => m.message?.$case === 'command')).toEqual([]);
  });

  it('names spec_i_pt_transport_ids[i].iscsi.name for a bad iSCSI name', async () => {
    const { client, agent } = await fleet();
    const iscsi = (name: string) => ({
      id: { $case: 'iscsi' as const, value: { name, isid: '' } },
    });
    const bad = await rpcError(
      client.register({
        target: A_SG0,
        newKey: 1n,
        specIPtTransportIds: [iscsi('iqn.1994-05.com.example:ok'), iscsi('iqn.bad name')],
      }),
    );
    expect(bad.summary).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      field: 'spec_i_pt_transport_ids[1].iscsi.name',
    });
    expect(agent.received.filter((m) => m.message?.$case === 'command')).toEqual([]);
  });

  it('sends REGISTER AND MOVE without a type: the proto calls TYPE informational', async () => {
    const { client, agent } = await fleet();
    agent.sendInventory([
      fakePath('/dev/sg0', LU1, {
        capabilities: {
          ...CHANGER_CAPS,
          proutActions: [...CHANGER_CAPS.proutActions, ProutAction.PROUT_ACTION_REGISTER_AND_MOVE],
        },
      }),
    ]);
    await expect
      .poll(() => client.getDevice({ luId: LU1 }).then((d) => d.logicalUnit?.capabilities))
      .toMatchObject({
        proutActions: expect.arrayContaining([ProutAction.PROUT_ACTION_REGISTER_AND_MOVE]),
      });
    const pending = client.registerAndMove({
      target: A_SG0,
      key: 1n,
      destinationKey: 2n,
      relativeTargetPort: 2,
      destination: { id: { $case: 'sas', value: { sasAddress: 0x500605b000000b01n } } },
    });
    const command = await agent.nextCommand();
    expect(command.kind).toEqual({
      $case: 'prout',
      value: expect.objectContaining({
        action: ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
        type: PrType.PR_TYPE_UNSPECIFIED,
      }),
    });
    agent.respond(command, { status: 0, luId: '', path: '' });
    expect((await pending).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('answers NOT_FOUND with a ResourceInfo for an unknown agent, path or logical unit', async () => {
    const { client } = await fleet();
    const agent = await rpcError(
      client.readKeys({ target: { agentId: 'ghost', path: '/dev/sg0' } }),
    );
    expect(agent.summary).toMatchObject({ code: Status.NOT_FOUND, resource: 'ghost' });
    expect(agent.error.extra).toContainEqual(
      expect.objectContaining({ $type: ResourceInfo.$type, resourceType: 'agent' }),
    );
    expect(
      (await rpcError(client.readKeys({ target: { agentId: 'host-a', path: '/dev/sg9' } })))
        .summary,
    ).toMatchObject({
      code: Status.NOT_FOUND,
      resource: 'host-a:/dev/sg9',
    });
    expect((await rpcError(client.readKeys({ target: { luId: 'naa.0' } }))).summary).toMatchObject({
      code: Status.NOT_FOUND,
      resource: 'naa.0',
    });
  });

  it('answers FAILED_PRECONDITION and sends nothing when the device profile lacks the service action', async () => {
    const { client, agent } = await fleet();
    const move = await rpcError(
      client.registerAndMove({
        target: A_SG0,
        key: 1n,
        destinationKey: 2n,
        type: 3,
        relativeTargetPort: 2,
        destination: { id: { $case: 'sas', value: { sasAddress: 0x500605b000000b01n } } },
      }),
    );
    expect(move.summary).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      reason: 'UNSUPPORTED_BY_DEVICE',
    });
    expect(move.summary?.message).toMatch(/REGISTER AND MOVE/);
    expect(move.error.extra).toContainEqual(
      expect.objectContaining({ $type: PreconditionFailure.$type }),
    );
    const type = await rpcError(
      client.reserve({
        target: A_SG0,
        key: 1n,
        type: PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS,
      }),
    );
    expect(type.summary).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      reason: 'UNSUPPORTED_BY_DEVICE',
    });
    const fullStatus = await rpcError(client.readFullStatus({ target: A_SG0 }));
    expect(fullStatus.summary).toMatchObject({ code: Status.FAILED_PRECONDITION });
    expect(agent.received.filter((m) => m.message?.$case === 'command')).toEqual([]);
  });

  it('answers UNAVAILABLE with an ErrorInfo reason when the agent is offline or no path is online', async () => {
    const { client, agent, server } = await fleet();
    agent.kill();
    await expect.poll(() => server.agents.session('host-a')).toBeUndefined();
    const offline = await rpcError(client.reserve({ target: A_SG0, key: 1n, type: 3 }));
    expect(offline.summary).toMatchObject({ code: Status.UNAVAILABLE, reason: 'AGENT_OFFLINE' });
    expect(offline.error.extra).toContainEqual(
      expect.objectContaining({ $type: ErrorInfo.$type, domain: 'prfleet.v1' }),
    );
    const noPath = await rpcError(client.readKeys({ target: { luId: LU1 } }));
    expect(noPath.summary).toMatchObject({ code: Status.UNAVAILABLE, reason: 'NO_ONLINE_PATH' });
  });

  it('answers RESOURCE_EXHAUSTED {AGENT_BUSY} when the agent already has its capacity of commands, sending nothing more', async () => {
    const { client, agent } = await fleet({ config: { agentQueueCapacity: 2 } });
    const first = client.readKeys({ target: A_SG0 });
    const second = client.readKeys({ target: A_SG0 });
    const c1 = await agent.nextCommand();
    const c2 = await agent.nextCommand();
    const busy = await rpcError(client.readKeys({ target: A_SG0 }));
    expect(busy.summary).toMatchObject({ code: Status.RESOURCE_EXHAUSTED, reason: 'AGENT_BUSY' });
    await expect(agent.nextCommand(200)).rejects.toThrow(/no command/);
    agent.respond(c1);
    agent.respond(c2);
    await Promise.all([first, second]);
    const third = client.readKeys({ target: A_SG0 }); // room again
    agent.respond(await agent.nextCommand());
    expect((await third).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });
});

describe('deadlines and cancellation', () => {
  it('budgets the command within the caller deadline, then answers DEADLINE_EXCEEDED and sends Cancel; the late result is still recorded', async () => {
    // The server's clock is manual: its deadline timer fires when the test moves time, not on a real timer.
    const clock = new ManualClock();
    const { client, agent, server } = await fleet({
      config: { deadlineMarginMs: 100 },
      deps: { clock },
    });
    // The caller's deadline as prfleet clients send it, relative (the client sets no deadline timer of its own).
    let settled = false;
    const pending = rpcError(
      client.reserve(
        { target: A_SG0, key: 0x77n, type: 3, options: { idempotencyKey: 'late-1' } },
        { metadata: Metadata({ [TIMEOUT_METADATA_KEY]: '600' }) },
      ),
      false,
    ).finally(() => (settled = true));
    const command = await agent.nextCommand();
    const budgetMs =
      Number(command.timeout?.seconds ?? 0n) * 1000 + (command.timeout?.nanos ?? 0) / 1e6;
    expect(budgetMs).toBe(500); // 600 ms left less the 100 ms margin
    await clock.advance(599);
    await client.listAgents({}); // a round trip on the same connection: an early answer would be in by now
    expect(settled).toBe(false);
    await clock.advance(1);
    const { summary } = await pending;
    expect(summary?.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(summary?.message).toContain('deadline exceeded while waiting for the agent');
    await expect.poll(() => agent.cancels()).toEqual([command.commandId]);
    expect(server.router.inFlight).toBe(1);
    agent.respond(command, { status: 0 });
    await expect.poll(() => server.router.inFlight).toBe(0);
    // The idempotency journal got the late result: a repeat returns it without sending again.
    const repeat = await client.reserve({
      target: A_SG0,
      key: 0x77n,
      type: 3,
      options: { idempotencyKey: 'late-1' },
    });
    expect(repeat.result).toMatchObject({
      outcome: Outcome.OUTCOME_GOOD,
      commandId: command.commandId,
    });
    await expect(agent.nextCommand(200)).rejects.toThrow(/no command/);
  });

  it('reads the grpc-timeout of a plain grpc-js caller through the exposeDeadline interceptor', async () => {
    const grpc = await import('@grpc/grpc-js');
    const { ReadKeysRequest, ReadKeysResponse } =
      await import('../../src/gen/prfleet/v1/control.js');
    const { address, agent } = await fleet({ config: { deadlineMarginMs: 50 } });
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const done = new Promise<{ code: number } | undefined>((resolve) => {
        raw.makeUnaryRequest(
          '/prfleet.v1.ControlService/ReadKeys',
          (m: ReturnType<typeof ReadKeysRequest.fromPartial>) =>
            Buffer.from(ReadKeysRequest.encode(m).finish()),
          (b: Buffer) => ReadKeysResponse.decode(b),
          ReadKeysRequest.fromPartial({ target: A_SG0 }),
          new grpc.Metadata(),
          { deadline: Date.now() + 400 },
          (err) => resolve(err === null ? undefined : { code: err.code }),
        );
      });
      const command = await agent.nextCommand();
      const budgetMs =
        Number(command.timeout?.seconds ?? 0n) * 1000 + (command.timeout?.nanos ?? 0) / 1e6;
      expect(budgetMs).toBeLessThanOrEqual(350);
      expect(budgetMs).toBeGreaterThan(100);
      expect(await done).toEqual({ code: Status.DEADLINE_EXCEEDED });
      await expect.poll(() => agent.cancels()).toContain(command.commandId);
    } finally {
      raw.close();
    }
  });

  it('sends Cancel when the caller cancels', async () => {
    const { client, agent } = await fleet();
    const abort = new AbortController();
    const pending = client
      .readKeys({ target: A_SG0 }, { signal: abort.signal })
      .catch((e: unknown) => e);
    const command = await agent.nextCommand();
    abort.abort();
    expect(await pending).toMatchObject({ name: 'AbortError' });
    await expect.poll(() => agent.cancels()).toEqual([command.commandId]);
  });

  it('uses the default 60 s command timeout when neither option nor deadline is given', async () => {
    const { client, agent } = await fleet();
    const pending = client.readKeys({ target: A_SG0 });
    const command = await agent.nextCommand();
    expect(command.timeout).toEqual({ seconds: 60n, nanos: 0 });
    agent.respond(command);
    await pending;
  });
});

describe('idempotency, preconditions and dry runs', () => {
  it('returns the recorded result for a repeated idempotency key, and makes a repeat in flight wait for the first', async () => {
    const { client, agent } = await fleet();
    const request = { target: A_SG0, key: 0x77n, type: 3, options: { idempotencyKey: 'job-42' } };
    const first = client.reserve(request);
    const command = await agent.nextCommand();
    expect(command.idempotencyKey).toBe('job-42');
    const whileInFlight = client.reserve(request);
    await expect(agent.nextCommand(200)).rejects.toThrow(/no command/);
    agent.respond(command, { outcome: Outcome.OUTCOME_RESERVATION_CONFLICT, status: 0x18 });
    const [a, b] = await Promise.all([first, whileInFlight]);
    expect(a.result?.outcome).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
    expect(b.result).toEqual(a.result);
    const later = await client.reserve(request);
    expect(later.result).toEqual(a.result);
    expect(agent.received.filter((m) => m.message?.$case === 'command')).toHaveLength(1);
    const reused = await rpcError(client.reserve({ ...request, type: 1 }));
    expect(reused.summary).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      field: 'options.idempotency_key',
    });
  });

  it('frees an idempotency key whose first attempt was never sent', async () => {
    const { client, agent, server } = await fleet({ config: { agentQueueCapacity: 1 } });
    const blocker = client.readKeys({ target: A_SG0 });
    const blockerCommand = await agent.nextCommand();
    const request = { target: A_SG0, key: 0x77n, type: 3, options: { idempotencyKey: 'retry-me' } };
    expect((await rpcError(client.reserve(request))).summary?.reason).toBe('AGENT_BUSY');
    expect(await server.journal.get('retry-me')).toBeUndefined();
    agent.respond(blockerCommand);
    await blocker;
    const retry = client.reserve(request);
    agent.respond(await agent.nextCommand());
    expect((await retry).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('checks a precondition by reading the LU first and sends nothing on mismatch', async () => {
    const { client, agent } = await fleet();
    const mismatch = rpcError(
      client.reserve({
        target: A_SG0,
        key: 0x77n,
        type: 3,
        options: { precondition: { expectedHolderKey: 0n } },
      }),
    );
    const read = await agent.nextCommand();
    expect(read.kind).toMatchObject({
      $case: 'prin',
      value: { action: PrinAction.PRIN_ACTION_READ_RESERVATION },
    });
    agent.respond(read, {
      data: {
        $case: 'readReservation',
        value: { generation: 3, reserved: true, key: 0x99n, type: PrType.PR_TYPE_EXCLUSIVE_ACCESS },
      },
    });
    const { summary } = await mismatch;
    expect(summary).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      reason: 'PRECONDITION_MISMATCH',
    });
    expect(summary?.message).toContain('0x0000000000000099');
    await expect(agent.nextCommand(200)).rejects.toThrow(/no command/);

    const match = client.preempt({
      target: A_SG0,
      key: 0x77n,
      preemptKey: 0x99n,
      type: 3,
      options: { precondition: { expectedGeneration: 3, expectedHolderKey: 0x99n } },
    });
    const read2 = await agent.nextCommand();
    agent.respond(read2, {
      data: {
        $case: 'readReservation',
        value: { generation: 3, reserved: true, key: 0x99n, type: 3 },
      },
    });
    const prout = await agent.nextCommand();
    expect(prout.kind).toMatchObject({
      $case: 'prout',
      value: { action: ProutAction.PROUT_ACTION_PREEMPT },
    });
    agent.respond(prout);
    expect((await match).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('runs PROUTs to one LU one at a time, so a second precondition read sees the first PROUT done', async () => {
    const { client, agent } = await fleet();
    const guarded = (newKey: bigint) =>
      client.register({
        target: A_SG0,
        key: 0n,
        newKey,
        options: { precondition: { expectedGeneration: 1 } },
      });
    const first = guarded(5n);
    const second = rpcError(guarded(6n));
    const read1 = await agent.nextCommand();
    expect(read1.kind).toMatchObject({ $case: 'prin' });
    // Not the second read: the second PROUT waits until the first one has its result.
    await expect(agent.nextCommand(300)).rejects.toThrow(/no command/);
    agent.respond(read1, { data: { $case: 'readKeys', value: { generation: 1, keys: [] } } });
    const prout1 = await agent.nextCommand();
    expect(prout1.kind).toMatchObject({ $case: 'prout', value: { serviceActionKey: 5n } });
    await expect(agent.nextCommand(300)).rejects.toThrow(/no command/);
    agent.respond(prout1);
    expect((await first).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const read2 = await agent.nextCommand();
    agent.respond(read2, { data: { $case: 'readKeys', value: { generation: 2, keys: [5n] } } });
    expect((await second).summary).toMatchObject({
      code: Status.FAILED_PRECONDITION,
      reason: 'PRECONDITION_MISMATCH',
    });
    await expect(agent.nextCommand(200)).rejects.toThrow(/no command/);
  });

  it('reads READ KEYS for a generation-only precondition', async () => {
    const { client, agent } = await fleet();
    const pending = rpcError(
      client.register({
        target: A_SG0,
        key: 0n,
        newKey: 5n,
        options: { precondition: { expectedGeneration: 1 } },
      }),
    );
    const read = await agent.nextCommand();
    expect(read.kind).toMatchObject({
      $case: 'prin',
      value: { action: PrinAction.PRIN_ACTION_READ_KEYS },
    });
    agent.respond(read, { data: { $case: 'readKeys', value: { generation: 2, keys: [] } } });
    expect((await pending).summary?.message).toMatch(/PRgeneration is 2, expected 1/);
  });

  it('answers a dry run with the encoded CDB and sends nothing, even for an offline agent', async () => {
    const { client, agent, server } = await fleet();
    agent.kill();
    await expect.poll(() => server.agents.session('host-a')).toBeUndefined();
    const { result } = await client.reserve({
      target: A_SG0,
      key: 0x77n,
      type: 3,
      options: { dryRun: true },
    });
    expect(result?.outcome).toBe(Outcome.OUTCOME_DRY_RUN);
    // RESERVE, type 3, key 0x77: the CDB sg_persist sends (style.md §8 vector).
    expect(Buffer.from(result?.cdb ?? []).toString('hex')).toBe('5f010300000000001800');
    expect(
      Buffer.from(result?.dataOut ?? [])
        .toString('hex')
        .slice(0, 16),
    ).toBe('0000000000000077');
    expect(result).toMatchObject({ agentId: 'host-a', path: '/dev/sg0', luId: LU1 });
  });
});

describe('CommandSession', () => {
  it('runs many commands on one stream, matches replies by request_id and reports per-command errors without closing', async () => {
    const { client, agent } = await fleet();
    const requests = [
      { requestId: 'r1', command: { $case: 'readKeys' as const, value: { target: A_SG0 } } },
      {
        requestId: 'r2',
        command: { $case: 'reserve' as const, value: { target: A_SG0, key: 0x77n, type: 3 } },
      },
      {
        requestId: 'r3',
        command: { $case: 'reserve' as const, value: { target: A_SG0, key: 0x77n } },
      },
      {
        requestId: 'r4',
        command: {
          $case: 'readKeys' as const,
          value: { target: { agentId: 'ghost', path: '/dev/sg0' } },
        },
      },
      {
        requestId: 'r5',
        command: { $case: 'readReservation' as const, value: { target: { luId: LU2 } } },
      },
      { requestId: '', command: { $case: 'readKeys' as const, value: { target: A_SG0 } } },
    ];
    async function* source() {
      yield* requests;
    }
    const answering = (async () => {
      for (let i = 0; i < 3; i += 1) {
        const command = await agent.nextCommand();
        agent.respond(
          command,
          command.kind?.$case === 'prout'
            ? { outcome: Outcome.OUTCOME_RESERVATION_CONFLICT, status: 0x18 }
            : {},
        );
      }
    })();
    const replies = new Map<string, unknown>();
    for await (const reply of client.commandSession(source()))
      replies.set(reply.requestId, reply.reply);
    await answering;
    expect(replies.get('r1')).toMatchObject({
      $case: 'result',
      value: { outcome: Outcome.OUTCOME_GOOD },
    });
    expect(replies.get('r2')).toMatchObject({
      $case: 'result',
      value: { outcome: Outcome.OUTCOME_RESERVATION_CONFLICT },
    });
    expect(replies.get('r3')).toMatchObject({
      $case: 'error',
      value: { code: Status.INVALID_ARGUMENT, field: 'type' },
    });
    expect(replies.get('r4')).toMatchObject({ $case: 'error', value: { code: Status.NOT_FOUND } });
    expect(replies.get('r5')).toMatchObject({
      $case: 'result',
      value: { luId: LU2, path: '/dev/sg1' },
    });
    expect(replies.get('')).toMatchObject({
      $case: 'error',
      value: { code: Status.INVALID_ARGUMENT, field: 'request_id' },
    });
    expect(replies.size).toBe(6);
  });
});
