import * as z from '../../common/zod-mini.js';
import { nonEmpty } from '../env-schema.js';
import type { Db } from './db.js';
import { createDesiredStateStore, type DesiredStateStore } from './desired-state.js';
import { createPRoutHistory, type PRoutHistory } from './history.js';
import { createOperationJournal, type OperationJournal } from './journal.js';
import { createKeyRegistry, type KeyRegistry } from './key-registry.js';
import { migrate, MIGRATIONS } from './migrations.js';

/** Where the durable state lives. */
export interface StoreOptions {
  /** PostgreSQL URL; when set, the store uses that server. */
  readonly databaseUrl?: string;
  /** Embedded database directory, used without `databaseUrl`. @default '.prfleet/data' */
  readonly dataDir?: string;
  /** Embedded and in memory (tests); ignored with `databaseUrl`. @default false */
  readonly inMemory?: boolean;
  /** Schema to keep the tables in (created when missing). @default the connection's search_path (public) */
  readonly schema?: string;
  /** Called when an idle PostgreSQL connection fails (log it; the pool replaces the connection). */
  readonly onIdleError?: (error: Error) => void;
}

/** The durable state of a prfleet server: four sub-APIs over one database. */
export interface Store {
  /** Reservation keys: allocation, owners, revocation, decoding. */
  readonly keys: KeyRegistry;
  /** Idempotency journal of PROUT operations. */
  readonly journal: OperationJournal;
  /** Hash-chained history of every PROUT sent. */
  readonly history: PRoutHistory;
  /** Desired state per loader or group. */
  readonly desired: DesiredStateStore;
  /** The query layer underneath (for tests and admin tools). */
  readonly db: Db;
  /** Where the data is, for the startup log: `postgres://host:port/db` without credentials, or a directory. */
  readonly location: string;
  /** Schema version after migrations. */
  readonly schemaVersion: number;
  /** How long opening (connect or start, then migrate) took, in milliseconds. */
  readonly openMs: number;
  /** Closes the database; the store is unusable afterwards. */
  close(): Promise<void>;
}

/** The default embedded data directory, relative to the working directory. */
export const DEFAULT_DATA_DIR = '.prfleet/data';

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'postgres (unparsable DATABASE_URL)';
  }
}

/** Builds a Store over an open Db after migrating it; `location` is only for display. */
export async function createStore(
  db: Db,
  options: { readonly location: string; readonly schema?: string; readonly startedAt?: number },
): Promise<Store> {
  const startedAt = options.startedAt ?? performance.now();
  await migrate(db, options.schema !== undefined ? { schema: options.schema } : {});
  // migrate() leaves every migration applied, none newer (it throws otherwise): no query needed for the version.
  const version = MIGRATIONS.length;
  return {
    keys: createKeyRegistry(db),
    journal: createOperationJournal(db),
    history: createPRoutHistory(db),
    desired: createDesiredStateStore(db),
    db,
    location: options.location,
    schemaVersion: version,
    openMs: Math.round(performance.now() - startedAt),
    close: () => db.close(),
  };
}

/**
 * Opens the durable state: PostgreSQL when `databaseUrl` is set, else the embedded PGlite in `dataDir` (or in
 * memory). Migrates the schema before returning. Throws StoreLockedError when the data directory is in use,
 * MigrationError for a schema this code cannot run on, and the driver's error when the server is unreachable.
 */
export async function openStore(options: StoreOptions = {}): Promise<Store> {
  const startedAt = performance.now();
  const schema = options.schema !== undefined ? { schema: options.schema } : {};
  // Each driver loads only when used: pg and PGlite are a large part of a cold start that needs neither.
  if (options.databaseUrl) {
    const { createPgDb } = await import('./pg-db.js');
    const db = createPgDb({
      connectionString: options.databaseUrl,
      ...schema,
      ...(options.onIdleError ? { onIdleError: options.onIdleError } : {}),
    });
    try {
      return await createStore(db, {
        location: redactUrl(options.databaseUrl),
        ...schema,
        startedAt,
      });
    } catch (error) {
      await db.close();
      throw error;
    }
  }
  const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
  const { createPgliteDb } = await import('./pglite-db.js');
  const db = await createPgliteDb(
    options.inMemory ? { inMemory: true, ...schema } : { dataDir, ...schema },
  );
  try {
    return await createStore(db, {
      location: options.inMemory ? 'memory' : dataDir,
      ...schema,
      startedAt,
    });
  } catch (error) {
    await db.close();
    throw error;
  }
}

const StoreEnv = z.object({
  DATABASE_URL: z.optional(
    z
      .string()
      .check(z.regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')),
  ),
  PRFLEET_DATA_DIR: z.optional(nonEmpty()),
  PRFLEET_DB_SCHEMA: z.optional(
    z.string().check(z.regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case identifier')),
  ),
});

/**
 * Store options from the environment: DATABASE_URL (PostgreSQL), else PRFLEET_DATA_DIR (embedded, default
 * `.prfleet/data`); PRFLEET_DB_SCHEMA picks a schema. Empty values count as unset. Throws naming the variable.
 */
export function storeOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): StoreOptions {
  const present = Object.fromEntries(
    Object.entries({
      DATABASE_URL: env['DATABASE_URL'],
      PRFLEET_DATA_DIR: env['PRFLEET_DATA_DIR'],
      PRFLEET_DB_SCHEMA: env['PRFLEET_DB_SCHEMA'],
    }).filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = StoreEnv.safeParse(present);
  if (!parsed.success)
    throw new Error(`invalid store environment\n${z.prettifyError(parsed.error)}`);
  const { DATABASE_URL, PRFLEET_DATA_DIR, PRFLEET_DB_SCHEMA } = parsed.data;
  return {
    ...(DATABASE_URL !== undefined ? { databaseUrl: DATABASE_URL } : {}),
    dataDir: PRFLEET_DATA_DIR ?? DEFAULT_DATA_DIR,
    ...(PRFLEET_DB_SCHEMA !== undefined ? { schema: PRFLEET_DB_SCHEMA } : {}),
  };
}
