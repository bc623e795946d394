/**
 * How the CLI reaches the server: address, TLS or (only when asked) plaintext, client certificate, bearer token.
 * `resolveConnection` turns flags and environment into {@link ConnectionSettings}, reading and checking every
 * file up front so a bad CA, certificate, key or token file is a usage error naming the file, not a handshake
 * failure later.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';

/** The transport flags of the program (all optional; absent = not given on the command line). */
export interface TransportFlags {
  /** `--plaintext`: h2c without TLS. */
  readonly plaintext?: boolean;
  /** `--tls`: TLS with the system's trusted roots unless `--ca` names a CA. */
  readonly tls?: boolean;
  /** `--ca <file>`: PEM CA certificate(s) to trust instead of the system roots. */
  readonly ca?: string;
  /** `--tls-cert <file>`: PEM client certificate (mutual TLS; optional). */
  readonly cert?: string;
  /** `--tls-key <file>`: PEM private key of `--tls-cert`. */
  readonly key?: string;
  /** `--tls-server-name <name>`: name to check the server certificate against (default: the host dialled). */
  readonly tlsServerName?: string;
  /** `--token <token>`: bearer token (visible in `ps`; prefer `--token-file` or PRFLEET_TOKEN). */
  readonly token?: string;
  /** `--token-file <file>`: file holding the bearer token. */
  readonly tokenFile?: string;
}

/** Environment variables the CLI reads for its connection (flags win over them). */
export const CONNECTION_ENV = {
  plaintext: 'PRFLEET_PLAINTEXT',
  tls: 'PRFLEET_TLS',
  ca: 'PRFLEET_TLS_CA',
  cert: 'PRFLEET_TLS_CERT',
  key: 'PRFLEET_TLS_KEY',
  tlsServerName: 'PRFLEET_TLS_SERVER_NAME',
  token: 'PRFLEET_TOKEN',
  tokenFile: 'PRFLEET_TOKEN_FILE',
} as const;

/** TLS material, read and checked. */
export interface TlsSettings {
  /** CA certificates to trust (PEM); absent = the system's roots. */
  readonly ca?: Buffer;
  /** Where {@link ca} came from, for hints. */
  readonly caSource?: string;
  /** Client certificate chain (PEM). */
  readonly cert?: Buffer;
  /** Its private key (PEM). */
  readonly key?: Buffer;
  /** Name to verify the server certificate against. */
  readonly serverName?: string;
}

/** Everything needed to open the connection. */
export interface ConnectionSettings {
  /** `host:port` to dial. */
  readonly address: string;
  /** TLS material, or false for plaintext h2c. */
  readonly tls: TlsSettings | false;
  /** Bearer token sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string;
  /** Where the token came from (`--token-file /x`, `PRFLEET_TOKEN`), for hints; never the token. */
  readonly tokenSource?: string;
  /** Things the user should know (e.g. a token sent without TLS); print them on stderr. */
  readonly warnings: readonly string[];
}

/** A connection setting that cannot work (bad flag combination, unreadable or malformed file): exit 1. */
export class ConnectionConfigError extends Error {
  override readonly name = 'ConnectionConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

function envValue(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value;
}

function envFlag(env: Env, name: string): boolean {
  const value = envValue(env, name);
  if (value === undefined) return false;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConnectionConfigError(`${name}=${value}: expected true or false`);
}

/**
 * Usage error for a port that is not 1–65535 in `host:port` / `[v6]:port` (grpc-js would otherwise fail later with
 * a resolver trace). A bare IPv6 address or a host without a port is left to the resolver.
 */
function checkPort(server: string, address: string): void {
  const port =
    /^\[[^\]]*\](?::(.*))?$/.exec(address)?.[1] ?? /^[^:[\]]*:([^:]*)$/.exec(address)?.[1];
  if (port === undefined) return;
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new ConnectionConfigError(
      `--server ${server}: port ${JSON.stringify(port)} is not a number from 1 to 65535`,
    );
  }
}

/** Splits `https://host[:port]`, `http://host[:port]` or `host:port` into the address to dial and the scheme's wish. */
export function parseServerAddress(server: string): { address: string; scheme?: 'https' | 'http' } {
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(server.trim());
  if (match === null) {
    if (server.trim() === '') throw new ConnectionConfigError('--server is empty');
    checkPort(server, server.trim());
    return { address: server.trim() };
  }
  const scheme = (match[1] ?? '').toLowerCase();
  if (scheme !== 'https' && scheme !== 'http') {
    throw new ConnectionConfigError(
      `--server ${server}: unknown scheme ${scheme}:// (use host:port, https:// or http://)`,
    );
  }
  const rest = (match[2] ?? '').replace(/\/+$/, '');
  if (rest === '' || rest.includes('/')) {
    throw new ConnectionConfigError(
      `--server ${server}: expected ${scheme}://host[:port] without a path`,
    );
  }
  checkPort(server, rest);
  const hasPort = /^\[[^\]]+\]:\d+$/.test(rest) || /^[^:[\]]+:\d+$/.test(rest);
  return { address: hasPort ? rest : `${rest}:${scheme === 'https' ? 443 : 80}`, scheme };
}

/** The host part of `host:port` / `[v6]:port`. */
export function hostOf(address: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (v6 !== null) return v6[1] ?? address;
  const colon = address.lastIndexOf(':');
  return colon < 0 ? address : address.slice(0, colon);
}

/** True for loopback hosts (localhost, 127.0.0.0/8, ::1): plaintext there does not cross a network. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

function readPem(file: string, what: string, read: (file: string) => Buffer): Buffer {
  try {
    return read(file);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConnectionConfigError(`cannot read ${what} ${file}: ${reason}`, { cause: error });
  }
}

function checkCertificates(pem: Buffer, file: string, what: string): X509Certificate[] {
  const blocks =
    pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ??
    [];
  if (blocks.length === 0)
    throw new ConnectionConfigError(
      `${what} ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
    );
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new ConnectionConfigError(
        `${what} ${file} holds a certificate that cannot be parsed: ${(error as Error).message}`,
        { cause: error },
      );
    }
  });
}

function readToken(file: string, read: (file: string) => Buffer): string {
  const text = readPem(file, 'token file', read).toString('utf8').trim();
  if (text === '') throw new ConnectionConfigError(`token file ${file} is empty`);
  if (text.startsWith('{')) {
    throw new ConnectionConfigError(
      `token file ${file} looks like the server's token hash file (PRFLEET_TOKENS_FILE), not a token: put the prf_… token that prfleet-tokens create printed into a file of its own`,
    );
  }
  if (/\s/.test(text))
    throw new ConnectionConfigError(
      `token file ${file} must hold exactly one token (found whitespace inside)`,
    );
  return text;
}

/** A warning when a token file can be read by other users (as ssh does for private keys). */
function tokenFileWarnings(file: string, modeOf: (file: string) => number | undefined): string[] {
  const mode = modeOf(file);
  if (mode === undefined || process.platform === 'win32' || (mode & 0o077) === 0) return [];
  const octal = (mode & 0o777).toString(8).padStart(3, '0');
  return [`token file ${file} can be read by other users (mode ${octal}): chmod 600 ${file}`];
}

type Read = (file: string) => Buffer;
type ModeOf = (file: string) => number | undefined;

/** Whether to connect without TLS: the command line first, then the environment; contradictions are errors. */
function wantsPlaintext(flags: TransportFlags, scheme: 'https' | 'http' | undefined, env: Env) {
  const cliTls = [
    flags.tls === true && '--tls',
    flags.ca !== undefined && '--ca',
    flags.cert !== undefined && '--tls-cert',
    flags.key !== undefined && '--tls-key',
    flags.tlsServerName !== undefined && '--tls-server-name',
    scheme === 'https' && 'https://',
  ].filter((x): x is string => typeof x === 'string');
  const cliPlain = [
    flags.plaintext === true && '--plaintext',
    scheme === 'http' && 'http://',
  ].filter((x): x is string => typeof x === 'string');
  if (cliTls.length > 0 && cliPlain.length > 0) {
    throw new ConnectionConfigError(
      `${cliPlain.join(' and ')} excludes ${cliTls.join(', ')}: choose TLS or plaintext`,
    );
  }
  const envTlsNames = (['tls', 'ca', 'cert', 'key', 'tlsServerName'] as const)
    .filter((k) =>
      k === 'tls'
        ? envFlag(env, CONNECTION_ENV.tls)
        : envValue(env, CONNECTION_ENV[k]) !== undefined,
    )
    .map((k) => CONNECTION_ENV[k]);
  const envPlain = envFlag(env, CONNECTION_ENV.plaintext);
  if (cliPlain.length > 0) return true;
  if (cliTls.length > 0) return false;
  if (envPlain && envTlsNames.length > 0) {
    throw new ConnectionConfigError(
      `${CONNECTION_ENV.plaintext}=true excludes ${envTlsNames.join(', ')}: choose TLS or plaintext`,
    );
  }
  return envPlain;
}

/** Reads a client certificate and its key, checking that they are PEM and belong together. */
function readClientPair(certFile: string, keyFile: string, read: Read) {
  const cert = readPem(certFile, 'client certificate', read);
  const key = readPem(keyFile, 'client key', read);
  const [leaf] = checkCertificates(cert, certFile, 'client certificate');
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new ConnectionConfigError(
      `client key ${keyFile} is not a PEM private key: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (leaf !== undefined && !leaf.checkPrivateKey(privateKey)) {
    throw new ConnectionConfigError(
      `client certificate ${certFile} and key ${keyFile} do not belong together`,
    );
  }
  return { cert, key };
}

/** The TLS material: files from the command line win, the environment fills in what it left out. */
function resolveTls(flags: TransportFlags, env: Env, read: Read): TlsSettings {
  const caFile = flags.ca ?? envValue(env, CONNECTION_ENV.ca);
  // A client certificate or key named on the command line: both must come from it.
  const cliPair = flags.cert !== undefined || flags.key !== undefined;
  const certFile = cliPair ? flags.cert : envValue(env, CONNECTION_ENV.cert);
  const keyFile = cliPair ? flags.key : envValue(env, CONNECTION_ENV.key);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const [given, missing] =
      certFile === undefined ? ['--tls-key', '--tls-cert'] : ['--tls-cert', '--tls-key'];
    throw new ConnectionConfigError(
      `${given} needs ${missing}: a client certificate goes with its private key`,
    );
  }
  const serverName = flags.tlsServerName ?? envValue(env, CONNECTION_ENV.tlsServerName);
  let ca: Buffer | undefined;
  if (caFile !== undefined) {
    ca = readPem(caFile, 'CA file', read);
    checkCertificates(ca, caFile, 'CA file');
  }
  const pair =
    certFile !== undefined && keyFile !== undefined
      ? readClientPair(certFile, keyFile, read)
      : undefined;
  return {
    ...(ca === undefined
      ? {}
      : {
          ca,
          caSource: flags.ca !== undefined ? `--ca ${caFile}` : `${CONNECTION_ENV.ca}=${caFile}`,
        }),
    ...(pair ?? {}),
    ...(serverName === undefined ? {} : { serverName }),
  };
}

/** A token and where it came from (a file's warnings added to `warnings`). */
interface FoundToken {
  readonly token: string;
  readonly tokenSource: string;
}

/** The bearer token: flags first, then the environment; two sources at one level are an error. */
function findToken(
  flags: TransportFlags,
  env: Env,
  read: Read,
  modeOf: ModeOf,
  warnings: string[],
): FoundToken | undefined {
  if (flags.token !== undefined && flags.tokenFile !== undefined) {
    throw new ConnectionConfigError('--token and --token-file exclude each other');
  }
  if (flags.token !== undefined) return { token: flags.token.trim(), tokenSource: '--token' };
  if (flags.tokenFile !== undefined) {
    warnings.push(...tokenFileWarnings(flags.tokenFile, modeOf));
    return {
      token: readToken(flags.tokenFile, read),
      tokenSource: `--token-file ${flags.tokenFile}`,
    };
  }
  const envToken = envValue(env, CONNECTION_ENV.token);
  const envTokenFile = envValue(env, CONNECTION_ENV.tokenFile);
  if (envToken !== undefined && envTokenFile !== undefined) {
    throw new ConnectionConfigError(
      `${CONNECTION_ENV.token} and ${CONNECTION_ENV.tokenFile} exclude each other`,
    );
  }
  if (envToken !== undefined) return { token: envToken.trim(), tokenSource: CONNECTION_ENV.token };
  if (envTokenFile === undefined) return undefined;
  warnings.push(...tokenFileWarnings(envTokenFile, modeOf));
  return {
    token: readToken(envTokenFile, read),
    tokenSource: `${CONNECTION_ENV.tokenFile}=${envTokenFile}`,
  };
}

/**
 * Resolves where and how to connect. TLS unless plaintext is asked for: `--plaintext` / PRFLEET_PLAINTEXT=true /
 * an `http://` address. TLS trusts `--ca` (PRFLEET_TLS_CA) or else the system roots; `--cert` + `--key`
 * (PRFLEET_TLS_CERT/KEY) add a client certificate. Flags win over the environment; contradictions at the same
 * level (e.g. `--plaintext --ca x`) are errors. The token comes from `--token`, `--token-file`, PRFLEET_TOKEN or
 * PRFLEET_TOKEN_FILE. Throws {@link ConnectionConfigError}.
 */
export function resolveConnection(
  server: string,
  flags: TransportFlags,
  env: Env = process.env,
  read: Read = (file) => readFileSync(file),
  modeOf: ModeOf = (file) => {
    try {
      return statSync(file).mode;
    } catch {
      return undefined;
    }
  },
): ConnectionSettings {
  const { address, scheme } = parseServerAddress(server);
  const warnings: string[] = [];
  const plaintext = wantsPlaintext(flags, scheme, env);
  const tls = plaintext ? false : resolveTls(flags, env, read);
  const found = findToken(flags, env, read, modeOf, warnings);
  if (found !== undefined && !/^[\x21-\x7e]+$/.test(found.token)) {
    throw new ConnectionConfigError(
      `the token from ${found.tokenSource} holds characters a token never has (spaces or non-ASCII)`,
    );
  }
  if (found !== undefined && plaintext && !isLoopbackHost(hostOf(address))) {
    warnings.push(
      `the bearer token goes to ${address} without TLS: anyone on the path can read and reuse it`,
    );
  }
  return { address, tls, ...(found ?? {}), warnings };
}

/** The transport flags out of a program's parsed options (unknown keys ignored; absent options stay absent). */
export function transportFlagsOf(opts: Readonly<Record<string, unknown>>): TransportFlags {
  const text = (k: string): string | undefined => {
    const v = opts[k];
    return typeof v === 'string' ? v : undefined;
  };
  const only = <K extends keyof TransportFlags>(key: K, value: TransportFlags[K] | undefined) =>
    value === undefined ? {} : { [key]: value };
  // The program spells them --ca (or --tls-ca), --tls-cert, --tls-key: --key is every PROUT's reservation key.
  return {
    ...only('plaintext', opts['plaintext'] === true ? true : undefined),
    ...only('tls', opts['tls'] === true ? true : undefined),
    ...only('ca', text('ca') ?? text('tlsCa')),
    ...only('cert', text('tlsCert')),
    ...only('key', text('tlsKey')),
    ...only('tlsServerName', text('tlsServerName')),
    ...only('token', text('token')),
    ...only('tokenFile', text('tokenFile')),
  };
}

/** What errors need to know about the connection for their hints (never the token itself). */
export interface TransportContext {
  /** TLS in use. */
  readonly tls: boolean;
  /** Where the trusted CA came from, when not the system roots. */
  readonly caSource?: string;
  /** A client certificate was presented. */
  readonly clientCert: boolean;
  /** Where the token came from; absent = no token sent. */
  readonly tokenSource?: string;
}

/** The hint context of resolved settings. */
export function transportContextOf(settings: ConnectionSettings): TransportContext {
  const tls = settings.tls;
  return {
    tls: tls !== false,
    ...(tls !== false && tls.caSource !== undefined ? { caSource: tls.caSource } : {}),
    clientCert: tls !== false && tls.cert !== undefined,
    ...(settings.tokenSource === undefined ? {} : { tokenSource: settings.tokenSource }),
  };
}
