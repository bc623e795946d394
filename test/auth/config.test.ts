import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSecurityConfig } from '../../src/server/auth/config.js';
import { loadMetricsConfig } from '../../src/server/metrics.js';
import { createTestPki, type TestPki } from './pki.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await createTestPki();
});
afterAll(async () => {
  await pki.cleanup();
});

const tlsEnv = () => ({
  PRFLEET_TLS_CERT: join(pki.dir, 'server', 'server.crt'),
  PRFLEET_TLS_KEY: join(pki.dir, 'server', 'server.key'),
  PRFLEET_TLS_CA: join(pki.dir, 'ca', 'ca.crt'),
});

describe('security configuration', () => {
  it('refuses to start without TLS unless plaintext is asked for', () => {
    expect(() => loadSecurityConfig({})).toThrow(/no TLS configured: set PRFLEET_TLS_CERT/);
    expect(loadSecurityConfig({ PRFLEET_PLAINTEXT: 'true' })).toEqual({ credentials: { plaintext: true }, requireAgentCertificate: false });
  });

  it('names the TLS files that are missing or unreadable', () => {
    expect(() => loadSecurityConfig({ PRFLEET_TLS_CERT: 'a.crt' })).toThrow('PRFLEET_TLS_KEY and PRFLEET_TLS_CA not set');
    expect(() => loadSecurityConfig({ ...tlsEnv(), PRFLEET_TLS_KEY: '/nonexistent/key.pem' })).toThrow('cannot read TLS key /nonexistent/key.pem');
    expect(() => loadSecurityConfig({ ...tlsEnv(), PRFLEET_PLAINTEXT: 'true' })).toThrow('conflicts');
  });

  it('requires client certificates with TLS alone, and makes them optional when tokens authenticate clients', () => {
    const mtlsOnly = loadSecurityConfig(tlsEnv());
    expect(mtlsOnly.credentials.tls?.clientCerts).toBe('require');
    expect(mtlsOnly.requireAgentCertificate).toBe(true);
    const shared = loadSecurityConfig({ ...tlsEnv(), PRFLEET_TOKENS_FILE: '/etc/prfleet/tokens.json' });
    expect(shared).toMatchObject({ tokensFile: '/etc/prfleet/tokens.json', requireAgentCertificate: true });
    expect(shared.credentials.tls?.clientCerts).toBe('optional');
    expect(() => loadSecurityConfig({ ...tlsEnv(), PRFLEET_CLIENT_CERTS: 'optional' })).toThrow('needs PRFLEET_TOKENS_FILE');
  });
});

describe('metrics configuration', () => {
  it('is off by default and validates the port', () => {
    expect(loadMetricsConfig({})).toBeUndefined();
    expect(loadMetricsConfig({ PRFLEET_METRICS_PORT: '9464' })).toEqual({ port: 9464, host: '0.0.0.0' });
    expect(() => loadMetricsConfig({ PRFLEET_METRICS_PORT: 'abc' })).toThrow('invalid PRFLEET_METRICS_PORT: "abc"');
  });
});
