import { existsSync, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { INT8_OID, parseInt8, quoteSchema, type Db, type QueryResult } from './db.js';
import { PG_VERSION, UNPACKING, unpackDataDirTemplate } from './data-dir-template.js';
import { StoreLockedError } from './errors.js';

/** Options for the embedded database. */
export interface PgliteDbOptions {
  /** Data directory; created when missing. Ignored with `inMemory`. */
  readonly dataDir?: string;
  /** Keep everything in memory (tests). @default false */
  readonly inMemory?: boolean;
  /** Schema to work in (search_path). @default public */
  readonly schema?: string;
  /**
   * Where to look for the initialised data directory a new one is unpacked from ({@link pgliteTemplateName}).
   * @default this module's directory (scripts/bundle.mjs puts it beside the bundle's and the tsc output's)
   */
  readonly templateDir?: string;
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

/**
 * Takes group and world permissions off `dir` and everything in it (PGlite creates its files 0666 less the umask:
 * with umask 000 any local user could rewrite pg_control or the WAL). Symbolic links are left alone, not followed.
 * Returns how many entries had to be changed.
 */
export async function restrictDataDir(dir: string): Promise<number> {
  let changed = 0;
  const visit = async (entry: string): Promise<void> => {
    const stat = await lstat(entry);
    if (stat.isSymbolicLink()) return;
    if ((stat.mode & 0o077) !== 0) {
      await chmod(entry, stat.mode & 0o700);
      changed += 1;
    }
    if (stat.isDirectory())
      for (const name of await readdir(entry)) await visit(path.join(entry, name));
  };
  await visit(dir);
  return changed;
}

/**
 * Creates the data directory 0700, or makes an existing one so (and everything in it owner-only), whatever the
 * umask. Refuses a directory owned by another user: its owner could change it back.
 */
async function prepareDataDir(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const stat = await lstat(dataDir);
  if (!stat.isDirectory()) throw new Error(`data directory ${dataDir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw new Error(
      `data directory ${dataDir} belongs to uid ${stat.uid}, not to this process (uid ${uid}): give it to the server's user, or point PRFLEET_DATA_DIR elsewhere`,
    );
  }
  await restrictDataDir(dataDir);
}

/**
 * Runs `fn` with the process umask at 077 where the process may set it (not in worker threads), so that files
 * PGlite creates meanwhile are owner-only from the start; the data directory's own mode (0700) keeps files
 * created later out of reach, and {@link restrictDataDir} runs again when the store closes.
 */
async function withPrivateUmask<T>(fn: () => Promise<T>): Promise<T> {
  let previous: number | undefined;
  try {
    previous = process.umask(0o077);
  } catch {
    previous = undefined; // worker thread: the chmod passes alone do the work
  }
  try {
    return await fn();
  } finally {
    if (previous !== undefined) process.umask(previous);
  }
}

/** The file name of the initialised data directory scripts/bundle.mjs ships for the installed PGlite. */
export function pgliteTemplateName(): string {
  const require = createRequire(import.meta.url);
  const manifest = path.join(
    path.dirname(require.resolve('@electric-sql/pglite')),
    '..',
    'package.json',
  );
  const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
  return `pglite-template-${version}.tar.gz`;
}

/**
 * The initialised data directory (a PGlite dump, made by scripts/bundle.mjs next to the bundled store module) for
 * the PGlite version installed, if there is one: a new data directory is unpacked from it instead of running
 * initdb (seconds of WebAssembly). A dump of another PGlite version is not used: its PostgreSQL may not read it.
 */
function dataDirTemplate(dir = path.dirname(fileURLToPath(import.meta.url))): string | undefined {
  const template = path.join(dir, pgliteTemplateName());
  return existsSync(template) ? template : undefined;
}

/**
 * True when `dataDir` is to be created: missing, empty, or unpacked only partly by a start cut off (it holds
 * UNPACKING). A non-empty directory without PG_VERSION is somebody else's (a mistyped PRFLEET_DATA_DIR): refused
 * before anything in it is written or its modes changed.
 */
async function isNewDataDir(dataDir: string): Promise<boolean> {
  if (existsSync(path.join(dataDir, PG_VERSION))) return false;
  let names: string[];
  try {
    names = await readdir(dataDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
  if (names.length === 0 || names.includes(UNPACKING)) return true;
  throw new Error(
    `data directory ${dataDir} is not empty and holds no database (no ${PG_VERSION}): point PRFLEET_DATA_DIR at an empty or new directory, or at one this server made`,
  );
}

/**
 * PostgreSQL's settings for the embedded database: PGlite's own, with 16 MB of shared buffers instead of initdb's
 * 128 MB. PostgreSQL zeroes them at every start (in WebAssembly: a sixth of a reopen) and they stay resident;
 * prfleet's tables are a few megabytes, and a page not in them is read through the OS's page cache.
 */
const START_PARAMS = [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB'];

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
    if (dataDir !== undefined) {
      const template = (await isNewDataDir(dataDir))
        ? dataDirTemplate(options.templateDir)
        : undefined;
      await prepareDataDir(dataDir);
      if (template !== undefined) await unpackDataDirTemplate(template, dataDir);
    }
    pglite = await withPrivateUmask(() =>
      PGlite.create(dataDir, { parsers: { [INT8_OID]: parseInt8 }, startParams: START_PARAMS }),
    );
    if (dataDir !== undefined) await restrictDataDir(dataDir);
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
        if (dataDir !== undefined) await restrictDataDir(dataDir);
      } finally {
        await unlock();
      }
    },
  };
}
