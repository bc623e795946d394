import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  initCa,
  issueAgentCert,
  issueClientCert,
  issueServerCert,
} from '../../src/tools/openssl-ca.js';
import { children, readTlv, type Tlv } from '../../src/server/auth/der.js';

/** PEM text of one issued certificate and its key. */
export interface Pem {
  cert: string;
  key: string;
}

/** A throw-away PKI made with the real cert tool: CA, server, agents host-a/host-b/host-c, and a rogue CA's agent. */
export interface TestPki {
  dir: string;
  ca: string;
  server: Pem;
  hostA: Pem;
  hostB: Pem;
  /** host-c may only report /dev/sg1* and LU naa.5000e111*. */
  hostC: Pem;
  /** Certificate for "host-a" from a different CA. */
  rogueHostA: Pem;
  /** Client (not agent) certificate "ops" (SAN URI prfleet:client:ops). */
  clientOps: Pem;
  cleanup(): Promise<void>;
}

async function pem(files: { cert: string; key: string }): Promise<Pem> {
  return { cert: await readFile(files.cert, 'utf8'), key: await readFile(files.key, 'utf8') };
}

/** Creates the PKI in a temp directory (a few openssl runs, ~0.3 s). */
export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'prfleet-pki-'));
  const ca = join(dir, 'ca');
  const rogue = join(dir, 'rogue');
  await initCa({ out: ca });
  await initCa({ out: rogue, commonName: 'rogue CA' });
  const [server, hostA, hostB, hostC, rogueHostA, clientOps] = await Promise.all([
    issueServerCert({ out: join(dir, 'server'), caDir: ca }),
    issueAgentCert({ out: join(dir, 'agents'), caDir: ca, id: 'host-a' }),
    issueAgentCert({ out: join(dir, 'agents'), caDir: ca, id: 'host-b' }),
    issueAgentCert({
      out: join(dir, 'agents'),
      caDir: ca,
      id: 'host-c',
      allow: ['/dev/sg1*', 'naa.5000e111*'],
    }),
    issueAgentCert({ out: join(dir, 'rogue-agents'), caDir: rogue, id: 'host-a' }),
    issueClientCert({ out: join(dir, 'clients'), caDir: ca, name: 'ops' }),
  ]);
  return {
    dir,
    ca: await readFile(join(ca, 'ca.crt'), 'utf8'),
    server: await pem(server),
    hostA: await pem(hostA),
    hostB: await pem(hostB),
    hostC: await pem(hostC),
    rogueHostA: await pem(rogueHostA),
    clientOps: await pem(clientOps),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Order of the P-256 group (SEC 2): an ECDSA signature (r, s) also verifies as (r, n − s). */
const P256_N = BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551');

function derElement(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length =
    n < 0x80
      ? Buffer.from([n])
      : n < 0x100
        ? Buffer.from([0x81, n])
        : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, content]);
}

function derInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  const bytes = Buffer.from(hex, 'hex');
  return derElement(
    0x02,
    (bytes[0] as number) & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes,
  );
}

/**
 * The same certificate (subject, serial, key, CA signature over the same TBS) with its ECDSA signature
 * re-encoded as (r, n − s): it still verifies against the CA and the TLS handshake accepts it, but its bytes, and
 * so its SHA-256 fingerprint, differ. What a thief of a revoked certificate can make without the CA's key.
 */
export function reencodeSignature(pemText: string): string {
  const der = Buffer.from(new X509Certificate(pemText).raw);
  const [tbs, algorithm, signature] = children(der, readTlv(der, 0));
  if (tbs === undefined || algorithm === undefined || signature?.tag !== 0x03)
    throw new Error('not a certificate');
  // BIT STRING: one byte of unused bits (0), then ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }.
  const sigDer = der.subarray(signature.contentStart + 1, signature.end);
  const [r, s] = children(sigDer, readTlv(sigDer, 0));
  if (r === undefined || s === undefined) throw new Error('not an ECDSA signature');
  const value = (t: Tlv, d: Buffer) =>
    BigInt(`0x${d.subarray(t.contentStart, t.end).toString('hex')}`);
  const flipped = derElement(
    0x30,
    Buffer.concat([derInteger(value(r, sigDer)), derInteger(P256_N - value(s, sigDer))]),
  );
  const rebuilt = derElement(
    0x30,
    Buffer.concat([
      der.subarray(tbs.start, tbs.end),
      der.subarray(algorithm.start, algorithm.end),
      derElement(0x03, Buffer.concat([Buffer.from([0]), flipped])),
    ]),
  );
  const b64 = rebuilt.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}
