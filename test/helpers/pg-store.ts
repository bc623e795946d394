import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { onTestFinished } from 'vitest';
import { openStore, type Store } from '../../src/server/store/index.js';
import { TEST_DATABASE_URL } from '../store/backends.js';

/** A store on the test PostgreSQL in a schema of its own (`prfleet_<prefix>_…`), dropped when the test finishes. */
export async function pgStore(prefix = 'test'): Promise<Store> {
  return (await pgStoreWithSchema(prefix)).store;
}

/** {@link pgStore} and the name of its schema (for a test that changes the database under the store). */
export async function pgStoreWithSchema(
  prefix = 'test',
): Promise<{ store: Store; schema: string }> {
  const schema = `prfleet_${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`;
  const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
  onTestFinished(async () => {
    await store.close();
    await adminQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });
  return { store, schema };
}

/** Runs `sql` on the test PostgreSQL over a connection of its own. */
export async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  await client.query(sql).finally(() => client.end());
}
