// The new admin operations from callers that are not admins, against a real prfleet-server process (embedded
// PGlite store, a token file, the demo fabric): a viewer or an operator cannot reset a logical unit or force a
// takeover (PERMISSION_DENIED before anything reaches a device), an admin is still held to the reason and to
// names that exist, and a viewer may watch. Nothing here is sent to a device: the drive's keys are unchanged.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createChannel, createClientFactory, Status, type Channel } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerTokenMiddleware, createControlClient } from '../../src/common/client.js';
import {
  startServerProcess,
  startSimProcess,
  type ServerProcess,
} from '../../src/demo/processes.js';
import { FleetServiceDefinition, type FleetServiceClient } from '../../src/gen/prfleet/v1/fleet.js';
import { createFileTokenStore, createToken } from '../../src/server/auth/tokens.js';
import { DEMO_FABRIC, ensureBuilt, type ChildHandle } from '../helpers/processes.js';

const DRIVE = 'naa.5000e11100000002';

describe('admin operations from lesser roles', () => {
  let server: ServerProcess;
  let sim: ChildHandle;
  const channels: Channel[] = [];
  const tokens: Record<'viewer' | 'operator' | 'admin', string> = {
    viewer: '',
    operator: '',
    admin: '',
  };
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-admin-rpcs-'));

  const fleet = (role: keyof typeof tokens): FleetServiceClient => {
    const channel = createChannel(server.address);
    channels.push(channel);
    return createClientFactory()
      .use(bearerTokenMiddleware(tokens[role]))
      .create(FleetServiceDefinition, channel);
  };

  beforeAll(async () => {
    await ensureBuilt();
    const file = join(dir, 'tokens.json');
    const store = createFileTokenStore(file);
    for (const role of ['viewer', 'operator', 'admin'] as const)
      tokens[role] = (await createToken(store, { name: role, role })).token;
    server = await startServerProcess({
      env: { PRFLEET_TOKENS: 'file', PRFLEET_TOKENS_FILE: file },
    });
    sim = await startSimProcess({ address: server.address, fabric: DEMO_FABRIC });
  }, 600_000);

  afterAll(async () => {
    for (const c of channels) c.close();
    await sim?.stop({ graceMs: 5000 });
    await server?.handle.stop({ graceMs: 5000 });
    rmSync(dir, { recursive: true, force: true });
  });

  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'OK',
      (e: unknown) => {
        const c = (e as { code?: Status }).code;
        return c === undefined ? (e instanceof Error ? e.message : 'not an RPC error') : Status[c];
      },
    );

  it('refuses ResetLogicalUnit and a forced Takeover to viewer and operator', async () => {
    for (const role of ['viewer', 'operator'] as const) {
      const client = fleet(role);
      expect(await code(client.resetLogicalUnit({ luId: DRIVE, reason: 'x' })), role).toBe(
        'PERMISSION_DENIED',
      );
      const takeover = (async () => {
        for await (const _ of client.takeover({
          victim: { $case: 'victimAgentId', value: 'host-c' },
          agentId: 'host-a',
          force: true,
          options: { reason: 'because' },
        }));
      })();
      expect(await code(takeover), role).toBe('PERMISSION_DENIED');
    }
  });

  it('holds an admin to a reason and to an LU that exists', async () => {
    const admin = fleet('admin');
    expect(await code(admin.resetLogicalUnit({ luId: DRIVE, reason: '' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(
      await code(admin.resetLogicalUnit({ luId: 'naa.ffffffffffffffff', reason: 'why' })),
    ).toBe('NOT_FOUND');
    const forcedWithoutReason = (async () => {
      for await (const _ of admin.takeover({
        victim: { $case: 'victimAgentId', value: 'host-c' },
        agentId: 'host-a',
        force: true,
      }));
    })();
    expect(await code(forcedWithoutReason)).toBe('INVALID_ARGUMENT');
  });

  it('lets a viewer watch, and nothing reached the drive', async () => {
    const ac = new AbortController();
    const stream = fleet('viewer').watch({ snapshot: true }, { signal: ac.signal });
    const first = await stream[Symbol.asyncIterator]().next();
    expect(first.done === true ? undefined : first.value.message?.$case).toBe('snapshot');
    ac.abort();
    const control = createControlClient(server.address, { token: tokens.viewer });
    const { result } = await control.readKeys({ target: { agentId: 'host-b', path: '/dev/sg1' } });
    control.close();
    expect(result?.data?.$case === 'readKeys' ? result.data.value.keys : ['?']).toEqual([]);
  });
});
