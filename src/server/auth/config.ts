import { z } from 'zod';
import { loadTlsMaterial, type ServerCredentialsOptions } from './mtls.js';

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const SecurityEnv = z.object({
  PRFLEET_TLS_CERT: z.string().min(1).optional(),
  PRFLEET_TLS_KEY: z.string().min(1).optional(),
  PRFLEET_TLS_CA: z.string().min(1).optional(),
  PRFLEET_CLIENT_CERTS: z.enum(['require', 'optional']).optional(),
  PRFLEET_PLAINTEXT: booleanFlag.default(false),
  PRFLEET_TOKENS_FILE: z.string().min(1).optional(),
});

/** How the server authenticates: transport credentials, agent certificates, client tokens. */
export interface SecurityConfig {
  /** For serverCredentials(): TLS material read from the files, or plaintext when explicitly asked for. */
  readonly credentials: ServerCredentialsOptions;
  /** Agents must present a CA-signed certificate naming their id (true whenever TLS is on). */
  readonly requireAgentCertificate: boolean;
  /** Token file for ControlService bearer tokens; absent = no client authentication (plaintext dev only). */
  readonly tokensFile?: string;
}

/**
 * Parses PRFLEET_TLS_CERT/KEY/CA (PEM files), PRFLEET_CLIENT_CERTS (require | optional; default optional when
 * PRFLEET_TOKENS_FILE is set, since token clients then share the port, else require), PRFLEET_PLAINTEXT and
 * PRFLEET_TOKENS_FILE. Throws naming the variable: TLS files must come together, and without them the server
 * refuses to start unless PRFLEET_PLAINTEXT=true. TLS without PRFLEET_TOKENS_FILE is refused too when client
 * certificates are optional (control clients would be unauthenticated).
 */
export function loadSecurityConfig(env: NodeJS.ProcessEnv = process.env): SecurityConfig {
  const parsed = SecurityEnv.safeParse(env);
  if (!parsed.success) throw new Error(`invalid security environment\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  const files = { PRFLEET_TLS_CERT: e.PRFLEET_TLS_CERT, PRFLEET_TLS_KEY: e.PRFLEET_TLS_KEY, PRFLEET_TLS_CA: e.PRFLEET_TLS_CA };
  const given = Object.entries(files).filter(([, v]) => v !== undefined);
  const tokens = e.PRFLEET_TOKENS_FILE === undefined ? {} : { tokensFile: e.PRFLEET_TOKENS_FILE };
  if (given.length === 0) {
    if (!e.PRFLEET_PLAINTEXT) {
      throw new Error(
        'no TLS configured: set PRFLEET_TLS_CERT, PRFLEET_TLS_KEY and PRFLEET_TLS_CA, or PRFLEET_PLAINTEXT=true (tests, loopback, behind a TLS-terminating proxy)',
      );
    }
    return { credentials: { plaintext: true }, requireAgentCertificate: false, ...tokens };
  }
  if (given.length < 3) {
    const missing = Object.entries(files).filter(([, v]) => v === undefined).map(([k]) => k);
    throw new Error(`incomplete TLS configuration: ${missing.join(' and ')} not set`);
  }
  if (e.PRFLEET_PLAINTEXT) throw new Error('PRFLEET_PLAINTEXT=true conflicts with PRFLEET_TLS_*: choose one');
  const clientCerts = e.PRFLEET_CLIENT_CERTS ?? (e.PRFLEET_TOKENS_FILE === undefined ? 'require' : 'optional');
  if (clientCerts === 'optional' && e.PRFLEET_TOKENS_FILE === undefined) {
    throw new Error('PRFLEET_CLIENT_CERTS=optional needs PRFLEET_TOKENS_FILE: control clients without certificates must present tokens');
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
  };
}
