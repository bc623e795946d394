// The takeover's liveness webhook as a hostile (or compromised) service: its answer can prove a host failed,
// and what it says goes into the PROUT history as evidence. askLiveness, the server's own code, against a real
// HTTP server on loopback. Found: the whole body was read into memory before the 4 KiB cut (a webhook streaming
// gigabytes within the timeout exhausted the server's heap); a redirect was followed, so a service the
// operator never configured could prove a host down; the webhook's detail went into the evidence with control
// characters (terminal escapes, newlines forging history lines). Each now gives "not proven" or clean text.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { askLiveness, type LivenessWebhook } from '../../src/server/fleet/takeover-rules.js';

const question = { host: 'host-c', site: 'dc1', lastHeartbeat: '' };

describe('a hostile liveness webhook', () => {
  let server: Server;
  let base: string;
  /** Bytes of body the /huge route managed to hand to the socket before the client went away. */
  let hugeSent = 0;
  let hugeDone: Promise<void> = Promise.resolve();

  function huge(res: ServerResponse) {
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"down": true, "detail": "');
    hugeSent = 0;
    hugeDone = new Promise((done) => {
      const pump = () => {
        while (hugeSent < 512 * 1024 * 1024) {
          if (res.destroyed) return done();
          hugeSent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end('"}');
        done();
      };
      res.once('close', () => done());
      pump();
    });
  }

  beforeAll(async () => {
    server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/huge') return huge(res);
      if (path === '/redirect') return void res.writeHead(302, { location: `${base}/down` }).end();
      if (path === '/down')
        return void res
          .writeHead(200, { 'content-type': 'application/json' })
          .end('{"down": true}');
      if (path === '/escapes')
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            down: true,
            detail: 'ok\u001b[2J\u001b]0;owned\u0007\nFORGED history line\u202e',
          }),
        );
      if (path === '/drip') {
        res.writeHead(200, { 'content-type': 'application/json' });
        const timer = setInterval(() => res.write(' '), 50);
        res.once('close', () => clearInterval(timer));
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const hook = (path: string, timeoutMs = 5_000): LivenessWebhook => ({
    url: `${base}${path}`,
    method: 'POST',
    timeoutMs,
  });

  it('stops reading a huge answer after a small bound and counts it as not proven', async () => {
    const answer = await askLiveness(hook('/huge', 20_000), question);
    await hugeDone;
    expect(answer.down).toBe(false);
    expect(answer.detail).toMatch(/not proven/);
    // The webhook could hand over a few socket buffers, never the half gigabyte it tried.
    expect(hugeSent).toBeLessThan(16 * 1024 * 1024);
  }, 30_000);

  it('does not follow a redirect: an answer from elsewhere proves nothing', async () => {
    const answer = await askLiveness(hook('/redirect'), question);
    expect(answer.down).toBe(false);
    expect(answer.detail).toMatch(/redirect.*not proven/);
  });

  it('keeps no control or formatting characters of the webhook detail in the evidence', async () => {
    const answer = await askLiveness(hook('/escapes'), question);
    expect(answer.down).toBe(true);
    expect(answer.detail).not.toMatch(/[\p{Cc}\p{Cf}]/u);
    expect(answer.detail).toContain('FORGED history line');
  });

  it('gives up on a body that drips past the timeout', async () => {
    const started = Date.now();
    const answer = await askLiveness(hook('/drip', 500), question);
    expect(answer).toMatchObject({ down: false });
    expect(answer.detail).toMatch(/no answer within 500 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
