import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import {
  normalizeFingerprint,
  parseRevocationList,
  watchRevocationList,
} from '../../src/server/auth/revocation.js';
import { revokeCertificate } from '../../src/tools/certs.js';
import { createTestPki, type TestPki } from './pki.js';

const log = createLogger({ level: 'silent' });
const HEX = 'ab'.repeat(32);
const COLONS = 'AB:'.repeat(31) + 'AB';

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
  });

  it('names the file and line of anything that is not a fingerprint', () => {
    expect(() => parseRevocationList(`${HEX}\nhost-a\n`, '/etc/prfleet/revoked.txt')).toThrow(
      '/etc/prfleet/revoked.txt:2: not a SHA-256 certificate fingerprint',
    );
  });

  it('reloads when the file changes, tells its listeners, and keeps the list in force when a change cannot be read', async () => {
    const file = join(dir, 'watch.txt');
    await writeFile(file, '');
    const revoked = watchRevocationList(file, { log, pollMs: 20 });
    onTestFinished(() => revoked.close());
    let changes = 0;
    revoked.onChange(() => (changes += 1));
    expect(revoked.has(HEX)).toBe(false);
    await writeFile(file, `${HEX}\n`);
    await expect.poll(() => revoked.has(COLONS)).toBe(true);
    expect(changes).toBe(1);
    await writeFile(file, `${HEX}\nnot a fingerprint, and a longer line\n`);
    await new Promise((r) => setTimeout(r, 100));
    expect(revoked.has(HEX)).toBe(true); // the broken version was not applied
    expect(changes).toBe(1);
    await writeFile(file, '# all clear\n');
    await expect.poll(() => revoked.has(HEX)).toBe(false);
    expect(changes).toBe(2);
  });

  it('refuses to start from a file it cannot read', () => {
    expect(() => watchRevocationList(join(dir, 'missing.txt'), { log })).toThrow(/ENOENT/);
  });
});

describe('prfleet-certs revoke', () => {
  it('appends the certificate fingerprint with a comment, once', async () => {
    const certFile = join(dir, 'host-a.crt');
    await writeFile(certFile, pki.hostA.cert);
    const list = join(dir, 'revoked.txt');
    const first = await revokeCertificate({
      cert: certFile,
      list,
      reason: 'host decommissioned\n# sneaky',
      now: new Date('2026-12-02T08:00:00Z'),
    });
    const fingerprint = new X509Certificate(pki.hostA.cert).fingerprint256;
    expect(first).toEqual({ fingerprint256: fingerprint, list, added: true });
    const again = await revokeCertificate({ cert: certFile, list });
    expect(again.added).toBe(false);
    const text = await readFile(list, 'utf8');
    expect(text.trim().split('\n')).toHaveLength(1);
    expect(text).toContain(`${fingerprint}  # O=prfleet, CN=host-a, serial `);
    expect(text).toContain('revoked 2026-12-02T08:00:00.000Z: host decommissioned   sneaky');
    expect([...parseRevocationList(text, list)]).toEqual([fingerprint]);
  });

  it('refuses a file that is not a certificate', async () => {
    const bogus = join(dir, 'bogus.crt');
    await writeFile(bogus, 'not a certificate');
    await expect(revokeCertificate({ cert: bogus, list: join(dir, 'x.txt') })).rejects.toThrow(
      /cannot read certificate/,
    );
  });
});
