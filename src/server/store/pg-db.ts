import pg from 'pg';
import { INT8_OID, parseInt8, quoteSchema, type Db, type QueryResult } from './db.js';

/** Options for a PostgreSQL connection pool. */
export interface PgDbOptions {
  /** libpq connection URL, e.g. `postgres://prfleet@db:5432/prfleet`. */
  readonly connectionString: string;
  /** Schema to work in (search_path); created by the migrations. @default the server's search_path */
  readonly schema?: string;
  /** Pool size. @default 10 */
  readonly maxConnections?: number;
  /** Called when a pooled connection fails, idle or checked out (pg emits 'error'; unhandled, it would end the
   *  process). */
  readonly onIdleError?: (error: Error) => void;
}

// Per-pool parsers, so the process-wide pg.types stay untouched for other pg users.
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID
      ? parseInt8
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

function wrapClient(client: pg.PoolClient): Db {
  const db: Db = {
    kind: 'pg',
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await client.query(sql, params as unknown[]);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    },
    async exec(sql: string): Promise<void> {
      await client.query(sql); // no parameters: simple protocol, several statements allowed
    },
    transaction: (fn) => fn(db),
    close: () => Promise.reject(new Error('close the store, not a transaction')),
  };
  return db;
}

/** Opens a pg pool as a Db. Connects lazily; the first query reports an unreachable server. */
export function createPgDb(options: PgDbOptions): Db {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 10,
    types: typeParsers,
    ...(options.schema !== undefined
      ? { options: `-c search_path=${quoteSchema(options.schema)}` }
      : {}),
  });
  pool.on('error', (error) => options.onIdleError?.(error));
  // Every client keeps one 'error' listener for life. pg-pool takes its idle listener off a client when handing it
  // out, before the caller can add its own: when the client's last reply and a FATAL (pg_terminate_backend) come
  // in one TCP read, the reply hands the client to a waiting checkout and the FATAL is emitted in the same parse,
  // with no listener, which ends the process (seen under load in test/faults). The next query on that client fails
  // and the pool drops it; the transaction's own listener below reports what happens while it holds it.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  return {
    kind: 'pg',
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await pool.query(sql, params as unknown[]);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    },
    async exec(sql: string): Promise<void> {
      await pool.query(sql);
    },
    async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      // A checked-out client is not covered by the pool's 'error' listener: when its connection is terminated
      // (database restart, failover, pg_terminate_backend) pg emits 'error' on the client, which would end the
      // process. The failed query rejects on its own; this only keeps the event from being unhandled and makes
      // sure the broken connection leaves the pool.
      let broken: Error | undefined;
      const onError = (error: Error) => {
        broken = error;
        options.onIdleError?.(error);
      };
      client.on('error', onError);
      const release = (error?: Error) => {
        client.off('error', onError);
        client.release(error ?? broken);
      };
      let result: T;
      try {
        await client.query('BEGIN');
        result = await fn(wrapClient(client));
        await client.query('COMMIT');
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          release(rollbackError as Error); // a broken connection leaves the pool
          throw error;
        }
        release();
        throw error;
      }
      release();
      return result;
    },
    close: () => pool.end(),
  };
}
