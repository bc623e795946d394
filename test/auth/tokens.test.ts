import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createFileTokenStore,
  createMemoryTokenStore,
  createToken,
  issueToken,
  parseToken,
  verifyToken,
} from '../../src/server/auth/tokens.js';
import { createTokensProgram } from '../../src/tools/tokens.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'prfleet-tokens-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('bearer tokens', () => {
  it('verifies a fresh token and names its holder and role', async () => {
    const store = createMemoryTokenStore();
    const { token, record } = await createToken(store, { name: 'alice', role: 'operator' });
    expect(token).toMatch(/^prf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(await verifyToken(store, token)).toEqual({
      tokenId: record.id,
      name: 'alice',
      role: 'operator',
    });
  });

  it('stores a salted hash, never the secret', () => {
    const { token, record } = issueToken({ name: 'alice', role: 'viewer' });
    const secret = parseToken(token)?.secret ?? '';
    expect(JSON.stringify(record)).not.toContain(secret);
    expect(record.hash).toMatch(/^[0-9a-f]{64}$/);
    const other = issueToken({ name: 'alice', role: 'viewer' });
    expect(other.record.salt).not.toBe(record.salt);
  });

  it('refuses a token whose secret differs in one character', async () => {
    const store = createMemoryTokenStore();
    const { token } = await createToken(store, { name: 'bob', role: 'admin' });
    const last = token.at(-1) === 'A' ? 'B' : 'A';
    expect(await verifyToken(store, token.slice(0, -1) + last)).toBeUndefined();
  });

  it('refuses unknown ids, malformed text, revoked and expired tokens', async () => {
    const store = createMemoryTokenStore();
    const now = new Date('2026-01-01T00:00:00Z');
    const revoked = await createToken(store, { name: 'carol', role: 'viewer' });
    const expiring = await createToken(store, {
      name: 'dave',
      role: 'viewer',
      expiresInMs: 60_000,
      now,
    });
    await store.revoke(revoked.record.id);
    expect(await verifyToken(store, revoked.token)).toBeUndefined();
    expect(
      await verifyToken(store, expiring.token, new Date(now.getTime() + 59_999)),
    ).toMatchObject({ name: 'dave' });
    expect(
      await verifyToken(store, expiring.token, new Date(now.getTime() + 60_000)),
    ).toBeUndefined();
    expect(
      await verifyToken(store, issueToken({ name: 'eve', role: 'admin' }).token),
    ).toBeUndefined();
    expect(await verifyToken(store, 'Bearer nonsense')).toBeUndefined();
  });

  it('rejects bad names and lifetimes with a clear message', () => {
    expect(() => issueToken({ name: '', role: 'viewer' })).toThrow('invalid token name: ""');
    expect(() => issueToken({ name: 'x', role: 'viewer', expiresInMs: 0 })).toThrow(
      'invalid token lifetime: 0 ms',
    );
  });
});

describe('file token store', () => {
  it('round-trips records through a 0600 JSON file and sees changes made by another writer', async () => {
    const file = join(dir, 'tokens.json');
    const server = createFileTokenStore(file);
    expect(await server.list()).toEqual([]);
    const { token } = await createToken(createFileTokenStore(file), {
      name: 'alice',
      role: 'admin',
    });
    expect(await verifyToken(server, token)).toMatchObject({ name: 'alice', role: 'admin' });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const id = parseToken(token)?.id ?? '';
    expect(await createFileTokenStore(file).revoke(id)).toBe(true);
    expect(await verifyToken(server, token)).toBeUndefined();
    expect(await server.revoke('000000000000')).toBe(false);
  });

  it('loses nothing when one process creates and revokes tokens at the same time (the server’s token RPCs)', async () => {
    const file = join(dir, 'busy.json');
    const store = createFileTokenStore(file);
    const first = await Promise.all(
      Array.from({ length: 10 }, (_, i) => createToken(store, { name: `t${i}`, role: 'viewer' })),
    );
    const revokedAt = new Date('2026-12-02T00:00:00Z');
    const [more] = await Promise.all([
      Promise.all(
        Array.from({ length: 10 }, (_, i) => createToken(store, { name: `u${i}`, role: 'viewer' })),
      ),
      ...first.map(({ record }) => store.revoke(record.id, revokedAt)),
    ]);
    const records = await createFileTokenStore(file).list();
    expect(records).toHaveLength(20);
    expect(
      records
        .filter((r) => r.revokedAt !== undefined)
        .map((r) => r.id)
        .sort(),
    ).toEqual(first.map(({ record }) => record.id).sort());
    for (const { token } of more) expect(await verifyToken(store, token)).toBeDefined();
    // Revoking again keeps the first time, as the database does.
    await store.revoke(first[0]?.record.id ?? '', new Date());
    expect((await store.find(first[0]?.record.id ?? ''))?.revokedAt).toBe(revokedAt.toISOString());
  });

  it('names the file when it is malformed', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ version: 1, tokens: [{ id: 'x' }] }));
    await expect(createFileTokenStore(file).list()).rejects.toThrow(
      `token file ${file} is malformed`,
    );
    await writeFile(file, '{');
    await expect(createFileTokenStore(file).list()).rejects.toThrow('is not valid JSON');
  });
});

describe('prfleet-tokens command', () => {
  it('creates a token, prints it once, lists it without the secret, and revokes it', async () => {
    const file = join(dir, 'tokens.json');
    const lines: string[] = [];
    const run = (args: string[]) =>
      createTokensProgram((l) => lines.push(l)).parseAsync(args, { from: 'user' });
    await run(['create', '--role', 'operator', '--name', 'alice', '--file', file]);
    const token = lines.pop() ?? '';
    expect(await verifyToken(createFileTokenStore(file), token)).toMatchObject({
      name: 'alice',
      role: 'operator',
    });
    expect(await readFile(file, 'utf8')).not.toContain(parseToken(token)?.secret);
    await run(['list', '--file', file]);
    const listed = JSON.parse(lines.pop() ?? '{}') as Record<string, string>;
    expect(listed).toMatchObject({ name: 'alice', role: 'operator', state: 'active' });
    expect(JSON.stringify(listed)).not.toContain(parseToken(token)?.secret);
    await run(['revoke', '--id', listed['id'] ?? '', '--file', file]);
    await run(['list', '--file', file]);
    expect(JSON.parse(lines.pop() ?? '{}')).toMatchObject({ state: 'revoked' });
  });

  it('refuses an unknown role', async () => {
    const program = createTokensProgram(() => undefined)
      .exitOverride()
      .configureOutput({ writeErr: () => undefined });
    program.commands.forEach((c) =>
      c.exitOverride().configureOutput({ writeErr: () => undefined }),
    );
    await expect(
      program.parseAsync(
        ['create', '--role', 'root', '--name', 'x', '--file', join(dir, 't.json')],
        { from: 'user' },
      ),
    ).rejects.toThrow(/Allowed choices are viewer, operator, admin/);
  });
});
