/** The tiny query layer shared by both drivers: PostgreSQL through `pg`, and embedded PGlite. */

/** Rows of one statement. */
export interface QueryResult<R> {
  /** The rows returned (empty for statements without RETURNING). */
  readonly rows: R[];
  /** Rows returned or changed, as the command tag reports it. */
  readonly rowCount: number;
}

/**
 * One database, or one transaction on it. SQL is PostgreSQL with `$1` parameters; both drivers get the same
 * text. Values come back alike from both: int8 as a safe-integer number (throws beyond 2^53), timestamptz as
 * Date, jsonb parsed, text as string. Pass JSON as a string and cast with `$1::text::jsonb`, because the
 * drivers serialise objects differently.
 */
export interface Db {
  /** Which driver is underneath. */
  readonly kind: 'pg' | 'pglite';
  /** Runs one statement with parameters. */
  query<R = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Runs `fn` in a transaction: COMMIT when it resolves, ROLLBACK when it throws (the error passes through).
   * Inside, use only the `tx` handed to `fn`; a nested `tx.transaction` joins the outer one.
   */
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  /** Closes the pool or the embedded database. */
  close(): Promise<void>;
}

/** PostgreSQL int8 type oid (pg_type.dat). */
export const INT8_OID = 20;

/** Parses an int8 column as a number, refusing values a double cannot hold exactly. */
export function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n))
    throw new RangeError(`int8 value ${text} is beyond Number.MAX_SAFE_INTEGER`);
  return n;
}

/** True for a PostgreSQL unique_violation (SQLSTATE 23505) from either driver. */
export function isUniqueViolation(error: unknown): boolean {
  return (
    typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505'
  );
}

/** Quotes a validated schema name; throws for anything but a plain lower-case identifier. */
export function quoteSchema(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new Error(
      `invalid schema: ${JSON.stringify(schema)} is not a lower-case identifier of at most 63 characters`,
    );
  }
  return `"${schema}"`;
}
