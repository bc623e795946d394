// The web view's event streams (/api/v1/fleet/events, Server-Sent Events) from one hostile principal. Each holds
// a connection with no timeout, a subscription to the fleet picture and one to the event log, like a Watch; one
// viewer (or one address on a plaintext server without tokens) could open any number. They count against the
// same per-principal quota as Watch (PRFLEET_PRINCIPAL_MAX_WATCHES): over it, 429 saying which limit; a stream
// ended frees its slot.
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import { ensureBuilt } from '../helpers/processes.js';

const MAX = 2;

/** Opens the event stream; resolves with its status and, for a 200, once its first event came. */
function openStream(port: number): Promise<{ status: number; text: string; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req: ClientRequest = request(
      { host: '127.0.0.1', port, path: '/api/v1/fleet/events', agent: false },
      (res: IncomingMessage) => {
        const close = () => req.destroy();
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
          if (res.statusCode === 200 && text.includes('\n\n'))
            resolve({ status: 200, text, close });
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, close }));
        res.on('error', () => {});
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('web view event streams per principal', () => {
  let server: ServerProcess;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({
      env: { PRFLEET_STORE: 'memory', PRFLEET_PRINCIPAL_MAX_WATCHES: String(MAX) },
    });
  }, 600_000);

  afterAll(async () => {
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('refuses a stream over the quota with 429 naming the limit, and frees a slot when one ends', async () => {
    const held = [];
    for (let i = 0; i < MAX; i++) {
      const stream = await openStream(server.port);
      expect(stream.status).toBe(200);
      expect(stream.text).toMatch(/^event: snapshot/m);
      held.push(stream);
    }
    const refused = await openStream(server.port);
    expect(refused.status).toBe(429);
    expect(refused.text).toContain('PRFLEET_PRINCIPAL_MAX_WATCHES');
    held.pop()?.close();
    await expect
      .poll(
        async () => {
          const again = await openStream(server.port);
          if (again.status === 200) held.push(again);
          return again.status;
        },
        { timeout: 10_000, interval: 200 },
      )
      .toBe(200);
    for (const stream of held) stream.close();
  });
});
