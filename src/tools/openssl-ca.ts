import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  AGENT_ID_PATTERN,
  AGENT_URI_PREFIX,
  ALLOW_URI_PREFIX,
  CLIENT_URI_PREFIX,
} from '../server/auth/mtls.js';

const run = promisify(execFile);

/** A small certificate authority for a test or small deployment, driven through the `openssl` CLI. */
export interface CaFiles {
  /** CA certificate (give it to the server as its client-CA and to agents to verify the server). */
  readonly caCert: string;
  /** CA private key (keep it offline once the certificates are issued). */
  readonly caKey: string;
}

/** A certificate and its key as written to disk. */
export interface IssuedFiles {
  /** Certificate, PEM. */
  readonly cert: string;
  /** Private key, PEM (mode 0600). */
  readonly key: string;
  /** Copy of the CA certificate next to them. */
  readonly caCert: string;
}

/** Common options: where files go, how long certificates live, whether existing files may be replaced. */
export interface CertOptions {
  /** Output directory (created when missing). */
  readonly out: string;
  /** Directory holding ca.crt and ca.key. @default out */
  readonly caDir?: string;
  /** Validity in days. @default 825 for leaf certificates, 3650 for the CA */
  readonly days?: number;
  /** Replace existing files. @default false */
  readonly force?: boolean;
  /** openssl binary. @default 'openssl' */
  readonly openssl?: string;
}

/** Raised when openssl is missing or fails, or when inputs are bad; `message` says what to do. */
export class CertToolError extends Error {
  override readonly name = 'CertToolError';
}

// P-256: accepted by every TLS stack in use here (Node/OpenSSL 3, grpc-js) and cheap to verify.
const KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function openssl(binary: string, args: string[]): Promise<void> {
  try {
    await run(binary, args, { timeout: 30_000 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new CertToolError(
        `openssl not found (${binary}): install it, e.g. apt-get install openssl`,
        { cause: error },
      );
    }
    throw new CertToolError(`openssl ${args[0] ?? ''} failed: ${(e.stderr ?? e.message).trim()}`, {
      cause: error,
    });
  }
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

async function refuseOverwrite(files: string[], force: boolean | undefined): Promise<void> {
  if (force === true) return;
  for (const file of files) {
    if (await exists(file)) throw new CertToolError(`${file} exists; pass --force to replace it`);
  }
}

function checkDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > 36_500) {
    throw new CertToolError(`invalid --days: ${days} (1-36500)`);
  }
  return days;
}

/** Creates `out/ca.crt` and `out/ca.key` (EC P-256, self-signed, CA:TRUE, keyCertSign). */
export async function initCa(options: CertOptions & { commonName?: string }): Promise<CaFiles> {
  const out = resolve(options.out);
  await mkdir(out, { recursive: true });
  const files = { caCert: join(out, 'ca.crt'), caKey: join(out, 'ca.key') };
  await refuseOverwrite([files.caCert, files.caKey], options.force);
  const cn = options.commonName ?? 'prfleet CA';
  if (!/^[\w .-]{1,64}$/.test(cn))
    throw new CertToolError(`invalid CA name: ${JSON.stringify(cn)}`);
  await openssl(options.openssl ?? 'openssl', [
    'req',
    '-x509',
    '-new',
    ...KEY_ARGS,
    '-keyout',
    files.caKey,
    '-out',
    files.caCert,
    '-days',
    String(checkDays(options.days ?? 3650)),
    '-subj',
    `/O=prfleet/CN=${cn}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE,pathlen:0',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-addext',
    'subjectKeyIdentifier=hash',
  ]);
  await chmod(files.caKey, 0o600);
  return files;
}

/** A random 127-bit serial number as openssl's -set_serial takes it (RFC 5280 §4.1.2.2: positive, ≤ 20 octets). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

async function issue(
  options: CertOptions,
  name: string,
  commonName: string,
  extensions: string[],
): Promise<IssuedFiles> {
  const out = resolve(options.out);
  const caDir = resolve(options.caDir ?? options.out);
  const ca = { cert: join(caDir, 'ca.crt'), key: join(caDir, 'ca.key') };
  for (const file of [ca.cert, ca.key]) {
    if (!(await exists(file)))
      throw new CertToolError(`${file} not found: run 'init' first (or pass --ca <dir>)`);
  }
  await mkdir(out, { recursive: true });
  const files = {
    cert: join(out, `${name}.crt`),
    key: join(out, `${name}.key`),
    caCert: join(out, 'ca.crt'),
  };
  await refuseOverwrite([files.cert, files.key], options.force);
  const binary = options.openssl ?? 'openssl';
  const scratch = await mkdtemp(join(tmpdir(), 'prfleet-certs-'));
  try {
    const csr = join(scratch, 'req.csr');
    const ext = join(scratch, 'ext.cnf');
    await openssl(binary, [
      'req',
      '-new',
      ...KEY_ARGS,
      '-keyout',
      files.key,
      '-out',
      csr,
      '-subj',
      `/O=prfleet/CN=${commonName}`,
    ]);
    await chmod(files.key, 0o600);
    await writeFile(
      ext,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid',
        ...extensions,
        '',
      ].join('\n'),
    );
    await openssl(binary, [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-set_serial',
      randomSerial(),
      '-days',
      String(checkDays(options.days ?? 825)),
      '-extfile',
      ext,
      '-out',
      files.cert,
    ]);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  if (resolve(files.caCert) !== resolve(ca.cert)) await copyFile(ca.cert, files.caCert);
  return files;
}

/**
 * Issues `out/server.crt` + `server.key` for the prfleet server: serverAuth, SAN for each of `hosts` (DNS
 * names or IP addresses; default localhost and 127.0.0.1).
 */
export async function issueServerCert(
  options: CertOptions & { hosts?: readonly string[] },
): Promise<IssuedFiles> {
  const hosts =
    options.hosts !== undefined && options.hosts.length > 0
      ? options.hosts
      : ['localhost', '127.0.0.1'];
  const san = hosts.map((h) => {
    if (isIP(h) !== 0) return `IP:${h}`;
    if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(h))
      throw new CertToolError(`invalid --host: ${JSON.stringify(h)}`);
    return `DNS:${h}`;
  });
  return issue(options, 'server', hosts[0] ?? 'prfleet-server', [
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${san.join(',')}`,
  ]);
}

/**
 * Issues `out/agent-<id>.crt` + `.key` for one host agent: clientAuth, CN = id, SAN URI `prfleet:agent:<id>`,
 * and one SAN URI `prfleet:allow:<glob>` per allow-list entry (devices the agent may report; none = any).
 */
export async function issueAgentCert(
  options: CertOptions & { id: string; allow?: readonly string[] },
): Promise<IssuedFiles> {
  if (!AGENT_ID_PATTERN.test(options.id)) {
    throw new CertToolError(
      `invalid agent id: ${JSON.stringify(options.id)} (letters, digits, '.', '_', '-'; up to 63)`,
    );
  }
  const allow = options.allow ?? [];
  for (const glob of allow) {
    if (!/^[A-Za-z0-9/_.*?:-]{1,200}$/.test(glob))
      throw new CertToolError(`invalid --allow glob: ${JSON.stringify(glob)}`);
  }
  const uris = [
    `URI:${AGENT_URI_PREFIX}${options.id}`,
    ...allow.map((g) => `URI:${ALLOW_URI_PREFIX}${g}`),
  ];
  return issue(options, `agent-${options.id}`, options.id, [
    'extendedKeyUsage=clientAuth',
    `subjectAltName=${uris.join(',')}`,
  ]);
}

/**
 * Issues `out/client-<name>.crt` + `.key` for a ControlService/FleetService client (the CLI, automation) of a
 * TLS server without tokens: clientAuth, CN = name, SAN URI `prfleet:client:<name>` (never an agent identity).
 */
export async function issueClientCert(
  options: CertOptions & { name: string },
): Promise<IssuedFiles> {
  if (!AGENT_ID_PATTERN.test(options.name)) {
    throw new CertToolError(
      `invalid client name: ${JSON.stringify(options.name)} (letters, digits, '.', '_', '-'; up to 63)`,
    );
  }
  return issue(options, `client-${options.name}`, options.name, [
    'extendedKeyUsage=clientAuth',
    `subjectAltName=URI:${CLIENT_URI_PREFIX}${options.name}`,
  ]);
}
