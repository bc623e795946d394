import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  identityFromCertificate,
  parseCertificateBundle,
  verifyAgentCertificate,
} from '../../src/server/auth/mtls.js';
import { CertToolError, initCa, issueAgentCert } from '../../src/tools/openssl-ca.js';
import { createCertsProgram } from '../../src/tools/certs.js';
import { createTestPki, type TestPki } from './pki.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await createTestPki();
});
afterAll(async () => {
  await pki.cleanup();
});

describe('certificate tool', () => {
  it('issues an agent certificate whose CN and SAN URI name the agent', () => {
    const cert = new X509Certificate(pki.hostA.cert);
    expect(cert.subject).toContain('CN=host-a');
    expect(cert.subjectAltName).toBe('URI:prfleet:agent:host-a');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(identityFromCertificate(cert)).toMatchObject({ agentId: 'host-a', allow: [] });
  });

  it('puts the device allow-list into SAN URIs', () => {
    const identity = identityFromCertificate(new X509Certificate(pki.hostC.cert));
    expect(identity).toMatchObject({ agentId: 'host-c', allow: ['/dev/sg1*', 'naa.5000e111*'] });
  });

  it('issues a client certificate that names no agent, whatever its CN', () => {
    const cert = new X509Certificate(pki.clientOps.cert);
    expect(cert.subject).toContain('CN=ops');
    expect(cert.subjectAltName).toBe('URI:prfleet:client:ops');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(identityFromCertificate(cert)).toBeUndefined();
    expect(verifyAgentCertificate(cert, parseCertificateBundle(pki.ca))).toBeUndefined();
  });

  it('issues a server certificate for localhost and 127.0.0.1 with serverAuth only', () => {
    const cert = new X509Certificate(pki.server.cert);
    expect(cert.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(cert.checkHost('localhost')).toBe('localhost');
  });

  it('makes a CA that verifies its own agents and not another CA’s', () => {
    const cas = parseCertificateBundle(pki.ca);
    expect(cas[0]?.ca).toBe(true);
    expect(verifyAgentCertificate(new X509Certificate(pki.hostB.cert), cas)?.agentId).toBe(
      'host-b',
    );
    expect(verifyAgentCertificate(new X509Certificate(pki.rogueHostA.cert), cas)).toBeUndefined();
  });

  it('refuses a server certificate as an agent certificate (no clientAuth usage)', () => {
    const cas = parseCertificateBundle(pki.ca);
    expect(verifyAgentCertificate(new X509Certificate(pki.server.cert), cas)).toBeUndefined();
  });

  it('refuses an agent certificate outside its validity period', () => {
    const cas = parseCertificateBundle(pki.ca);
    const cert = new X509Certificate(pki.hostA.cert);
    const later = new Date(Date.parse(cert.validTo) + 1000);
    expect(verifyAgentCertificate(cert, cas, later)).toBeUndefined();
  });

  it('keeps private keys readable by the owner only', async () => {
    expect((await stat(join(pki.dir, 'ca', 'ca.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(pki.dir, 'agents', 'agent-host-a.key'))).mode & 0o777).toBe(0o600);
  });

  it('refuses to overwrite existing files without force', async () => {
    await expect(initCa({ out: join(pki.dir, 'ca') })).rejects.toThrow(
      /ca\.crt exists; pass --force/,
    );
    await expect(
      issueAgentCert({ out: join(pki.dir, 'agents'), caDir: join(pki.dir, 'ca'), id: 'host-a' }),
    ).rejects.toThrow(CertToolError);
  });

  it('rejects an agent id that could not be a host name', async () => {
    await expect(
      issueAgentCert({ out: pki.dir, caDir: join(pki.dir, 'ca'), id: 'host-a/CN=admin' }),
    ).rejects.toThrow('invalid agent id: "host-a/CN=admin"');
  });

  it('says to run init first when the CA is missing', async () => {
    await expect(issueAgentCert({ out: join(pki.dir, 'nowhere'), id: 'host-z' })).rejects.toThrow(
      /ca\.crt not found: run 'init' first/,
    );
  });

  it('runs init, issue-server and issue-agent from the command line', async () => {
    const lines: string[] = [];
    const out = join(pki.dir, 'cli');
    const program = () => createCertsProgram((l) => lines.push(l));
    await program().parseAsync(['init', '--out', out], { from: 'user' });
    await program().parseAsync(
      ['issue-server', '--out', out, '--host', 'prfleet.example', '--host', '10.0.0.5'],
      { from: 'user' },
    );
    await program().parseAsync(
      ['issue-agent', '--id', 'tape-07', '--out', join(out, 'a'), '--ca', out],
      { from: 'user' },
    );
    expect(lines.map((l) => Object.keys(JSON.parse(l) as object))).toEqual([
      ['caCert', 'caKey'],
      ['cert', 'key', 'caCert'],
      ['cert', 'key', 'caCert'],
    ]);
    const server = new X509Certificate(await readFile(join(out, 'server.crt')));
    expect(server.subjectAltName).toBe('DNS:prfleet.example, IP Address:10.0.0.5');
    const agent = new X509Certificate(await readFile(join(out, 'a', 'agent-tape-07.crt')));
    const cas = parseCertificateBundle(await readFile(join(out, 'a', 'ca.crt')));
    expect(verifyAgentCertificate(agent, cas)?.agentId).toBe('tape-07');
  });
});
