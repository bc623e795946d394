import {
  createChannel,
  createClientFactory,
  createServer,
  Metadata,
  ServerError,
  Status,
} from 'nice-grpc';
import {
  errorDetailsServerMiddleware,
  errorDetailsClientMiddleware,
  BadRequest,
} from 'nice-grpc-error-details';
import { beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import {
  ControlServiceDefinition,
  type CommandSessionRequest,
  type CommandSessionResponse,
  type ControlServiceImplementation,
  type DeepPartial,
} from '../../src/gen/prfleet/v1/control.js';
import {
  FleetServiceDefinition,
  type FleetServiceImplementation,
} from '../../src/gen/prfleet/v1/fleet.js';
import {
  METHOD_ROLES,
  authorizeSessionCommand,
  createAuthMiddleware,
  createMemoryTokenStore,
  createToken,
  principalOf,
  requiredRole,
  SESSION_COMMAND_METHODS,
  type AuthCallContextExt,
  type OperatorKeyCheck,
  type Principal,
  type Role,
  type TokenStore,
} from '../../src/server/auth/index.js';

/** Every ControlService method answering an empty response and recording who called (new RPCs included). */
function recordingService(
  seen: Principal[],
  keyCheck?: OperatorKeyCheck,
): ControlServiceImplementation<AuthCallContextExt> {
  const unary = async (
    _request: unknown,
    ctx: AuthCallContextExt & Parameters<typeof principalOf>[0],
  ) => {
    const principal = principalOf(ctx);
    if (principal !== undefined) seen.push(principal);
    return {};
  };
  const commandSession: ControlServiceImplementation<AuthCallContextExt>['commandSession'] =
    async function* (requests, ctx) {
      for await (const request of requests) {
        const reply: DeepPartial<CommandSessionResponse> = { requestId: request.requestId };
        if (request.command === undefined) continue;
        try {
          await authorizeSessionCommand(
            ctx.principal,
            request.command,
            keyCheck === undefined ? {} : { isOperatorKeyAllowed: keyCheck },
          );
          yield { ...reply, reply: { $case: 'result', value: { message: 'ran' } } };
        } catch (error) {
          if (!(error instanceof ServerError)) throw error;
          yield {
            ...reply,
            reply: { $case: 'error', value: { code: error.code, message: error.details } },
          };
        }
      }
    };
  return Object.fromEntries(
    Object.keys(ControlServiceDefinition.methods).map((key) => [
      key,
      key === 'commandSession' ? commandSession : unary,
    ]),
  ) as unknown as ControlServiceImplementation<AuthCallContextExt>;
}

/** Every FleetService method: unary ones answer empty, streaming ones send one empty message. */
function fleetService(seen: Principal[]): FleetServiceImplementation<AuthCallContextExt> {
  return Object.fromEntries(
    Object.entries(FleetServiceDefinition.methods).map(([key, method]) => [
      key,
      method.responseStream
        ? async function* (_request: unknown, ctx: AuthCallContextExt) {
            seen.push(ctx.principal);
            yield {};
          }
        : async (_request: unknown, ctx: AuthCallContextExt) => {
            seen.push(ctx.principal);
            return {};
          },
    ]),
  ) as unknown as FleetServiceImplementation<AuthCallContextExt>;
}

let store: TokenStore;
let tokens: Record<Role, string>;
beforeEach(async () => {
  store = createMemoryTokenStore();
  tokens = {
    viewer: (await createToken(store, { name: 'vera', role: 'viewer' })).token,
    operator: (await createToken(store, { name: 'otto', role: 'operator' })).token,
    admin: (await createToken(store, { name: 'ada', role: 'admin' })).token,
  };
});

async function start(options: { keyCheck?: OperatorKeyCheck } = {}) {
  const seen: Principal[] = [];
  const auth = createAuthMiddleware({
    tokens: store,
    ...(options.keyCheck === undefined ? {} : { isOperatorKeyAllowed: options.keyCheck }),
  });
  const server = createServer().use(errorDetailsServerMiddleware);
  server.with(auth).add(ControlServiceDefinition, recordingService(seen, options.keyCheck));
  server.with(auth).add(FleetServiceDefinition, fleetService(seen));
  const port = await server.listen('127.0.0.1:0');
  const channel = createChannel(`127.0.0.1:${port}`);
  onTestFinished(async () => {
    channel.close();
    await server.shutdown();
  });
  const callOptions = (token?: string) => ({
    '*': token === undefined ? {} : { metadata: Metadata({ authorization: `Bearer ${token}` }) },
  });
  const clientAs = (token?: string) =>
    createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(ControlServiceDefinition, channel, callOptions(token));
  const fleetAs = (token?: string) =>
    createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(FleetServiceDefinition, channel, callOptions(token));
  return { seen, clientAs, fleetAs };
}

const target = { agentId: 'host-a', path: '/dev/sg1' };

describe('auth middleware (real server on 127.0.0.1:0)', () => {
  it('refuses a call without a token with UNAUTHENTICATED', async () => {
    const { clientAs } = await start();
    await expect(clientAs().listAgents({})).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
      details: 'missing bearer token (metadata authorization: Bearer prf_…)',
    });
  });

  it('refuses a wrong or malformed token with UNAUTHENTICATED', async () => {
    const { clientAs } = await start();
    const forged = tokens.admin.slice(0, -4) + 'AAAA';
    await expect(clientAs(forged).listAgents({})).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
    await expect(clientAs('hunter2').listAgents({})).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
  });

  it('passes the principal to the handler', async () => {
    const { clientAs, seen } = await start();
    await clientAs(tokens.viewer).listDevices({});
    expect(seen).toEqual([expect.objectContaining({ name: 'vera', role: 'viewer' })]);
  });

  it('lets a viewer read and refuses it every PROUT with PERMISSION_DENIED', async () => {
    const { clientAs } = await start();
    const viewer = clientAs(tokens.viewer);
    await expect(viewer.readKeys({ target })).resolves.toBeDefined();
    await expect(viewer.readFullStatus({ target })).resolves.toBeDefined();
    for (const call of [
      () => viewer.register({ target, newKey: 0x77n }),
      () => viewer.reserve({ target, key: 0x77n }),
      () => viewer.release({ target, key: 0x77n }),
    ]) {
      await expect(call()).rejects.toMatchObject({
        code: Status.PERMISSION_DENIED,
        details: expect.stringContaining('needs role operator'),
      });
    }
  });

  it('lets an operator register, reserve and release, and refuses it the admin actions', async () => {
    const { clientAs } = await start();
    const operator = clientAs(tokens.operator);
    await operator.register({ target, newKey: 0x77n });
    await operator.reserve({ target, key: 0x77n });
    await operator.release({ target, key: 0x77n });
    const options = { reason: 'host-b died' };
    for (const call of [
      () => operator.clear({ target, key: 0x77n, options }),
      () => operator.preempt({ target, key: 0x77n, preemptKey: 0x88n, options }),
      () => operator.preempt({ target, key: 0x77n, preemptKey: 0x88n, abort: true, options }),
      () => operator.registerAndMove({ target, key: 0x77n, destinationKey: 0x99n, options }),
    ]) {
      await expect(call()).rejects.toMatchObject({
        code: Status.PERMISSION_DENIED,
        details: expect.stringContaining('needs role admin; otto has operator'),
      });
    }
  });

  it('requires a reason for destructive actions, naming options.reason', async () => {
    const { clientAs } = await start();
    const admin = clientAs(tokens.admin);
    const error = await admin
      .clear({ target, key: 0x77n, options: { reason: '  ' } })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^options\.reason: Clear is destructive/),
    });
    expect((error as { extra: unknown[] }).extra).toEqual([
      BadRequest.fromPartial({
        fieldViolations: [{ field: 'options.reason', description: expect.any(String) as string }],
      }),
    ]);
    await expect(admin.preempt({ target, key: 0x77n, preemptKey: 0x88n })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
    await expect(
      admin.registerAndMove({ target, key: 0x77n, destinationKey: 0x99n }),
    ).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
  });

  it('lets an admin do destructive actions with a reason', async () => {
    const { clientAs, seen } = await start();
    const admin = clientAs(tokens.admin);
    const options = { reason: 'host-b lost its HBA; taking over its drive' };
    await admin.preempt({ target, key: 0x77n, preemptKey: 0x88n, abort: true, options });
    await admin.clear({ target, key: 0x77n, options });
    await admin.registerAndMove({ target, key: 0x77n, destinationKey: 0x99n, options });
    await admin.reserve({ target, key: 0x77n });
    expect(seen.map((p) => p.name)).toEqual(['ada', 'ada', 'ada', 'ada']);
  });

  it('asks the key registry hook about an operator’s keys, not an admin’s', async () => {
    const asked: bigint[] = [];
    const keyCheck: OperatorKeyCheck = (principal, key) => {
      asked.push(key);
      return principal.name === 'otto' && key === 0x77n;
    };
    const { clientAs } = await start({ keyCheck });
    const operator = clientAs(tokens.operator);
    await operator.reserve({ target, key: 0x77n });
    await expect(operator.reserve({ target, key: 0x78n })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details:
        'otto may not use key 0x0000000000000078: the key registry does not assign it to them',
    });
    await expect(operator.register({ target, key: 0x77n, newKey: 0x79n })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    // Ignoring the existing key would replace a registration nobody vouched for: refused to operators.
    await expect(
      operator.register({ target, key: 0x78n, ignoreExistingKey: true, newKey: 0x77n }),
    ).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: expect.stringContaining('otto may not REGISTER AND IGNORE EXISTING KEY'),
    });
    await operator.register({ target, key: 0n, newKey: 0x77n });
    asked.length = 0;
    await clientAs(tokens.admin).reserve({ target, key: 0x78n });
    expect(asked).toEqual([]);
  });

  it('refuses with UNAVAILABLE (retryable, nothing sent) when the token store or the key registry cannot answer', async () => {
    const keyCheck: OperatorKeyCheck = () => Promise.reject(new Error('connection refused'));
    const { clientAs } = await start({ keyCheck });
    await expect(clientAs(tokens.operator).reserve({ target, key: 0x77n })).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
      details:
        'cannot check who owns key 0x0000000000000077 right now (key registry unavailable: connection refused); nothing was sent, retry later',
    });
    store.find = () => Promise.reject(new Error('database down'));
    await expect(clientAs(tokens.viewer).listAgents({})).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
      details: 'cannot check the bearer token right now (token store unavailable); retry later',
    });
  });

  it('checks each CommandSession command with the unary role table', async () => {
    const { clientAs } = await start();
    async function* requests(): AsyncIterable<DeepPartial<CommandSessionRequest>> {
      yield { requestId: '1', command: { $case: 'readKeys', value: { target } } };
      yield { requestId: '2', command: { $case: 'reserve', value: { target, key: 0x77n } } };
      yield {
        requestId: '3',
        command: { $case: 'preempt', value: { target, key: 0x77n, preemptKey: 0x88n } },
      };
    }
    const replies: CommandSessionResponse[] = [];
    for await (const reply of clientAs(tokens.operator).commandSession(requests()))
      replies.push(reply);
    expect(
      replies.map((r) => [
        r.requestId,
        r.reply?.$case,
        r.reply?.$case === 'error' ? r.reply.value.code : 0,
      ]),
    ).toEqual([
      ['1', 'result', 0],
      ['2', 'result', 0],
      ['3', 'error', Status.PERMISSION_DENIED],
    ]);
    await expect(
      (async () => {
        for await (const _ of clientAs().commandSession(requests())) void _;
      })(),
    ).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
  });
});

describe('auth middleware on FleetService', () => {
  it('lets a viewer audit and plan, and keeps rollouts and the key registry for admins', async () => {
    const { fleetAs } = await start();
    const viewer = fleetAs(tokens.viewer);
    for await (const _ of viewer.audit({})) void _;
    await viewer.plan({});
    await viewer.listKeys({});
    await expect(
      viewer.allocateKey({ agentId: 'host-a', purpose: 'backup' }),
    ).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
    const operator = fleetAs(tokens.operator);
    await expect(operator.setDesiredState({})).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    await expect(
      (async () => {
        for await (const _ of operator.takeover({
          agentId: 'host-a',
          options: { reason: 'host-b is dead' },
        }))
          void _;
      })(),
    ).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
  });

  it('requires a reason for takeovers, rollouts and key revocation', async () => {
    const { fleetAs, seen } = await start();
    const admin = fleetAs(tokens.admin);
    const drain = async (stream: AsyncIterable<unknown>) => {
      for await (const _ of stream) void _;
    };
    await expect(drain(admin.takeover({ agentId: 'host-a' }))).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^options\.reason: /),
    });
    await expect(drain(admin.apply({}))).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    await expect(admin.revokeKey({ key: 0x77n })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^reason: RevokeKey is destructive/),
    });
    await drain(admin.takeover({ agentId: 'host-a', options: { reason: 'host-b lost its HBA' } }));
    await admin.revokeKey({ key: 0x77n, reason: 'laptop stolen' });
    expect(seen.map((p) => p.name)).toEqual(['ada', 'ada']);
  });
});

describe('role table', () => {
  it('covers every ControlService and FleetService RPC', () => {
    const rpcs = [ControlServiceDefinition, FleetServiceDefinition].flatMap((d) =>
      Object.values(d.methods).map((m) => m.name),
    );
    expect(rpcs.filter((name) => METHOD_ROLES[name] === undefined)).toEqual([]);
  });

  it('gives every CommandSession command the role of its unary RPC', () => {
    expect(
      Object.fromEntries(
        Object.keys(SESSION_COMMAND_METHODS).map((c) => [
          c,
          requiredRole(c as keyof typeof SESSION_COMMAND_METHODS),
        ]),
      ),
    ).toEqual({
      readKeys: 'viewer',
      readReservation: 'viewer',
      reportCapabilities: 'viewer',
      readFullStatus: 'viewer',
      register: 'operator',
      reserve: 'operator',
      release: 'operator',
      clear: 'admin',
      preempt: 'admin',
      registerAndMove: 'admin',
    });
  });

  it('refuses a method missing from the table to everyone but admin', async () => {
    const { authorizeRequest } = await import('../../src/server/auth/middleware.js');
    const operator: Principal = { tokenId: 'x', name: 'otto', role: 'operator' };
    await expect(authorizeRequest(operator, 'DeleteEverything', {})).rejects.toBeInstanceOf(
      ServerError,
    );
    await expect(
      authorizeRequest({ ...operator, role: 'admin' }, 'DeleteEverything', {}),
    ).resolves.toBeUndefined();
  });
});
