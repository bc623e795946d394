// The one-port listener's HTTP/1.1 side against request targets a proxy and the server could read differently.
// WHATWG URL parsing turned `//x/healthz` into the path `/healthz` (the `//x` read as a host) and resolved `..`
// and `%2e%2e` segments, so a target a proxy rule refused by its path (`location /metrics { deny all; }`) could
// reach that route spelled another way. A target that is not already in normal form is refused (400, saying
// why) before any route sees it; normal targets (and the absolute form RFC 9112 requires) are served as before.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import { ensureBuilt } from '../helpers/processes.js';
import { bodyOf, rawHttp } from './raw-http.js';

const get = (target: string) =>
  `GET ${target} HTTP/1.1\r\nhost: prfleet\r\nconnection: close\r\n\r\n`;

describe('HTTP request targets on the one port', () => {
  let server: ServerProcess;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({ env: { PRFLEET_STORE: 'memory' } });
  }, 600_000);

  afterAll(async () => {
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('serves targets in normal form, the absolute form included', async () => {
    for (const target of ['/healthz', '/healthz?service=', 'http://elsewhere.example/healthz']) {
      const answer = await rawHttp(server.port, get(target));
      expect(answer.status, target).toBe(200);
      expect(bodyOf(answer.text)).toBe('SERVING\n');
    }
  });

  it.each([
    ['an empty segment read as a host', '//x/healthz'],
    ['a doubled slash inside', '/agent//healthz'],
    ['a dot-dot segment', '/agent/../healthz'],
    ['an encoded dot-dot segment', '/%2e%2E/healthz'],
    ['a dot segment', '/./healthz'],
    ['an encoded slash', '/agent%2Fv1/connect'],
    ['a backslash', '/agent\\..\\healthz'],
    ['an encoded NUL', '/healthz%00'],
    ['a dot-dot segment in the absolute form', 'http://h/x/../healthz'],
    ['the asterisk form', '*'],
    ['a URL that does not parse', 'http://[x/healthz'],
  ])('refuses %s (%s) with 400 saying why', async (_what, target) => {
    const answer = await rawHttp(server.port, get(target));
    expect(answer.status, answer.text).toBe(400);
    expect(bodyOf(answer.text)).toMatch(/request target/);
  });

  it('still serves after the refusals', async () => {
    expect((await rawHttp(server.port, get('/healthz'))).status).toBe(200);
  });
});
