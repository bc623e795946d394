import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { parseCertificateBundle, verifyAgentCertificate } from '../../src/server/auth/mtls.js';
import {
  certificateNames,
  normalizeFingerprint,
  parseRevocationList,
  watchRevocationList,
  type CertificateNames,
} from '../../src/server/auth/revocation.js';
import { revokeCertificate } from '../../src/tools/certs.js';
import { createTestPki, reencodeSignature, type TestPki } from './pki.js';

const log = createLogger({ level: 'silent' });
const HEX = 'ab'.repeat(32);
const COLONS = 'AB:'.repeat(31) + 'AB';
/** A certificate known only by this fingerprint (no serial or key listed anywhere). */
const byFingerprint = (fingerprint256: string): CertificateNames => ({
  fingerprint256,
  spki: 'spki:' + '0'.repeat(64),
  serial: 'serial:' + '0'.repeat(64) + ':1',
});

let pki: TestPki;
let dir: string;
beforeAll(async () => {
  pki = await createTestPki();
  dir = await mkdtemp(join(tmpdir(), 'prfleet-revoked-'));
});
afterAll(async () => {
  await pki.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe('revocation list', () => {
  it('reads fingerprints with or without colons, any case, with comments and blank lines', () => {
    const list = parseRevocationList(
      `# revoked agent certificates\n\n${HEX}  # host-a, stolen laptop\n${'cd'.repeat(32).toUpperCase()}\n   \n`,
      'revoked.txt',
    );
    expect([...list]).toEqual([COLONS, 'CD:'.repeat(31) + 'CD']);
    expect(normalizeFingerprint(HEX)).toBe(COLONS);
    expect(normalizeFingerprint(COLONS.toLowerCase())).toBe(COLONS);
    expect(normalizeFingerprint('ab'.repeat(31))).toBeUndefined();
    expect([
      ...parseRevocationList(
        `sha256:${HEX}\nSPKI:${'EF'.repeat(32)}\nserial:${'01'.repeat(32)}:00A1B2\n`,
        'r',
      ),
    ]).toEqual([COLONS, `spki:${'ef'.repeat(32)}`, `serial:${'01'.repeat(32)}:a1b2`]);
  });

  it('names a certificate by issuer + serial and key, which a re-encoded signature keeps', () => {
    const original = new X509Certificate(pki.hostA.cert);
    const reencoded = new X509Certificate(reencodeSignature(pki.hostA.cert));
    // Still the fleet CA's signature over the same certificate, under another fingerprint.
    const cas = parseCertificateBundle(pki.ca);
    expect(verifyAgentCertificate(reencoded, cas)?.agentId).toBe('host-a');
    expect(reencoded.fingerprint256).not.toBe(original.fingerprint256);
    const a = certificateNames(original);
    const b = certificateNames(reencoded);
    expect(b.fingerprint256).not.toBe(a.fingerprint256);
    expect(b.serial).toBe(a.serial);
    expect(b.spki).toBe(a.spki);
    expect(a.serial).toMatch(/^serial:[0-9a-f]{64}:[0-9a-f]+$/);
    // Another certificate of the same CA shares the issuer hash, not the serial or key.
    const other = certificateNames(new X509Certificate(pki.hostB.cert));
    expect(other.serial.split(':')[1]).toBe(a.serial.split(':')[1]);
    expect(other.serial).not.toBe(a.serial);
    expect(other.spki).not.toBe(a.spki);
  });

  it('refuses a re-encoded certificate once its original was seen under a listed fingerprint', async () => {
    const file = join(dir, 'by-fingerprint.txt');
    const original = certificateNames(new X509Certificate(pki.hostA.cert));
    const reencoded = certificateNames(new X509Certificate(reencodeSignature(pki.hostA.cert)));
    await writeFile(file, `${original.fingerprint256}\n`);
    const revoked = watchRevocationList(file, { log, pollMs: 20 });
    onTestFinished(() => revoked.close());
    expect(revoked.has(original)).toBe(true);
    expect(revoked.has(reencoded)).toBe(true);
    expect(revoked.has(certificateNames(new X509Certificate(pki.hostB.cert)))).toBe(false);
    // Taking the fingerprint off the list forgets what it taught.
    await writeFile(file, '# none\n');
    await expect.poll(() => revoked.has(original)).toBe(false);
    expect(revoked.has(reencoded)).toBe(false);
  });

  it('names the file and line of anything that is not a fingerprint', () => {
    expect(() => parseRevocationList(`${HEX}\nhost-a\n`, '/etc/prfleet/revoked.txt')).toThrow(
      '/etc/prfleet/revoked.txt:2: not a certificate name',
    );
  });

  it('reloads when the file changes, tells its listeners, and keeps the list in force when a change cannot be read', async () => {
    const file = join(dir, 'watch.txt');
    await writeFile(file, '');
    const revoked = watchRevocationList(file, { log, pollMs: 20 });
    onTestFinished(() => revoked.close());
    let changes = 0;
    revoked.onChange(() => (changes += 1));
    expect(revoked.has(byFingerprint(HEX))).toBe(false);
    await writeFile(file, `${HEX}\n`);
    await expect.poll(() => revoked.has(byFingerprint(COLONS))).toBe(true);
    expect(changes).toBe(1);
    await writeFile(file, `${HEX}\nnot a fingerprint, and a longer line\n`);
    await new Promise((r) => setTimeout(r, 100));
    expect(revoked.has(byFingerprint(HEX))).toBe(true); // the broken version was not applied
    expect(changes).toBe(1);
    await writeFile(file, '# all clear\n');
    await expect.poll(() => revoked.has(byFingerprint(HEX))).toBe(false);
    expect(changes).toBe(2);
  });

  it('refuses to start from a file it cannot read', () => {
    expect(() => watchRevocationList(join(dir, 'missing.txt'), { log })).toThrow(/ENOENT/);
  });
});

describe('prfleet-certs revoke', () => {
  it('appends the certificate by issuer + serial and key, with a comment, once', async () => {
    const certFile = join(dir, 'host-a.crt');
    await writeFile(certFile, pki.hostA.cert);
    const list = join(dir, 'revoked.txt');
    const first = await revokeCertificate({
      cert: certFile,
      list,
      reason: 'host decommissioned\n# sneaky',
      now: new Date('2026-12-02T08:00:00Z'),
    });
    const names = certificateNames(new X509Certificate(pki.hostA.cert));
    expect(first).toEqual({ ...names, list, added: true });
    const again = await revokeCertificate({ cert: certFile, list });
    expect(again.added).toBe(false);
    const text = await readFile(list, 'utf8');
    expect(text.trim().split('\n')).toHaveLength(3);
    expect(text).toContain(`# O=prfleet, CN=host-a, serial `);
    expect(text).toContain(`SHA-256 ${names.fingerprint256}`);
    expect(text).toContain('revoked 2026-12-02T08:00:00.000Z: host decommissioned   sneaky');
    expect([...parseRevocationList(text, list)]).toEqual([names.serial, names.spki]);
  });

  it('refuses a file that is not a certificate', async () => {
    const bogus = join(dir, 'bogus.crt');
    await writeFile(bogus, 'not a certificate');
    await expect(revokeCertificate({ cert: bogus, list: join(dir, 'x.txt') })).rejects.toThrow(
      /cannot read certificate/,
    );
  });
});
