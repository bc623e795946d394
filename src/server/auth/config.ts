import * as z from '../../common/zod-mini.js';
import { booleanFlag, envInt, nonEmpty } from '../env-schema.js';
import { storeConfigFromEnv } from '../config.js';
import { loadTlsMaterial, type ServerCredentialsOptions } from './mtls.js';

const SecurityEnv = z.object({
  PRFLEET_TLS_CERT: z.optional(nonEmpty()),
  PRFLEET_TLS_KEY: z.optional(nonEmpty()),
  PRFLEET_TLS_CA: z.optional(nonEmpty()),
  PRFLEET_CLIENT_CERTS: z.optional(z.enum(['require', 'optional'])),
  PRFLEET_TLS_REVOKED: z.optional(nonEmpty()),
  PRFLEET_TLS_REVOKED_POLL_MS: envInt(10, 3_600_000, 2_000),
  PRFLEET_PLAINTEXT: z._default(booleanFlag, false),
  PRFLEET_TOKENS_FILE: z.optional(nonEmpty()),
  PRFLEET_TOKENS: z.pipe(
    z.transform((v) => (v === '' ? undefined : v)),
    z.optional(z.enum(['database', 'file', 'off'])),
  ),
});

/** Where ControlService/FleetService bearer tokens are looked up. */
export type TokenSource = 'database' | 'file';

/** How the server authenticates: transport credentials, agent certificates, client tokens. */
export interface SecurityConfig {
  /** For serverCredentials(): TLS material read from the files, or plaintext when explicitly asked for. */
  readonly credentials: ServerCredentialsOptions;
  /** Agents must present a CA-signed certificate naming their id (true whenever TLS is on). */
  readonly requireAgentCertificate: boolean;
  /**
   * Where client tokens live: the durable store's `auth_tokens` table (shared by every instance on one
   * database) or {@link tokensFile}; absent = no client authentication (plaintext dev only).
   */
  readonly tokenSource?: TokenSource;
  /** Token file, when {@link tokenSource} is 'file'. */
  readonly tokensFile?: string;
  /** Revoked client certificates, one SHA-256 fingerprint a line (auth/revocation.ts); TLS only. */
  readonly revokedFile?: string;
  /** How often {@link revokedFile} is checked for changes, ms (PRFLEET_TLS_REVOKED_POLL_MS). @default 2000 */
  readonly revocationPollMs?: number;
}

/**
 * PRFLEET_TOKENS, or the automatic choice when it is unset: PRFLEET_TOKENS_FILE set → that file; else a server
 * with a durable store (PGlite or PostgreSQL) serving TLS → the database; else none (plaintext without a token
 * file: tests, the demo, loopback). Throws naming the variables when an explicit choice cannot work.
 */
function tokenSourceOf(
  e: {
    PRFLEET_TOKENS?: 'database' | 'file' | 'off' | undefined;
    PRFLEET_TOKENS_FILE?: string | undefined;
    PRFLEET_PLAINTEXT: boolean;
  },
  env: NodeJS.ProcessEnv,
): TokenSource | undefined {
  const durable = storeConfigFromEnv(env).kind !== 'memory';
  switch (e.PRFLEET_TOKENS) {
    case 'off':
      return undefined;
    case 'file':
      if (e.PRFLEET_TOKENS_FILE === undefined)
        throw new Error(
          'PRFLEET_TOKENS=file needs PRFLEET_TOKENS_FILE (the token file prfleet-tokens writes)',
        );
      return 'file';
    case 'database':
      if (!durable)
        throw new Error(
          'PRFLEET_TOKENS=database needs a durable store (DATABASE_URL or PGlite), not PRFLEET_STORE=memory',
        );
      return 'database';
    case undefined:
      if (e.PRFLEET_TOKENS_FILE !== undefined) return 'file';
      return durable && !e.PRFLEET_PLAINTEXT ? 'database' : undefined;
  }
}

/**
 * Parses PRFLEET_TLS_CERT/KEY/CA (PEM files), PRFLEET_CLIENT_CERTS (require | optional; default optional when
 * client tokens are on, since token clients then share the port, else require), PRFLEET_PLAINTEXT,
 * PRFLEET_TOKENS (database | file | off; see {@link tokenSourceOf} for the default), PRFLEET_TOKENS_FILE and
 * PRFLEET_TLS_REVOKED (revoked client certificates; TLS only).
 * Throws naming the variable: TLS files must come together, and without them the server refuses to start
 * unless PRFLEET_PLAINTEXT=true. TLS without client tokens is refused too when client certificates are
 * optional (control clients would be unauthenticated).
 */
export function loadSecurityConfig(env: NodeJS.ProcessEnv = process.env): SecurityConfig {
  const parsed = SecurityEnv.safeParse(env);
  if (!parsed.success)
    throw new Error(`invalid security environment\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  const files = {
    PRFLEET_TLS_CERT: e.PRFLEET_TLS_CERT,
    PRFLEET_TLS_KEY: e.PRFLEET_TLS_KEY,
    PRFLEET_TLS_CA: e.PRFLEET_TLS_CA,
  };
  const given = Object.entries(files).filter(([, v]) => v !== undefined);
  const tokenSource = tokenSourceOf(e, env);
  const tokens =
    tokenSource === undefined
      ? {}
      : tokenSource === 'file'
        ? { tokenSource, tokensFile: e.PRFLEET_TOKENS_FILE as string }
        : { tokenSource };
  if (given.length === 0) {
    if (e.PRFLEET_TLS_REVOKED !== undefined) {
      throw new Error(
        'PRFLEET_TLS_REVOKED needs TLS (PRFLEET_TLS_CERT, PRFLEET_TLS_KEY, PRFLEET_TLS_CA): without TLS there are no client certificates to revoke',
      );
    }
    if (!e.PRFLEET_PLAINTEXT) {
      throw new Error(
        'no TLS configured: set PRFLEET_TLS_CERT, PRFLEET_TLS_KEY and PRFLEET_TLS_CA, or PRFLEET_PLAINTEXT=true (tests, loopback, behind a TLS-terminating proxy)',
      );
    }
    return { credentials: { plaintext: true }, requireAgentCertificate: false, ...tokens };
  }
  if (given.length < 3) {
    const missing = Object.entries(files)
      .filter(([, v]) => v === undefined)
      .map(([k]) => k);
    throw new Error(`incomplete TLS configuration: ${missing.join(' and ')} not set`);
  }
  if (e.PRFLEET_PLAINTEXT)
    throw new Error('PRFLEET_PLAINTEXT=true conflicts with PRFLEET_TLS_*: choose one');
  const clientCerts =
    e.PRFLEET_CLIENT_CERTS ?? (tokenSource === undefined ? 'require' : 'optional');
  if (clientCerts === 'optional' && tokenSource === undefined) {
    throw new Error(
      'PRFLEET_CLIENT_CERTS=optional needs client tokens (PRFLEET_TOKENS_FILE, or a durable store with PRFLEET_TOKENS unset or database): control clients without certificates must present tokens',
    );
  }
  return {
    credentials: {
      tls: loadTlsMaterial({
        certFile: e.PRFLEET_TLS_CERT as string,
        keyFile: e.PRFLEET_TLS_KEY as string,
        caFile: e.PRFLEET_TLS_CA as string,
        clientCerts,
      }),
    },
    requireAgentCertificate: true,
    ...tokens,
    ...(e.PRFLEET_TLS_REVOKED === undefined
      ? {}
      : { revokedFile: e.PRFLEET_TLS_REVOKED, revocationPollMs: e.PRFLEET_TLS_REVOKED_POLL_MS }),
  };
}
