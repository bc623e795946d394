import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { createStore, openStore, type Db, type Store } from '../../src/server/store/index.js';
import { createPgliteDb } from '../../src/server/store/pglite-db.js';

/** PostgreSQL for the store tests; override with PRFLEET_TEST_DATABASE_URL. */
export const TEST_DATABASE_URL =
  process.env['PRFLEET_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A database the store suite runs against; each `open` gives a fresh, empty schema. */
export interface Backend {
  readonly name: 'pglite' | 'pg';
  /** Why the backend is skipped, or undefined when it runs. */
  readonly skipReason: string | undefined;
  /** A new store in a new schema (dropped after the file), or in `schema` (concurrent opens race on it). */
  open(schema?: string): Promise<Store>;
  /** A second, independent connection to the same schema (for concurrency across "servers"). */
  openSibling(store: Store): Promise<Store>;
  /** A fresh schema name, unique across parallel runs. */
  newSchema(): string;
}

const runId = `${process.pid}_${randomBytes(3).toString('hex')}`;
let counter = 0;
const newSchema = () => `prfleet_t_${runId}_${++counter}`;

/**
 * Probes PostgreSQL once. Unreachable outside CI: skipped with a reason. Unreachable with CI=true: the
 * backend is returned anyway, so its tests fail loudly.
 */
export async function probePg(): Promise<string | undefined> {
  const client = new pg.Client({
    connectionString: TEST_DATABASE_URL,
    connectionTimeoutMillis: 2000,
  });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return `PostgreSQL at ${TEST_DATABASE_URL} unreachable (${(error as Error).message})`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The embedded backend: one in-memory PGlite per test file (initdb costs seconds), one schema per store. */
function pgliteBackend(): Backend {
  let shared: Promise<Db> | undefined;
  // initdb of an in-memory PGlite takes 5–35 s on a busy machine: pay it in a hook with its own budget.
  beforeAll(async () => {
    shared = createPgliteDb({ inMemory: true });
    await shared;
  }, 180_000);
  afterAll(async () => {
    if (shared) await (await shared).close();
  });
  return {
    name: 'pglite',
    skipReason: undefined,
    newSchema,
    async open(schema = newSchema()) {
      shared ??= createPgliteDb({ inMemory: true });
      const db = await shared;
      // One session, one search_path: the tests of a file run one at a time, so switching it is safe.
      await db.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}`);
      return createStore(keepOpen(db), { location: 'memory', schema });
    },
    async openSibling(store) {
      return store; // PGlite is one connection: a "second server" shares it
    },
  };
}

// The shared PGlite outlives each store; closing a store must not close it.
function keepOpen(db: Db): Db {
  return { ...db, close: () => Promise.resolve() };
}

async function pgBackend(): Promise<Backend> {
  const unreachable = await probePg();
  const inCi = process.env['CI'] === 'true';
  const skipReason = unreachable && !inCi ? unreachable : undefined;
  if (skipReason) console.warn(`store pg tests skipped: ${skipReason}`);
  const schemas = new Set<string>();
  const stores = new Set<Store>();
  afterAll(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    if (schemas.size === 0 || unreachable) return;
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } finally {
      await client.end();
    }
  });
  const openIn = async (schema: string) => {
    schemas.add(schema);
    const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
    stores.add(store);
    return store;
  };
  const schemaOf = new WeakMap<Store, string>();
  return {
    name: 'pg',
    skipReason,
    newSchema,
    async open(schema = newSchema()) {
      const store = await openIn(schema);
      schemaOf.set(store, schema);
      return store;
    },
    async openSibling(store) {
      const schema = schemaOf.get(store);
      if (!schema) throw new Error('openSibling needs a store opened by this backend');
      return openIn(schema);
    },
  };
}

/** Both backends, PGlite first. Call at the top level of a test file (uses top-level await). */
export async function storeBackends(): Promise<Backend[]> {
  return [pgliteBackend(), await pgBackend()];
}
