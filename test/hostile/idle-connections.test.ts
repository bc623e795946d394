// Connections to the one port that never become calls. grpc-js keeps an HTTP/2 connection with no call open
// for ~24 days unless told otherwise (grpc.max_connection_idle_ms), so a client could open connections, send
// the preface and hold them until the server runs out of file descriptors (then PostgreSQL connections, agents'
// reconnects and the CLI all fail). An HTTP/2 connection without a call is closed after PRFLEET_CONNECTION_IDLE_MS;
// a plaintext connection that has not said its protocol by then is closed too, and so is an HTTP/1.1 one that
// has not sent its whole request head (slowloris: node checked its 10 s header timeout only every 30 s). Calls and agents' streams, however
// long, are not idle and stay. On TLS, a connection that has not finished its handshake by then (at most 10 s;
// node's default was 120 s) is closed too.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki } from '../auth/pki.js';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import {
  startServerProcess,
  startSimProcess,
  type ServerProcess,
} from '../../src/demo/processes.js';
import { DEMO_FABRIC, ensureBuilt, type ChildHandle } from '../helpers/processes.js';
import { closedWithin, openSocket } from './raw-http.js';

const IDLE_MS = 1_500;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** An empty SETTINGS frame: what a client sends right after the preface. */
const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

describe('idle connections to the one port', () => {
  let server: ServerProcess;
  let sim: ChildHandle;
  let client: ControlClient;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({
      env: { PRFLEET_STORE: 'memory', PRFLEET_CONNECTION_IDLE_MS: String(IDLE_MS) },
    });
    sim = await startSimProcess({ address: server.address, fabric: DEMO_FABRIC });
    client = createControlClient(server.address);
  }, 600_000);

  afterAll(async () => {
    client?.close();
    await sim?.stop({ graceMs: 5000 });
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('closes an HTTP/2 connection that opens no call', async () => {
    const socket = await openSocket(server.port);
    socket.write(Buffer.concat([PREFACE, SETTINGS]));
    expect(await closedWithin(socket, IDLE_MS + 6_000)).toBe(true);
  });

  it('closes a plaintext connection that sends part of the preface, or nothing, then silence', async () => {
    const part = await openSocket(server.port);
    part.write(PREFACE.subarray(0, 7));
    const silent = await openSocket(server.port);
    const [a, b] = await Promise.all([
      closedWithin(part, IDLE_MS + 6_000),
      closedWithin(silent, IDLE_MS + 6_000),
    ]);
    expect({ part: a, silent: b }).toEqual({ part: true, silent: true });
  });

  it('closes an HTTP/1.1 connection that drips its request headers (slowloris)', async () => {
    const socket = await openSocket(server.port);
    socket.write('GET /healthz HTTP/1.1\r\nhost: prfleet\r\n');
    const drip = setInterval(() => {
      if (!socket.destroyed) socket.write('x-drip: 1\r\n');
    }, 200);
    try {
      expect(await closedWithin(socket, IDLE_MS + 6_000)).toBe(true);
    } finally {
      clearInterval(drip);
    }
  });

  it('keeps agents streams and a client channel that calls, well past the idle time', async () => {
    await new Promise((r) => setTimeout(r, IDLE_MS * 2));
    const { agents } = await client.listAgents({});
    expect(agents.map((a) => a.agentId).sort()).toEqual(['host-a', 'host-b', 'host-c']);
    expect(agents.every((a) => a.connected)).toBe(true);
    const result = await client.readKeys({ target: { agentId: 'host-b', path: '/dev/sg1' } });
    expect(result.result?.statusName).toBe('GOOD');
  });
});

describe('idle connections to the one port over TLS', () => {
  let server: ServerProcess;
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-idle-tls-'));

  beforeAll(async () => {
    await ensureBuilt();
    const pki = await createTestPki();
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    server = await startServerProcess({
      env: {
        PRFLEET_STORE: 'memory',
        PRFLEET_PLAINTEXT: 'false',
        PRFLEET_TLS_CERT: file('server.crt', pki.server.cert),
        PRFLEET_TLS_KEY: file('server.key', pki.server.key),
        PRFLEET_TLS_CA: file('ca.crt', pki.ca),
        PRFLEET_CONNECTION_IDLE_MS: String(IDLE_MS),
      },
    });
    await pki.cleanup();
  }, 600_000);

  afterAll(async () => {
    await server?.handle.stop({ graceMs: 5000 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('closes a connection that never finishes its TLS handshake', async () => {
    const silent = await openSocket(server.port);
    const partial = await openSocket(server.port);
    partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a ClientHello that never completes
    const [a, b] = await Promise.all([
      closedWithin(silent, IDLE_MS + 6_000),
      closedWithin(partial, IDLE_MS + 6_000),
    ]);
    expect({ silent: a, partial: b }).toEqual({ silent: true, partial: true });
  });
});
