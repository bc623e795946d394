import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_DATA_DIR,
  StoreLockedError,
  openStore,
  storeOptionsFromEnv,
} from '../../src/server/store/index.js';
import { TEST_DATABASE_URL } from './backends.js';

const scratch = await mkdtemp(path.join(tmpdir(), 'prfleet-store-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));
// Shared by the tests below (they run in order): creating a data directory costs an initdb.
const dataDir = path.join(scratch, 'nested', 'data');

describe('embedded data directory', () => {
  it('creates the directory, keeps data across a reopen, and refuses a second opener while open', async () => {
    const first = await openStore({ dataDir });
    const key = await first.keys.allocate({
      site: 'lab',
      agentId: 'host-a',
      purpose: 'backup',
      owner: 'o',
    });
    await first.history.append({
      actor: 'a',
      agentId: 'host-a',
      path: '/dev/sg1',
      luId: 'lu',
      action: 'register',
      reservationKey: 0n,
      serviceActionKey: key.key,
      outcome: 'OUTCOME_GOOD',
    });
    await expect(openStore({ dataDir })).rejects.toThrowError(
      new StoreLockedError(`data directory ${dataDir} is already open in this process`),
    );
    await first.close();

    const reopened = await openStore({ dataDir });
    expect(await reopened.keys.get(key.key)).toMatchObject({ agentId: 'host-a', owner: 'o' });
    expect(await reopened.history.verify()).toMatchObject({ ok: true, count: 1 });
    expect(reopened.schemaVersion).toBe(first.schemaVersion);
    console.log(
      `store open times: PGlite first open ${first.openMs} ms, reopen ${reopened.openMs} ms (${dataDir})`,
    );
    await reopened.close();
  }, 180_000);

  it('refuses a directory held by a live process and takes over a lock left by a dead one', async () => {
    // pid 1 is alive on every Linux host: a live holder.
    await writeFile(`${dataDir}.lock`, JSON.stringify({ pid: 1, host: hostname() }));
    await expect(openStore({ dataDir })).rejects.toThrowError(
      /is in use by process 1; stop it, or point PRFLEET_DATA_DIR elsewhere/,
    );
    // A pid beyond pid_max (2^22 on Linux) cannot be running: a stale lock.
    await writeFile(`${dataDir}.lock`, JSON.stringify({ pid: 2 ** 22 + 7, host: hostname() }));
    const store = await openStore({ dataDir });
    expect(store.location).toBe(dataDir);
    expect(await store.keys.list()).toHaveLength(1);
    await store.close();
  }, 180_000);
});

describe('PostgreSQL', () => {
  it('opens over DATABASE_URL and shows the location without credentials', async (ctx) => {
    const client = new pg.Client({
      connectionString: TEST_DATABASE_URL,
      connectionTimeoutMillis: 2000,
    });
    const reachable = await client.connect().then(
      () => true,
      () => false,
    );
    await client.end().catch(() => undefined);
    if (!reachable && process.env['CI'] !== 'true')
      ctx.skip(`PostgreSQL at ${TEST_DATABASE_URL} unreachable`);
    const schema = `prfleet_open_${process.pid}`;
    const url = new URL(TEST_DATABASE_URL);
    url.password = 'not-shown';
    try {
      const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
      const again = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
      expect(store.location).toBe(`postgres://${url.host}${url.pathname}`);
      console.log(`store open times: pg first open ${store.openMs} ms, reopen ${again.openMs} ms`);
      await store.close();
      await again.close();
    } finally {
      const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    }
  });

  it('rejects with the driver error when the server is unreachable', async () => {
    await expect(
      openStore({ databaseUrl: 'postgres://nobody@127.0.0.1:1/none' }),
    ).rejects.toThrowError(/ECONNREFUSED/);
  });
});

describe('storeOptionsFromEnv', () => {
  it('chooses PostgreSQL when DATABASE_URL is set, else the embedded default directory', () => {
    expect(storeOptionsFromEnv({})).toEqual({ dataDir: DEFAULT_DATA_DIR });
    expect(storeOptionsFromEnv({ DATABASE_URL: '', PRFLEET_DATA_DIR: '/var/lib/prfleet' })).toEqual(
      { dataDir: '/var/lib/prfleet' },
    );
    expect(
      storeOptionsFromEnv({ DATABASE_URL: 'postgres://db/prfleet', PRFLEET_DB_SCHEMA: 'fleet' }),
    ).toEqual({
      databaseUrl: 'postgres://db/prfleet',
      dataDir: DEFAULT_DATA_DIR,
      schema: 'fleet',
    });
  });

  it('names the variable at fault', () => {
    expect(() => storeOptionsFromEnv({ DATABASE_URL: 'mysql://db' })).toThrowError(
      /must start with postgres:\/\/[\s\S]*DATABASE_URL/,
    );
    expect(() => storeOptionsFromEnv({ PRFLEET_DB_SCHEMA: 'Bad-Name' })).toThrowError(
      /PRFLEET_DB_SCHEMA/,
    );
  });
});
