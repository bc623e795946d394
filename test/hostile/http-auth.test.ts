// Bearer tokens on the one port's HTTP routes, from a hostile client (real server process with a token file and
// /metrics, a viewer route). Found: a `prfleet_token` cookie that is not valid percent-encoding made
// decodeURIComponent throw, answered 500 "internal error" and logged at error level (any client could fill the
// error log); it is now a bad token like any other (401). Tokens elsewhere than the Authorization header or the
// cookie (query string, Basic) are not credentials.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import { createFileTokenStore, createToken } from '../../src/server/auth/tokens.js';
import { ensureBuilt } from '../helpers/processes.js';
import { bodyOf, rawHttp } from './raw-http.js';

/** A port free right now (for the server's separate metrics listener, which /metrics needs to be on). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as { port: number };
  await new Promise((r) => probe.close(r));
  return port;
}

const get = (headers: string, target = '/metrics') =>
  `GET ${target} HTTP/1.1\r\nhost: prfleet\r\nconnection: close\r\n${headers}\r\n`;

describe('bearer tokens on HTTP routes', () => {
  let server: ServerProcess;
  let token: string;
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-http-auth-'));
  const errors: string[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    const file = join(dir, 'tokens.json');
    token = (await createToken(createFileTokenStore(file), { name: 'vera', role: 'viewer' })).token;
    server = await startServerProcess({
      env: {
        PRFLEET_STORE: 'memory',
        PRFLEET_TOKENS: 'file',
        PRFLEET_TOKENS_FILE: file,
        PRFLEET_METRICS_PORT: String(await freePort()),
        PRFLEET_METRICS_HOST: '127.0.0.1',
      },
      onLine: (line) => {
        if (line.includes('"level":"error"') || line.includes('"level":50')) errors.push(line);
      },
    });
  }, 600_000);

  afterAll(async () => {
    await server?.handle.stop({ graceMs: 5000 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the route with the token in the header or the cookie', async () => {
    expect((await rawHttp(server.port, get(`authorization: Bearer ${token}\r\n`))).status).toBe(
      200,
    );
    expect((await rawHttp(server.port, get(`cookie: prfleet_token=${token}\r\n`))).status).toBe(
      200,
    );
  });

  it.each([
    ['a cookie that is not percent-encoding', 'cookie: a=b; prfleet_token=%E0%A4%A\r\n'],
    ['a lone percent sign', 'cookie: prfleet_token=%\r\n'],
  ])('answers %s with 401, not 500, and logs no error', async (_what, header) => {
    const answer = await rawHttp(server.port, get(header));
    expect(answer.status, answer.text).toBe(401);
    expect(bodyOf(answer.text)).toMatch(/invalid, expired or revoked token/);
    expect(errors).toEqual([]);
  });

  it('takes no token from the query string or Basic authentication', async () => {
    for (const [headers, target] of [
      ['', `/metrics?access_token=${token}`],
      ['', `/metrics?token=${token}`],
      [`authorization: Basic ${Buffer.from(`x:${token}`).toString('base64')}\r\n`, '/metrics'],
    ] as const) {
      expect((await rawHttp(server.port, get(headers, target))).status, target).toBe(401);
    }
  });
});
