// Operators may REGISTER/RESERVE/RELEASE only with keys the key registry allocated to them (isOperatorKeyAllowed
// wired to store.keys through createStoreBoundAuth, as prfleet-server does), on the real server with a durable
// store and emulated hosts; unary RPCs and CommandSession alike. Admins are unrestricted.
import { ClientError, createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { formatKey } from '../../src/common/key-layout.js';
import {
  ControlServiceDefinition,
  type CommandSessionRequest,
  type DeepPartial,
} from '../../src/gen/prfleet/v1/control.js';
import { Outcome, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import {
  createAuthMiddleware,
  createStoreBoundAuth,
  createToken,
  type Role,
} from '../../src/server/auth/index.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import { createDbTokenStore } from '../../src/server/store/tokens.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';

let store: Store;
beforeAll(async () => {
  store = await openStore({ inMemory: true }); // PGlite initdb: seconds, longer on a busy machine
}, 180_000);
afterAll(async () => {
  await store?.close();
});

const people: Record<Role, string> = { viewer: 'vera', operator: 'otto', admin: 'ada' };

/** The real server with tokens and the key registry in `store`, and the demo fabric's 3 hosts. */
async function startGuardedFleet() {
  const tokens = createDbTokenStore(store.db);
  const issued = {} as Record<Role, string>;
  for (const role of ['viewer', 'operator', 'admin'] as const) {
    issued[role] = (await createToken(tokens, { name: people[role], role })).token;
  }
  const auth = createStoreBoundAuth({ tokenSource: 'database' });
  const controlMiddleware = createAuthMiddleware({
    tokens: auth.tokens,
    isOperatorKeyAllowed: auth.isOperatorKeyAllowed,
  });
  const started = await startTestServer({ deps: { store, controlMiddleware } });
  auth.bind(started.server.store);
  await startEmulatedAgents({ address: started.address });
  const channel = createChannel(started.address);
  onTestFinished(() => channel.close());
  const as = (role: Role) =>
    createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(ControlServiceDefinition, channel, {
        '*': { metadata: Metadata({ authorization: `Bearer ${issued[role]}` }) },
      });
  return { as };
}

/** The RPC error a call fails with (status and message). */
async function refusal(call: Promise<unknown>): Promise<{ code: Status; details: string }> {
  const error: unknown = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ClientError))
    throw new Error(`expected an RPC error, got ${String(error)}`);
  return { code: error.code, details: error.details };
}

async function* requests(items: DeepPartial<CommandSessionRequest>[]) {
  for (const item of items) yield item;
}

const drive = { agentId: 'host-a', path: '/dev/sg2' };
const WE = PrType.PR_TYPE_WRITE_EXCLUSIVE;

describe('operator keys tied to the key registry', { timeout: 120_000 }, () => {
  it('lets an operator register, reserve and release with its own key, and refuses others\u2019 and unknown keys naming key and owner', async () => {
    const { as } = await startGuardedFleet();
    const own = await store.keys.allocate({
      site: 'dc1',
      agentId: 'host-a',
      purpose: 'backup',
      owner: 'otto',
    });
    const alices = await store.keys.allocate({
      site: 'dc1',
      agentId: 'host-b',
      purpose: 'backup',
      owner: 'alice',
    });
    const otto = as('operator');

    expect((await otto.register({ target: drive, newKey: own.key })).result?.outcome).toBe(
      Outcome.OUTCOME_GOOD,
    );
    expect((await otto.reserve({ target: drive, key: own.key, type: WE })).result?.outcome).toBe(
      Outcome.OUTCOME_GOOD,
    );
    expect((await otto.release({ target: drive, key: own.key, type: WE })).result?.outcome).toBe(
      Outcome.OUTCOME_GOOD,
    );

    const foreign = otto.register({
      target: { agentId: 'host-b', path: '/dev/sg1' },
      newKey: alices.key,
    });
    await expect(foreign).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: `otto may not use key ${formatKey(alices.key)} (Register): the key registry assigns it to alice (backup key of agent host-b at dc1), not to otto`,
    });
    // Replacing someone else's registration needs their key as the current one: refused as well.
    const replacing = await refusal(
      otto.register({ target: drive, key: alices.key, newKey: own.key }),
    );
    expect(replacing.code).toBe(Status.PERMISSION_DENIED);
    expect(replacing.details).toContain('assigns it to alice');
    // REGISTER AND IGNORE EXISTING KEY would replace whatever the nexus holds without naming it.
    const ignoring = await refusal(
      otto.register({ target: drive, ignoreExistingKey: true, newKey: own.key }),
    );
    expect(ignoring.code).toBe(Status.PERMISSION_DENIED);
    expect(ignoring.details).toContain('may not REGISTER AND IGNORE EXISTING KEY');
    const unknown = await refusal(otto.reserve({ target: drive, key: 0x77n, type: WE }));
    expect(unknown.code).toBe(Status.PERMISSION_DENIED);
    expect(unknown.details).toContain(
      '0x0000000000000077 (Reserve): it is not in the key registry',
    );

    // Nothing was sent for the refusals: only otto's key is registered on the drive.
    const keys = await as('viewer').readKeys({ target: drive });
    expect(
      keys.result?.data?.$case === 'readKeys' ? keys.result.data.value.keys : undefined,
    ).toEqual([own.key]);

    // An admin is not asked: any key, registry or not.
    const ada = as('admin');
    expect(
      (await ada.register({ target: { agentId: 'host-c', path: '/dev/sg1' }, newKey: alices.key }))
        .result?.outcome,
    ).toBe(Outcome.OUTCOME_GOOD);
    expect(
      (await ada.register({ target: { agentId: 'host-c', path: '/dev/sg0' }, newKey: 0x99n }))
        .result?.outcome,
    ).toBe(Outcome.OUTCOME_GOOD);
  });

  it('lets a revoked key only be given up (unregistered), never reserved or registered again', async () => {
    const { as } = await startGuardedFleet();
    const old = await store.keys.allocate({
      site: 'dc1',
      agentId: 'host-a',
      purpose: 'restore',
      owner: 'otto',
    });
    const otto = as('operator');
    const changer = { agentId: 'host-a', path: '/dev/sg0' };
    expect((await otto.register({ target: changer, newKey: old.key })).result?.outcome).toBe(
      Outcome.OUTCOME_GOOD,
    );
    await store.keys.revoke(old.key, { by: 'ada', reason: 'rotated' });

    const revoked = await refusal(otto.reserve({ target: changer, key: old.key, type: WE }));
    expect(revoked.code).toBe(Status.PERMISSION_DENIED);
    expect(revoked.details).toMatch(
      /it was revoked \S+ by ada \(rotated\); it may only be unregistered or released/,
    );
    await expect(
      otto.register({ target: { agentId: 'host-b', path: '/dev/sg0' }, newKey: old.key }),
    ).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    const unregister = await otto.register({ target: changer, key: old.key, newKey: 0n });
    expect(unregister.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('checks every command of a CommandSession against the registry, and the session goes on after a refusal', async () => {
    const { as } = await startGuardedFleet();
    const own = await store.keys.allocate({
      site: 'dc2',
      agentId: 'host-c',
      purpose: 'backup',
      owner: 'otto',
    });
    const bobs = await store.keys.allocate({
      site: 'dc2',
      agentId: 'host-c',
      purpose: 'test',
      owner: 'bob',
    });
    const target = { agentId: 'host-c', path: '/dev/sg1' };
    const replies = [];
    for await (const reply of as('operator').commandSession(
      requests([
        { requestId: 'mine', command: { $case: 'register', value: { target, newKey: own.key } } },
        {
          requestId: 'bobs',
          command: {
            $case: 'register',
            value: { target: { agentId: 'host-c', path: '/dev/sg0' }, newKey: bobs.key },
          },
        },
        {
          requestId: 'unknown',
          command: { $case: 'reserve', value: { target, key: 0x1234n, type: WE } },
        },
        { requestId: 'read', command: { $case: 'readKeys', value: { target } } },
      ]),
    )) {
      replies.push(reply);
    }
    const byId = new Map(replies.map((r) => [r.requestId, r.reply]));
    const mine = byId.get('mine');
    expect(mine?.$case === 'result' ? mine.value.outcome : mine).toBe(Outcome.OUTCOME_GOOD);
    const refused = byId.get('bobs');
    expect(refused?.$case).toBe('error');
    expect(refused?.$case === 'error' ? refused.value.code : undefined).toBe(
      Status.PERMISSION_DENIED,
    );
    expect(refused?.$case === 'error' ? refused.value.message : '').toContain(
      `otto may not use key ${formatKey(bobs.key)} (Register): the key registry assigns it to bob`,
    );
    const unknown = byId.get('unknown');
    expect(unknown?.$case === 'error' ? unknown.value.message : unknown).toContain(
      'not in the key registry',
    );
    const read = byId.get('read');
    expect(
      read?.$case === 'result' && read.value.data?.$case === 'readKeys'
        ? read.value.data.value.keys
        : read,
    ).toEqual([own.key]);
  });
});
