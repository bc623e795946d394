import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { onTestFinished } from 'vitest';
import { openStore, type Store } from '../../src/server/store/index.js';
import { TEST_DATABASE_URL } from '../store/backends.js';

/** A store on the test PostgreSQL in a schema of its own, dropped when the test finishes. */
export async function pgStore(): Promise<Store> {
  const schema = `prfleet_adv_${process.pid}_${randomBytes(3).toString('hex')}`;
  const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
  onTestFinished(async () => {
    await store.close();
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
  });
  return store;
}
