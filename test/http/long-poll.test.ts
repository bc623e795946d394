// The HTTP/1.1 long-poll agent link without a proxy: the same sessions as the stream (listed with their link),
// commands and results, the mTLS identity, a cut poll ending the session, drain.
import { request } from 'node:https';
import { ChannelCredentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { LinkDownload, LinkUpload, type ConnectRequest } from '../../src/gen/prfleet/v1/agent.js';
import { serverCredentials } from '../../src/server/auth/mtls.js';
import { defaultServerConfig } from '../../src/server/config.js';
import { createPrfleetServer } from '../../src/server/server.js';
import { createControlClient } from '../../src/common/client.js';
import { createTestPki, type Pem, type TestPki } from '../auth/pki.js';
import { AgentLink } from '../../src/gen/prfleet/v1/control.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { DRIVE_PATHS, LOADER1_DRIVE, TEN_SECONDS, waitForPaths } from '../e2e/fleet.js';
import { startRelay } from './relay.js';

describe('long-poll agent link', () => {
  it('carries sessions like the stream: listed as long-poll, commands answered, both links side by side', async () => {
    const { client, address } = await startTestServer();
    await startEmulatedAgents({
      address,
      hosts: ['host-a', 'host-b'],
      agentOptions: { link: 'long-poll', longPollWaitMs: 2_000 },
    });
    await startEmulatedAgents({ address, hosts: ['host-c'] });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    const { agents } = await client.listAgents({});
    expect(agents.map((a) => [a.agentId, a.link])).toEqual([
      ['host-a', AgentLink.AGENT_LINK_LONG_POLL],
      ['host-b', AgentLink.AGENT_LINK_LONG_POLL],
      ['host-c', AgentLink.AGENT_LINK_STREAM],
    ]);
    // Many commands at once: they go out in batches and come back through uploads.
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        client.readKeys({
          target: DRIVE_PATHS[i % 2 === 0 ? 'host-a' : 'host-b'],
          options: { commandTimeout: TEN_SECONDS },
        }),
      ),
    );
    expect(results.every((r) => r.result?.outcome === Outcome.OUTCOME_GOOD)).toBe(true);
    // A poll waiting longer than the server's hold comes back empty and the agent polls again.
    await new Promise((r) => setTimeout(r, 2_500));
    const { result } = await client.readKeys({ target: DRIVE_PATHS['host-a'] });
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  }, 60_000);

  it('ends the session when the waiting poll is cut: in-flight commands become UNKNOWN, the agent comes back', async () => {
    const { client, port, server } = await startTestServer();
    const relay = await startRelay(port);
    const fleet = await startEmulatedAgents({
      address: relay.address,
      hosts: ['host-a'],
      latencyMs: 800,
      agentOptions: { link: 'long-poll', backoff: { initialMs: 50, maxMs: 200 } },
    });
    const session = server.agents.session('host-a');
    const pending = client.readKeys({
      target: DRIVE_PATHS['host-a'],
      options: { commandTimeout: TEN_SECONDS },
    });
    await expect.poll(() => server.router.inFlight, { timeout: 5_000, interval: 20 }).toBe(1);
    // The agent is running it (800 ms on the emulated device), and its next poll waits meanwhile.
    await expect
      .poll(() => fleet.agent('host-a').executor.inFlight, { timeout: 5_000, interval: 10 })
      .toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    relay.cut();
    const { result } = await pending;
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toMatch(/long-poll link cut/);
    expect(session?.isEnded).toBe(true);
    // The agent says Hello again on a new session (its late result for the old one is dropped).
    await expect
      .poll(() => server.agents.session('host-a')?.sessionId ?? session?.sessionId, {
        timeout: 10_000,
        interval: 50,
      })
      .not.toBe(session?.sessionId);
    const again = await client.readKeys({ target: DRIVE_PATHS['host-a'] });
    expect(again.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  }, 60_000);

  it('keeps heartbeats, rotates like a stream, and drains: Reconnect delivered, healthz 503, quick shutdown', async () => {
    const { client, address, server, port } = await startTestServer({
      config: { heartbeatMs: 200 },
      keepAlive: true,
    });
    const fleet = await startEmulatedAgents({
      address,
      hosts: ['host-a'],
      agentOptions: { link: 'long-poll', backoff: { initialMs: 20, maxMs: 100 } },
    });
    const agent = fleet.agent('host-a');
    await expect
      .poll(async () => (await client.listAgents({})).agents[0]?.lastHeartbeatAt, {
        timeout: 5_000,
      })
      .toBeInstanceOf(Date);
    // Rotation: the session gets Reconnect through a poll once old enough, and the agent comes back.
    const first = server.agents.session('host-a')?.sessionId;
    server.agents.configure({ maxStreamAgeMs: 300 });
    await expect.poll(() => agent.sessions, { timeout: 10_000, interval: 50 }).toBeGreaterThan(2);
    server.agents.configure({ maxStreamAgeMs: 0 });
    await expect
      .poll(() => server.agents.session('host-a')?.sessionId, { timeout: 5_000, interval: 50 })
      .not.toBe(first);
    await expect.poll(() => agent.state, { timeout: 5_000, interval: 20 }).toBe('connected');
    // Drain: health turns 503 on the same port, the agent is told to reconnect, and shutdown does not wait
    // for its poll.
    await server.drain(500);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(503);
    const started = performance.now();
    client.close();
    await server.shutdown();
    expect(performance.now() - started).toBeLessThan(1_500);
  }, 60_000);

  it('answers bad requests with a clear status and changes nothing', async () => {
    const { port, server } = await startTestServer();
    const post = async (path: string, body: Uint8Array, type = 'application/x-protobuf') => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        method: 'POST',
        headers: { 'content-type': type },
        body,
      });
      return { status: res.status, text: await res.text() };
    };
    const upload = (messages: ConnectRequest[]) => LinkUpload.encode({ messages }).finish();
    const hello = (agentId: string): ConnectRequest => ({
      message: {
        $case: 'hello',
        value: {
          agentId,
          hostname: 'h',
          version: 't',
          site: '',
          labels: {},
          transport: 'emulated',
          acceptsCommandBatches: true,
        },
      },
    });
    expect(await post('/agent/v1/connect', upload([hello('host-a')]), 'text/plain')).toMatchObject({
      status: 415,
    });
    const garbage = await post('/agent/v1/connect', Buffer.from([0x0a, 0xff, 0xff]));
    expect(garbage.status).toBe(400);
    expect(garbage.text).toMatch(/not a LinkUpload/);
    const heartbeatFirst = await post(
      '/agent/v1/connect',
      upload([{ message: { $case: 'heartbeat', value: { sentAt: new Date(), inFlight: 0 } } }]),
    );
    expect(heartbeatFirst.status).toBe(400);
    expect(heartbeatFirst.text).toMatch(/first message of a session must be hello/);
    const noId = await post('/agent/v1/connect', upload([hello('')]));
    expect(noId.status).toBe(400);
    expect(noId.text).toMatch(/agent_id/);
    expect(await post('/agent/v1/connect', Buffer.alloc(5 * 1024 * 1024))).toMatchObject({
      status: 413,
    });
    const unknown = await post(
      `/agent/v1/sessions/${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}/poll`,
      new Uint8Array(),
    );
    expect(unknown.status).toBe(410);
    expect(await post('/agent/v1/sessions/nope/poll', new Uint8Array())).toMatchObject({
      status: 404,
    });
    expect((await fetch(`http://127.0.0.1:${port}/agent/v1/connect`)).status).toBe(405);
    expect(server.agents.list()).toEqual([]);
  });

  describe('over TLS with agent certificates', () => {
    let pki: TestPki;
    beforeAll(async () => {
      pki = await createTestPki();
    });
    afterAll(async () => {
      await pki.cleanup();
    });

    const hello = (agentId: string): ConnectRequest => ({
      message: {
        $case: 'hello',
        value: {
          agentId,
          hostname: agentId,
          version: 't',
          site: '',
          labels: {},
          transport: 'emulated',
          acceptsCommandBatches: true,
        },
      },
    });

    /** POSTs a LinkUpload over HTTPS (no ALPN: HTTP/1.1) with `cert`; returns the status and decoded answer. */
    function post(port: number, path: string, messages: ConnectRequest[], cert?: Pem) {
      const body = LinkUpload.encode({ messages }).finish();
      return new Promise<{ status: number; text: string; messages: LinkDownload['messages'] }>(
        (resolve, reject) => {
          const req = request(
            {
              host: 'localhost',
              port,
              path,
              method: 'POST',
              ca: pki.ca,
              ...(cert === undefined ? {} : { cert: cert.cert, key: cert.key }),
              agent: false,
              headers: { 'content-type': 'application/x-protobuf' },
            },
            (res) => {
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () => {
                const data = Buffer.concat(chunks);
                const status = res.statusCode ?? 0;
                resolve({
                  status,
                  text: status === 200 ? '' : data.toString(),
                  messages: status === 200 ? LinkDownload.decode(data).messages : [],
                });
              });
            },
          );
          req.on('error', reject);
          req.end(body);
        },
      );
    }

    async function startTlsServer() {
      const server = await createPrfleetServer({
        log: createLogger({ level: 'silent' }),
        config: { ...defaultServerConfig(), instanceId: 'tls', shutdownTimeoutMs: 2_000 },
      });
      server.agents.configure({ requireAgentCertificate: true });
      const port = await server.listen(
        '127.0.0.1:0',
        serverCredentials({
          tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, clientCerts: 'optional' },
        }),
      );
      onTestFinished(() => server.shutdown());
      return { server, port };
    }

    it('runs a real agent over HTTPS with its client certificate (ALPN http/1.1 on the gRPC port)', async () => {
      const { server, port } = await startTlsServer();
      await startEmulatedAgents({
        address: `localhost:${port}`,
        hosts: ['host-a'],
        agentOptions: {
          plaintext: false,
          link: 'long-poll',
          tls: {
            ca: Buffer.from(pki.ca),
            cert: Buffer.from(pki.hostA.cert),
            key: Buffer.from(pki.hostA.key),
          },
        },
      });
      expect(server.agents.session('host-a')?.certificate).toBeDefined();
      const client = createControlClient(`localhost:${port}`, {
        credentials: ChannelCredentials.createSsl(
          Buffer.from(pki.ca),
          Buffer.from(pki.clientOps.key),
          Buffer.from(pki.clientOps.cert),
        ),
      });
      onTestFinished(() => client.close());
      await expect
        .poll(async () => (await client.listDevices({})).logicalUnits.length, { timeout: 10_000 })
        .toBeGreaterThan(0);
      const { result } = await client.readKeys({ target: DRIVE_PATHS['host-a'] });
      expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    });

    it('authenticates by the mTLS identity at Hello and on every request of the session', async () => {
      const { server, port } = await startTlsServer();
      const anonymous = await post(port, '/agent/v1/connect', [hello('host-a')]);
      expect(anonymous.status).toBe(401);
      expect(anonymous.text).toMatch(/client certificate/);
      const impostor = await post(port, '/agent/v1/connect', [hello('host-b')], pki.hostA);
      expect(impostor.status).toBe(403);
      expect(impostor.text).toMatch(/certificate is for agent "host-a"/);
      expect(
        await post(port, '/agent/v1/connect', [hello('host-a')], pki.rogueHostA),
      ).toMatchObject({ status: 401 });
      const welcomed = await post(port, '/agent/v1/connect', [hello('host-a')], pki.hostA);
      expect(welcomed.status).toBe(200);
      const welcome = welcomed.messages[0]?.message;
      if (welcome?.$case !== 'welcome') throw new Error('no welcome');
      const session = `/agent/v1/sessions/${welcome.value.sessionId}`;
      expect(server.agents.session('host-a')?.link).toBe('long-poll');
      expect(server.agents.session('host-a')?.certificate?.fingerprint256).toMatch(/^[0-9A-F:]+$/);
      // Another certificate (or none) cannot use host-a's session id.
      expect(await post(port, `${session}/poll?wait=0`, [], pki.hostB)).toMatchObject({
        status: 403,
      });
      expect(await post(port, `${session}/poll?wait=0`, [])).toMatchObject({ status: 403 });
      expect(await post(port, `${session}/poll?wait=0`, [], pki.hostA)).toMatchObject({
        status: 200,
        messages: [],
      });
      // The certificate's allow-list applies to long-poll inventories as to the stream's.
      expect(await post(port, `${session}/close`, [], pki.hostA)).toMatchObject({ status: 204 });
      expect(await post(port, `${session}/poll?wait=0`, [], pki.hostA)).toMatchObject({
        status: 410,
      });
    });
  });
});
