// Bearer tokens in the durable store (migration 2, src/server/store/tokens.ts) on PGlite and the real PostgreSQL,
// and prfleet-tokens managing them there.
import { describe, expect, it } from 'vitest';
import {
  createToken,
  parseToken,
  verifyToken,
  type TokenRecord,
} from '../../src/server/auth/tokens.js';
import { createStoreBoundAuth } from '../../src/server/auth/store-binding.js';
import type { Store } from '../../src/server/store/index.js';
import { createDbTokenStore } from '../../src/server/store/tokens.js';
import { createTokensProgram } from '../../src/tools/tokens.js';
import { TEST_DATABASE_URL, storeBackends } from '../store/backends.js';

const backends = await storeBackends();

/** Runs prfleet-tokens in-process; returns the lines it printed. */
async function tokensTool(args: string[], openStore?: () => Promise<Store>): Promise<string[]> {
  const lines: string[] = [];
  const program = createTokensProgram((l) => lines.push(l), {
    env: {},
    ...(openStore === undefined ? {} : { openStore }),
  });
  await program.parseAsync(args, { from: 'user' });
  return lines;
}

/** The store behind a backend's `open`, kept open when the tool closes it. */
const keepOpen =
  (store: Store): (() => Promise<Store>) =>
  () =>
    Promise.resolve({ ...store, close: () => Promise.resolve() });

describe.each(backends)('tokens in the $name store', (backend) => {
  it.skipIf(backend.skipReason !== undefined)(
    'verifies, lists without secrets, expires and revokes like the file store',
    async () => {
      const store = await backend.open();
      const tokens = createDbTokenStore(store.db, { cacheMs: 0 });
      const now = new Date('2026-01-01T00:00:00Z');
      const alice = await createToken(tokens, { name: 'alice', role: 'operator', now });
      const later = new Date(now.getTime() + 1000);
      const temp = await createToken(tokens, {
        name: 'ci',
        role: 'viewer',
        now: later,
        expiresInMs: 60_000,
      });
      expect(await verifyToken(tokens, alice.token, now)).toEqual({
        tokenId: alice.record.id,
        name: 'alice',
        role: 'operator',
      });
      expect(
        await verifyToken(tokens, temp.token, new Date(later.getTime() + 59_000)),
      ).toMatchObject({ name: 'ci' });
      expect(
        await verifyToken(tokens, temp.token, new Date(later.getTime() + 60_000)),
      ).toBeUndefined();
      // One character off: refused.
      expect(
        await verifyToken(
          tokens,
          `${alice.token.slice(0, -1)}${alice.token.endsWith('A') ? 'B' : 'A'}`,
          now,
        ),
      ).toBeUndefined();

      // The records round-trip exactly; the table holds the salted hash, never the secret.
      expect(await tokens.find(alice.record.id)).toEqual(alice.record);
      expect((await tokens.list()).map((r) => r.name)).toEqual(['alice', 'ci']);
      const rows = await store.db.query('SELECT * FROM auth_tokens');
      expect(JSON.stringify(rows.rows)).not.toContain(parseToken(alice.token)?.secret);

      await expect(tokens.add(alice.record)).rejects.toThrow(
        `token id ${alice.record.id} already exists`,
      );
      expect(await tokens.revoke(alice.record.id, new Date('2026-02-01T00:00:00Z'))).toBe(true);
      expect(await tokens.revoke(alice.record.id, new Date('2026-03-01T00:00:00Z'))).toBe(true);
      expect((await tokens.find(alice.record.id))?.revokedAt).toBe('2026-02-01T00:00:00.000Z'); // the first revocation stays
      expect(await verifyToken(tokens, alice.token)).toBeUndefined();
      expect(await tokens.revoke('000000000000')).toBe(false);

      // The table refuses records the code would never write.
      const bad: TokenRecord = { ...temp.record, id: 'ffffffffffff', role: 'root' as never };
      await expect(tokens.add(bad)).rejects.toThrow();
    },
  );

  it.skipIf(backend.skipReason !== undefined)(
    'is shared by server instances: a token made on one works on the other, a revocation reaches it within the cache time',
    async () => {
      const store = await backend.open();
      const sibling = await backend.openSibling(store); // a second server on the same database
      let clock = 1_000_000;
      const one = createDbTokenStore(store.db);
      const two = createDbTokenStore(sibling.db, { now: () => clock });
      const { token, record } = await createToken(one, { name: 'bob', role: 'admin' });
      expect(await verifyToken(two, token)).toMatchObject({ name: 'bob', role: 'admin' });
      await one.revoke(record.id);
      expect(await verifyToken(two, token)).toMatchObject({ name: 'bob' }); // cached for up to 1 s
      clock += 1001;
      expect(await verifyToken(two, token)).toBeUndefined();
    },
  );

  it.skipIf(backend.skipReason !== undefined)(
    'prfleet-tokens creates, lists and revokes tokens in the database',
    async () => {
      const store = await backend.open();
      // PGlite: the test's in-memory database stands in for a data directory; PostgreSQL: the real flags.
      const schema =
        backend.name === 'pg'
          ? (await store.db.query<{ s: string }>('SELECT current_schema() AS s')).rows[0]?.s
          : undefined;
      const where =
        backend.name === 'pg'
          ? ['--database-url', TEST_DATABASE_URL, '--schema', schema ?? '']
          : ['--database'];
      const open = backend.name === 'pg' ? undefined : keepOpen(store);
      const [token = ''] = await tokensTool(
        ['create', '--role', 'viewer', '--name', 'vera', ...where],
        open,
      );
      expect(token).toMatch(/^prf_[0-9a-f]{12}_/);
      const tokens = createDbTokenStore(store.db, { cacheMs: 0 });
      expect(await verifyToken(tokens, token)).toMatchObject({ name: 'vera', role: 'viewer' });

      const listed = (await tokensTool(['list', ...where], open)).map(
        (l) => JSON.parse(l) as Record<string, string>,
      );
      expect(listed).toEqual([
        expect.objectContaining({ name: 'vera', role: 'viewer', state: 'active' }),
      ]);
      expect(JSON.stringify(listed)).not.toContain(parseToken(token)?.secret);

      const id = listed[0]?.['id'] ?? '';
      expect(await tokensTool(['revoke', '--id', id, ...where], open)).toEqual([
        JSON.stringify({ id, state: 'revoked' }),
      ]);
      expect(await verifyToken(tokens, token)).toBeUndefined();
      await expect(tokensTool(['revoke', '--id', '0123456789ab', ...where], open)).rejects.toThrow(
        'no token with id 0123456789ab in',
      );
    },
  );

  it.skipIf(backend.skipReason !== undefined)(
    'serves the auth middleware once the server hands over its store',
    async () => {
      const store = await backend.open();
      const { token } = await createToken(createDbTokenStore(store.db), {
        name: 'otto',
        role: 'operator',
      });
      const auth = createStoreBoundAuth({ tokenSource: 'database' });
      const early = verifyToken(auth.tokens, token); // a call before the store is open waits for it
      auth.bind(store);
      expect(await early).toMatchObject({ name: 'otto', role: 'operator' });
      // No key registry entry: the operator is refused the key, naming it.
      const verdict = await auth.isOperatorKeyAllowed(
        { tokenId: 'x', name: 'otto', role: 'operator' },
        0x77n,
        { method: 'Reserve', purpose: 'acquire' },
      );
      expect(typeof verdict === 'object' ? verdict.reason : verdict).toContain(
        '0x0000000000000077 (Reserve): it is not in the key registry',
      );
    },
  );
});

describe('prfleet-tokens store selection', () => {
  it('refuses a token file together with database flags, and the memory store', async () => {
    await expect(tokensTool(['list', '--file', '/tmp/x.json', '--database'])).rejects.toThrow(
      'exclude each other',
    );
    const lines: string[] = [];
    const memory = createTokensProgram((l) => lines.push(l), { env: { PRFLEET_STORE: 'memory' } });
    await expect(memory.parseAsync(['list'], { from: 'user' })).rejects.toThrow(
      'PRFLEET_STORE=memory keeps no tokens',
    );
  });

  it('without a durable store, operators may use any key and database tokens are refused', () => {
    const auth = createStoreBoundAuth({ tokenSource: 'database' });
    expect(() => auth.bind(undefined)).toThrow('needs a durable store');
  });
});
