import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { onTestFinished } from 'vitest';
import { openStore, type Store } from '../../src/server/store/index.js';
import { TEST_DATABASE_URL } from '../store/backends.js';

/** A store on the test PostgreSQL in a schema of its own (`prfleet_<prefix>_…`), dropped when the test finishes. */
export async function pgStore(prefix = 'test'): Promise<Store> {
  const schema = `prfleet_${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`;
  const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
  onTestFinished(async () => {
    await store.close();
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
  });
  return store;
}
