import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { INT8_OID, parseInt8, quoteSchema, type Db, type QueryResult } from './db.js';
import { StoreLockedError } from './errors.js';

/** Options for the embedded database. */
export interface PgliteDbOptions {
  /** Data directory; created when missing. Ignored with `inMemory`. */
  readonly dataDir?: string;
  /** Keep everything in memory (tests). @default false */
  readonly inMemory?: boolean;
  /** Schema to work in (search_path). @default public */
  readonly schema?: string;
}

function wrapTransaction(tx: Transaction): Db {
  const db: Db = {
    kind: 'pglite',
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await tx.query<R>(sql, params as unknown[]);
      return {
        rows: result.rows,
        rowCount: result.rowCount ?? result.affectedRows ?? result.rows.length,
      };
    },
    async exec(sql: string): Promise<void> {
      await tx.exec(sql);
    },
    transaction: (fn) => fn(db),
    close: () => Promise.reject(new Error('close the store, not a transaction')),
  };
  return db;
}

/**
 * Takes `<dataDir>.lock`, because PGlite itself lets two processes open one data directory and both would
 * write it. A lock left by a dead process on this host is taken over.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const lockPath = `${dataDir}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(JSON.stringify({ pid: process.pid, host: hostname() }));
      await handle.close();
      return () => rm(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let owner: { pid?: unknown; host?: unknown } = {};
    try {
      owner = JSON.parse(await readFile(lockPath, 'utf8')) as typeof owner;
    } catch {
      // unreadable or half-written: treat as stale below only if it stays that way
    }
    const pid = typeof owner.pid === 'number' ? owner.pid : undefined;
    if (pid !== undefined && owner.host === hostname() && pid !== process.pid && isAlive(pid)) {
      throw new StoreLockedError(
        `data directory ${dataDir} is in use by process ${pid}; stop it, or point PRFLEET_DATA_DIR elsewhere`,
      );
    }
    if (pid === process.pid) {
      throw new StoreLockedError(`data directory ${dataDir} is already open in this process`);
    }
    if (pid === undefined && attempt === 0) {
      await new Promise((resolve) => setTimeout(resolve, 100)); // another opener may be writing it right now
      continue;
    }
    await rm(lockPath, { force: true }); // stale: its process is gone (or it lives on another host's disk copy)
  }
  throw new StoreLockedError(`could not lock data directory ${dataDir} (${lockPath})`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Opens (creating when needed) the embedded PostgreSQL as a Db. Throws StoreLockedError if in use. */
export async function createPgliteDb(options: PgliteDbOptions): Promise<Db> {
  let unlock: () => Promise<void> = () => Promise.resolve();
  let dataDir: string | undefined;
  if (!options.inMemory) {
    if (options.dataDir === undefined) throw new Error('createPgliteDb needs dataDir or inMemory');
    dataDir = path.resolve(options.dataDir);
    await mkdir(path.dirname(dataDir), { recursive: true });
    unlock = await lockDataDir(dataDir);
  }
  let pglite: PGlite;
  try {
    pglite = await PGlite.create(dataDir, { parsers: { [INT8_OID]: parseInt8 } });
    if (options.schema !== undefined) {
      const schema = quoteSchema(options.schema);
      // Created here, not only by the migrations, because SET search_path must name an existing schema
      // for CREATE TABLE to land in it. One connection: no race.
      await pglite.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema};`);
    }
  } catch (error) {
    await unlock();
    throw error;
  }
  return {
    kind: 'pglite',
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await pglite.query<R>(sql, params as unknown[]);
      return {
        rows: result.rows,
        rowCount: result.rowCount ?? result.affectedRows ?? result.rows.length,
      };
    },
    async exec(sql: string): Promise<void> {
      await pglite.exec(sql);
    },
    transaction: (fn) => pglite.transaction((tx) => fn(wrapTransaction(tx))),
    async close(): Promise<void> {
      try {
        if (!pglite.closed) await pglite.close();
      } finally {
        await unlock();
      }
    },
  };
}
