import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { ChannelCredentials } from '@grpc/grpc-js';
import { createChannel, createClient } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import {
  AgentServiceDefinition,
  type ConnectRequest,
  type ConnectResponse,
} from '../../src/gen/prfleet/v1/agent.js';
import { ControlServiceDefinition } from '../../src/gen/prfleet/v1/control.js';
import { createMemoryTokenStore, createToken } from '../../src/server/auth/index.js';
import { serverCredentials } from '../../src/server/auth/mtls.js';
import { defaultServerConfig } from '../../src/server/config.js';
import { createPrfleetServer } from '../../src/server/server.js';
import { metricsRoute } from '../../src/server/http/metrics-route.js';
import { createMetrics, observeAgents, rpcObserver } from '../../src/server/metrics.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { createTestPki, type TestPki } from '../auth/pki.js';

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One HTTP/1.1 request with node:http (or https with `tls`), answered as text. */
function get(
  port: number,
  path: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: Buffer;
    tls?: { ca: string; cert?: string; key?: string; ALPNProtocols?: string[] };
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const common = {
      host: options.tls === undefined ? '127.0.0.1' : 'localhost',
      port,
      path,
      method: options.method ?? 'GET',
      headers: options.headers ?? {},
      agent: false as const,
    };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          headers: res.headers,
        }),
      );
    };
    const req =
      options.tls === undefined
        ? httpRequest(common, onResponse)
        : httpsRequest({ ...common, ...options.tls }, onResponse);
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('one port, plaintext', () => {
  it('serves gRPC and HTTP/1.1 on the same port, with 404/405/413 for what has no route', async () => {
    const { port, address, client, server } = await startTestServer();
    await startEmulatedAgents({ address, hosts: ['host-a'] });
    const { agents } = await client.listAgents({});
    expect(agents.map((a) => a.agentId)).toEqual(['host-a']);
    expect(await get(port, '/healthz')).toMatchObject({ status: 200, body: 'SERVING\n' });
    expect(await get(port, `/healthz?service=${ControlServiceDefinition.fullName}`)).toMatchObject({
      status: 200,
    });
    expect(await get(port, '/healthz?service=nope')).toMatchObject({ status: 404 });
    expect(await get(port, '/nothing-here')).toMatchObject({ status: 404 });
    expect(await get(port, '/healthz', { method: 'POST' })).toMatchObject({
      status: 405,
      headers: { allow: 'GET' },
    });
    server.http.register({
      method: 'POST',
      path: '/echo',
      auth: 'none',
      maxBodyBytes: 16,
      async handler(_req, res, ctx) {
        res.end(await ctx.body());
      },
    });
    expect(await get(port, '/echo', { method: 'POST', body: Buffer.from('hello') })).toMatchObject({
      status: 200,
      body: 'hello',
    });
    expect(await get(port, '/echo', { method: 'POST', body: Buffer.alloc(17) })).toMatchObject({
      status: 413,
    });
    expect(() =>
      server.http.register({ method: 'POST', path: '/echo', auth: 'none', handler() {} }),
    ).toThrow(/registered already/);
    // gRPC still works after HTTP/1.1 traffic on the port.
    expect((await client.listAgents({})).agents).toHaveLength(1);
  });

  it('serves /metrics on the main port when metrics are on (viewer role with tokens)', async () => {
    const tokens = createMemoryTokenStore();
    const viewer = (await createToken(tokens, { name: 'prometheus', role: 'viewer' })).token;
    const metrics = createMetrics();
    const { port, server, address } = await startTestServer({
      deps: { tokens, observeRpc: rpcObserver(metrics) },
    });
    server.http.register(metricsRoute(metrics.registry));
    const agents = await startEmulatedAgents({ address, hosts: ['host-b'] });
    onTestFinished(observeAgents(metrics, server.agents));
    expect(agents.agents).toHaveLength(1);
    expect(await get(port, '/metrics')).toMatchObject({ status: 401 });
    const scraped = await get(port, '/metrics', { headers: { authorization: `Bearer ${viewer}` } });
    expect(scraped.status).toBe(200);
    expect(scraped.headers['content-type']).toMatch(/^text\/plain/);
    expect(scraped.body).toMatch(/^prfleet_agents_connected 1$/m);
  });

  it('answers 503 NOT_SERVING on /healthz once the server drains', async () => {
    const { port, server } = await startTestServer();
    await server.drain(100);
    expect(await get(port, '/healthz')).toMatchObject({ status: 503, body: 'NOT_SERVING\n' });
  });

  it('checks bearer tokens and roles on role routes, and times out slow handlers', async () => {
    const tokens = createMemoryTokenStore();
    const viewer = (await createToken(tokens, { name: 'vera', role: 'viewer' })).token;
    const admin = (await createToken(tokens, { name: 'ada', role: 'admin' })).token;
    const { port, server } = await startTestServer({ deps: { tokens } });
    server.http.register({
      method: 'GET',
      prefix: '/admin/',
      auth: 'admin',
      handler: (_req, res, ctx) => void res.end(`hi ${ctx.principal?.name} ${ctx.rest}`),
    });
    server.http.register({
      method: 'GET',
      path: '/slow',
      auth: 'none',
      timeoutMs: 100,
      handler: () => undefined,
    });
    expect(await get(port, '/admin/x')).toMatchObject({ status: 401 });
    const as = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
    expect(await get(port, '/admin/x', as(viewer))).toMatchObject({ status: 403 });
    expect(await get(port, '/admin/x', as('prf_000000000000_nope'))).toMatchObject({ status: 401 });
    expect(await get(port, '/admin/x', as(admin))).toMatchObject({ status: 200, body: 'hi ada x' });
    // The cookie is a credential for reads only.
    expect(
      await get(port, '/admin/y', { headers: { cookie: `prfleet_token=${admin}` } }),
    ).toMatchObject({ status: 200, body: 'hi ada y' });
    expect(await get(port, '/slow')).toMatchObject({ status: 503 });
  });
});

describe('one port, TLS', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await createTestPki();
  });
  afterAll(async () => {
    await pki.cleanup();
  });

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

  it('routes by ALPN: h2 to gRPC (the mTLS agent identity still reaches AgentService), http/1.1 to HTTP', async () => {
    const { server, port } = await startTlsServer();
    const alpn = (protocols: string[]) =>
      new Promise<string | false>((resolve, reject) => {
        const socket = tlsConnect(
          { host: 'localhost', port, ca: pki.ca, ALPNProtocols: protocols },
          () => {
            resolve(socket.alpnProtocol ?? false);
            socket.end();
          },
        );
        socket.on('error', reject);
      });
    expect(await alpn(['h2'])).toBe('h2');
    expect(await alpn(['http/1.1'])).toBe('http/1.1');
    expect(await alpn(['h2', 'http/1.1'])).toBe('h2');
    expect(
      await get(port, '/healthz', { tls: { ca: pki.ca, ALPNProtocols: ['http/1.1'] } }),
    ).toMatchObject({ status: 200, body: 'SERVING\n' });
    // No ALPN at all (old clients): HTTP/1.1.
    expect(await get(port, '/healthz', { tls: { ca: pki.ca } })).toMatchObject({ status: 200 });

    // An agent with host-a's certificate connects over gRPC on the same port: its identity is verified.
    const channel = createChannel(
      `localhost:${port}`,
      ChannelCredentials.createSsl(
        Buffer.from(pki.ca),
        Buffer.from(pki.hostA.key),
        Buffer.from(pki.hostA.cert),
      ),
    );
    onTestFinished(() => channel.close());
    const abort = new AbortController();
    onTestFinished(() => abort.abort());
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
          acceptsCommandBatches: false,
        },
      },
    });
    async function* requests(agentId: string): AsyncGenerator<ConnectRequest> {
      yield hello(agentId);
      await new Promise((r) => abort.signal.addEventListener('abort', r));
    }
    const client = createClient(AgentServiceDefinition, channel);
    const stream: AsyncIterator<ConnectResponse> = client
      .connect(requests('host-a'), { signal: abort.signal })
      [Symbol.asyncIterator]();
    const first = await stream.next();
    expect((first.value as ConnectResponse).message?.$case).toBe('welcome');
    expect(server.agents.session('host-a')?.certificate?.fingerprint256).toMatch(/^[0-9A-F:]+$/);
    // The same certificate for another agent id is refused (the identity, not just "some certificate").
    await expect(
      client.connect(requests('host-b'), { signal: abort.signal })[Symbol.asyncIterator]().next(),
    ).rejects.toThrow(/certificate is for agent "host-a"/);
  });

  it('without tokens, role routes need a client certificate that is not an agent certificate', async () => {
    const { server, port } = await startTlsServer();
    server.http.register({
      method: 'GET',
      path: '/view',
      auth: 'viewer',
      handler: (_req, res) => void res.end('ok'),
    });
    const tls = (cert?: { cert: string; key: string }) => ({
      tls: { ca: pki.ca, ...(cert === undefined ? {} : { cert: cert.cert, key: cert.key }) },
    });
    expect(await get(port, '/view', tls())).toMatchObject({ status: 401 });
    expect(await get(port, '/view', tls(pki.hostA))).toMatchObject({ status: 403 });
    expect(await get(port, '/view', tls(pki.clientOps))).toMatchObject({ status: 200, body: 'ok' });
  });
});
