import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSecurityConfig } from '../../src/server/auth/config.js';
import { loadMetricsConfig } from '../../src/server/metrics-config.js';
import { loadScaleOutConfig } from '../../src/server/scale-out.js';
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
  it('has no switch to turn security off: PRFLEET_SECURITY refuses to start, whatever its value', () => {
    for (const value of ['false', 'true', '0']) {
      expect(() =>
        loadScaleOutConfig({ PRFLEET_SECURITY: value, PRFLEET_PLAINTEXT: 'true' }),
      ).toThrow('PRFLEET_SECURITY is not supported');
    }
    expect(loadScaleOutConfig({ PRFLEET_PLAINTEXT: 'true' }).security?.credentials.plaintext).toBe(
      true,
    );
    expect(() => loadScaleOutConfig({})).toThrow(/PRFLEET_PLAINTEXT/);
  });

  it('refuses to start without TLS unless plaintext is asked for', () => {
    expect(() => loadSecurityConfig({})).toThrow(/no TLS configured: set PRFLEET_TLS_CERT/);
    expect(loadSecurityConfig({ PRFLEET_PLAINTEXT: 'true' })).toEqual({
      credentials: { plaintext: true },
      requireAgentCertificate: false,
    });
  });

  it('takes a revocation list with TLS only, and its poll interval', () => {
    expect(() =>
      loadSecurityConfig({ PRFLEET_PLAINTEXT: 'true', PRFLEET_TLS_REVOKED: '/etc/revoked.txt' }),
    ).toThrow('PRFLEET_TLS_REVOKED needs TLS');
    expect(
      loadSecurityConfig({
        ...tlsEnv(),
        PRFLEET_TLS_REVOKED: '/etc/revoked.txt',
        PRFLEET_TLS_REVOKED_POLL_MS: '500',
      }),
    ).toMatchObject({ revokedFile: '/etc/revoked.txt', revocationPollMs: 500 });
    expect(loadSecurityConfig(tlsEnv())).not.toHaveProperty('revokedFile');
    expect(() => loadSecurityConfig({ ...tlsEnv(), PRFLEET_TLS_REVOKED_POLL_MS: 'often' })).toThrow(
      /PRFLEET_TLS_REVOKED_POLL_MS/,
    );
  });

  it('names the TLS files that are missing or unreadable', () => {
    expect(() => loadSecurityConfig({ PRFLEET_TLS_CERT: 'a.crt' })).toThrow(
      'PRFLEET_TLS_KEY and PRFLEET_TLS_CA not set',
    );
    expect(() =>
      loadSecurityConfig({ ...tlsEnv(), PRFLEET_TLS_KEY: '/nonexistent/key.pem' }),
    ).toThrow('cannot read TLS key /nonexistent/key.pem');
    expect(() => loadSecurityConfig({ ...tlsEnv(), PRFLEET_PLAINTEXT: 'true' })).toThrow(
      'conflicts',
    );
  });

  it('requires client certificates with TLS alone, and makes them optional when tokens authenticate clients', () => {
    const mtlsOnly = loadSecurityConfig({ ...tlsEnv(), PRFLEET_STORE: 'memory' });
    expect(mtlsOnly.credentials.tls?.clientCerts).toBe('require');
    expect(mtlsOnly.requireAgentCertificate).toBe(true);
    expect(mtlsOnly.tokenSource).toBeUndefined();
    const shared = loadSecurityConfig({
      ...tlsEnv(),
      PRFLEET_TOKENS_FILE: '/etc/prfleet/tokens.json',
    });
    expect(shared).toMatchObject({
      tokenSource: 'file',
      tokensFile: '/etc/prfleet/tokens.json',
      requireAgentCertificate: true,
    });
    expect(shared.credentials.tls?.clientCerts).toBe('optional');
    expect(() =>
      loadSecurityConfig({
        ...tlsEnv(),
        PRFLEET_STORE: 'memory',
        PRFLEET_CLIENT_CERTS: 'optional',
      }),
    ).toThrow('PRFLEET_CLIENT_CERTS=optional needs client tokens');
  });

  it('takes tokens from the durable store of a TLS server unless a token file is named', () => {
    // Default store (PGlite) or PostgreSQL: the database's token table, shared by every instance.
    for (const store of [
      {},
      { DATABASE_URL: 'postgres://db.example/prfleet' },
      { PRFLEET_STORE: 'pglite' },
    ]) {
      const config = loadSecurityConfig({ ...tlsEnv(), ...store });
      expect(config.tokenSource).toBe('database');
      expect(config.tokensFile).toBeUndefined();
      expect(config.credentials.tls?.clientCerts).toBe('optional');
    }
    // A named token file wins (servers upgraded with their tokens in a file keep them).
    expect(loadSecurityConfig({ ...tlsEnv(), PRFLEET_TOKENS_FILE: '/t.json' }).tokenSource).toBe(
      'file',
    );
    expect(
      loadSecurityConfig({
        ...tlsEnv(),
        PRFLEET_TOKENS_FILE: '/t.json',
        PRFLEET_TOKENS: 'database',
      }).tokenSource,
    ).toBe('database');
    // Plaintext (tests, the demo, loopback) without a token file: off unless asked for.
    expect(loadSecurityConfig({ PRFLEET_PLAINTEXT: 'true' }).tokenSource).toBeUndefined();
    expect(
      loadSecurityConfig({ PRFLEET_PLAINTEXT: 'true', PRFLEET_TOKENS: 'database' }).tokenSource,
    ).toBe('database');
    // Explicit choices that cannot work are refused, naming the variables.
    expect(() =>
      loadSecurityConfig({ ...tlsEnv(), PRFLEET_STORE: 'memory', PRFLEET_TOKENS: 'database' }),
    ).toThrow('PRFLEET_TOKENS=database needs a durable store');
    expect(() => loadSecurityConfig({ ...tlsEnv(), PRFLEET_TOKENS: 'file' })).toThrow(
      'PRFLEET_TOKENS=file needs PRFLEET_TOKENS_FILE',
    );
    expect(() => loadSecurityConfig({ ...tlsEnv(), PRFLEET_TOKENS: 'maybe' })).toThrow(
      'PRFLEET_TOKENS',
    );
    const off = loadSecurityConfig({ ...tlsEnv(), PRFLEET_TOKENS: 'off' });
    expect(off.tokenSource).toBeUndefined();
    expect(off.credentials.tls?.clientCerts).toBe('require');
  });
});

describe('metrics configuration', () => {
  it('is off by default and validates the port', () => {
    expect(loadMetricsConfig({})).toBeUndefined();
    expect(loadMetricsConfig({ PRFLEET_METRICS_PORT: '9464' })).toEqual({
      port: 9464,
      host: '0.0.0.0',
    });
    expect(() => loadMetricsConfig({ PRFLEET_METRICS_PORT: 'abc' })).toThrow(
      'invalid PRFLEET_METRICS_PORT: "abc"',
    );
  });
});
