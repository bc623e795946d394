import { createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ControlServiceDefinition, TokenRole } from '../../src/gen/prfleet/v1/control.js';
import {
  createAuthMiddleware,
  createMemoryTokenStore,
  createToken,
} from '../../src/server/auth/index.js';
import { startTestServer } from '../helpers/server.js';
import { readKeysSession } from '../helpers/session.js';
import { ensureBuilt, runCliBinary } from '../helpers/processes.js';

/** The real server with tokens: ada is admin, vera viewer; the token store is the one the RPCs manage. */
async function startTokenServer() {
  const tokens = createMemoryTokenStore();
  const ada = (await createToken(tokens, { name: 'ada', role: 'admin' })).token;
  const vera = (await createToken(tokens, { name: 'vera', role: 'viewer' })).token;
  const started = await startTestServer({
    deps: { controlMiddleware: createAuthMiddleware({ tokens }), tokens },
  });
  const channel = createChannel(started.address);
  onTestFinished(() => channel.close());
  const as = (token: string) =>
    createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(ControlServiceDefinition, channel, {
        '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) },
      });
  return { ...started, tokens, ada, vera, as };
}

describe('token administration through the server (CreateToken, ListTokens, RevokeToken)', () => {
  it('lets an admin issue a token that works at once, list it without its secret, and revoke it', async () => {
    const { as, ada } = await startTokenServer();
    const created = await as(ada).createToken({
      name: 'backup-automation',
      role: TokenRole.TOKEN_ROLE_OPERATOR,
      expiresIn: { seconds: 86_400n, nanos: 0 },
    });
    expect(created.token).toMatch(/^prf_[0-9a-f]{12}_/);
    expect(created.info).toMatchObject({
      name: 'backup-automation',
      role: TokenRole.TOKEN_ROLE_OPERATOR,
    });
    const expires = created.info?.expiresAt?.getTime() ?? 0;
    expect(Math.abs(expires - Date.now() - 86_400_000)).toBeLessThan(60_000);
    // The new token authenticates: an operator may list agents.
    expect((await as(created.token).listAgents({})).agents).toEqual([]);
    const { tokens } = await as(ada).listTokens({});
    expect(tokens.map((t) => t.name)).toEqual(['ada', 'vera', 'backup-automation']);
    // The secret is everything after `prf_<id>_` (base64url: it may hold '_' itself).
    const secret = created.token.slice('prf_'.length + 12 + 1);
    expect(secret).toHaveLength(43);
    expect(JSON.stringify(tokens)).not.toContain(secret);

    const id = created.info?.id ?? '';
    const revoked = await as(ada).revokeToken({ id, reason: 'rotated' });
    expect(revoked.info?.revokedAt).toBeInstanceOf(Date);
    await expect(as(created.token).listAgents({})).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
  });

  it('keeps token administration to admins, and says which field is wrong', async () => {
    const { as, ada, vera } = await startTokenServer();
    await expect(
      as(vera).createToken({ name: 'x', role: TokenRole.TOKEN_ROLE_ADMIN }),
    ).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
    await expect(as(vera).listTokens({})).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
    await expect(
      as(ada).createToken({ name: 'x', role: TokenRole.TOKEN_ROLE_UNSPECIFIED }),
    ).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringContaining('role') as unknown,
    });
    await expect(
      as(ada).createToken({ name: '', role: TokenRole.TOKEN_ROLE_VIEWER }),
    ).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringContaining('name') as unknown,
    });
    await expect(
      as(ada).createToken({
        name: 'x',
        role: TokenRole.TOKEN_ROLE_VIEWER,
        expiresIn: { seconds: -5n, nanos: 0 },
      }),
    ).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    await expect(as(ada).revokeToken({ id: 'nope', reason: '' })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
    await expect(as(ada).revokeToken({ id: '0123456789ab', reason: 'typo' })).rejects.toMatchObject(
      {
        code: Status.NOT_FOUND,
      },
    );
    await expect(as(ada).revokeToken({ id: '0123456789ab', reason: ' ' })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringContaining('reason') as unknown,
    });
    expect((await as(ada).listTokens({})).tokens).toHaveLength(2); // nothing was added
  });

  it('refuses further commands on a CommandSession whose token was revoked after it opened', async () => {
    const { as, ada, vera } = await startTokenServer();
    const ask = readKeysSession(as(vera), { agentId: 'nobody', path: '/dev/sg0' });
    expect(await ask()).toEqual({ errorCode: Status.NOT_FOUND }); // authorized; the agent is unknown
    const veraId = (await as(ada).listTokens({})).tokens.find((t) => t.name === 'vera')?.id ?? '';
    await as(ada).revokeToken({ id: veraId, reason: 'left' });
    expect(await ask()).toEqual({ errorCode: Status.UNAUTHENTICATED });
  });

  it('answers FAILED_PRECONDITION on a server that takes no tokens', async () => {
    const { client } = await startTestServer();
    await expect(client.listTokens({})).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining('takes no client tokens') as unknown,
    });
  });

  it('is driven by `prfleet tokens` (the built CLI)', async () => {
    await ensureBuilt();
    const { address, ada } = await startTokenServer();
    const cli = (...args: string[]) => runCliBinary(address, ['--token', ada, ...args]);
    const created = await cli(
      'tokens',
      'create',
      '--name',
      'carol',
      '--role',
      'viewer',
      '--expires',
      '30d',
    );
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^prf_[0-9a-f]{12}_/);
    expect(created.stderr).toContain('only time the token is shown');
    const listed = await cli('-o', 'json', 'tokens', 'list');
    const names = (JSON.parse(listed.stdout) as { tokens: { name: string; state: string }[] })
      .tokens;
    expect(names.map((t) => `${t.name}:${t.state}`)).toEqual([
      'ada:active',
      'vera:active',
      'carol:active',
    ]);
    const id = /^prf_([0-9a-f]{12})_/.exec(token)?.[1] ?? '';
    const revoked = await cli('tokens', 'revoke', id, '--reason', 'left the team');
    expect(revoked).toMatchObject({ code: 0 });
    expect(revoked.stdout).toContain(`revoked ${id} (carol, viewer)`);
    const table = await cli('tokens', 'list');
    expect(table.stdout).toMatch(/carol\s*│\s*viewer\s*│\s*revoked/);
    const bad = await cli(
      'tokens',
      'create',
      '--name',
      'x',
      '--role',
      'viewer',
      '--expires',
      'soon',
    );
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('not a lifetime');
  });
});
