import { createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  ControlServiceDefinition,
  type CommandSessionRequest,
  type DeepPartial,
} from '../../src/gen/prfleet/v1/control.js';
import { Outcome, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import {
  createAuthMiddleware,
  createMemoryTokenStore,
  createToken,
  type Role,
} from '../../src/server/auth/index.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';

/** The real prfleet server with the token middleware on its client-facing services, and 3 emulated hosts. */
async function startGuardedFleet() {
  const tokens = createMemoryTokenStore();
  const issued: Record<Role, string> = {
    viewer: (await createToken(tokens, { name: 'vera', role: 'viewer' })).token,
    operator: (await createToken(tokens, { name: 'otto', role: 'operator' })).token,
    admin: (await createToken(tokens, { name: 'ada', role: 'admin' })).token,
  };
  const started = await startTestServer({
    deps: { controlMiddleware: createAuthMiddleware({ tokens }) },
  });
  await startEmulatedAgents({ address: started.address });
  const channel = createChannel(started.address);
  onTestFinished(() => channel.close());
  const as = (role?: Role) =>
    createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(ControlServiceDefinition, channel, {
        '*':
          role === undefined
            ? {}
            : { metadata: Metadata({ authorization: `Bearer ${issued[role]}` }) },
      });
  return { as };
}

const drive = { agentId: 'host-a', path: '/dev/sg2' };

async function* requests(items: DeepPartial<CommandSessionRequest>[]) {
  for (const item of items) yield item;
}

describe('roles on the real server', () => {
  it('refuses a caller without a token with UNAUTHENTICATED, and the agent stream needs none', async () => {
    const { as } = await startGuardedFleet();
    await expect(as().listAgents({})).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
    // The emulated agents connected over the same server without tokens: they are listed to a viewer.
    const { agents } = await as('viewer').listAgents({});
    expect(agents.map((a) => a.agentId)).toEqual(['host-a', 'host-b', 'host-c']);
  });

  it('lets a viewer read but not register, and an operator register', async () => {
    const { as } = await startGuardedFleet();
    const read = await as('viewer').readKeys({ target: drive });
    expect(read.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    await expect(as('viewer').register({ target: drive, newKey: 0xa1n })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    const registered = await as('operator').register({ target: drive, newKey: 0xa1n });
    expect(registered.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('needs an admin and a reason for PREEMPT', async () => {
    const { as } = await startGuardedFleet();
    const preempt = {
      target: drive,
      key: 0xa1n,
      preemptKey: 0xb1n,
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
    };
    await expect(as('operator').preempt(preempt)).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    await expect(as('admin').preempt(preempt)).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
  });

  it('checks every command of a CommandSession against the caller role', async () => {
    const { as } = await startGuardedFleet();
    const replies = [];
    for await (const reply of as('viewer').commandSession(
      requests([
        { requestId: 'read', command: { $case: 'readKeys', value: { target: drive } } },
        {
          requestId: 'write',
          command: { $case: 'register', value: { target: drive, newKey: 0xa1n } },
        },
      ]),
    )) {
      replies.push(reply);
    }
    const byId = new Map(replies.map((r) => [r.requestId, r.reply]));
    const read = byId.get('read');
    expect(read?.$case).toBe('result');
    const write = byId.get('write');
    expect(write?.$case).toBe('error');
    expect(write?.$case === 'error' ? write.value.code : undefined).toBe(Status.PERMISSION_DENIED);
    // Nothing was registered: the device still has no keys.
    const keys = await as('viewer').readKeys({ target: drive });
    expect(
      keys.result?.data?.$case === 'readKeys' ? keys.result.data.value.keys : undefined,
    ).toEqual([]);
  });
});
