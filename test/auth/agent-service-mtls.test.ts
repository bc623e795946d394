import { ChannelCredentials } from '@grpc/grpc-js';
import { createChannel, createClient, createServer, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { AgentServiceDefinition, type ConnectRequest } from '../../src/gen/prfleet/v1/agent.js';
import { Path } from '../../src/gen/prfleet/v1/scsi.js';
import { AgentRegistry } from '../../src/server/agents/index.js';
import { createAgentService } from '../../src/server/agents/service.js';
import { serverCredentials } from '../../src/server/auth/mtls.js';
import { createInProcessRouter } from '../../src/server/router.js';
import { createTestPki, type Pem, type TestPki } from './pki.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await createTestPki();
});
afterAll(async () => {
  await pki.cleanup();
});

const log = createLogger({ level: 'silent' });

/** The real AgentService on a TLS port whose client certificates are optional (tokens could share it). */
async function startAgentServer(options: { requireAgentCertificate?: boolean } = {}) {
  const registry = new AgentRegistry({
    heartbeatMs: 10_000,
    missedHeartbeats: 3,
    outboxCapacity: 16,
    log,
  });
  registry.configure({ requireAgentCertificate: options.requireAgentCertificate ?? true });
  const router = createInProcessRouter({ registry, log, instanceId: 'tls' });
  const agentService = createAgentService({ registry, router, instanceId: 'tls', log });
  const server = createServer({ interceptors: [agentService.interceptor] });
  server.add(AgentServiceDefinition, agentService.implementation);
  const credentials = serverCredentials({
    tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, clientCerts: 'optional' },
  });
  const port = await server.listen('127.0.0.1:0', credentials);
  onTestFinished(() => server.forceShutdown());
  return { registry, port };
}

/** Opens Connect with `cert` (or none), sends Hello (+ an inventory), returns the first reply or the error code. */
async function connect(
  port: number,
  agentId: string,
  cert: Pem | undefined,
  paths: string[] = [],
  beforeHello: Promise<void> = Promise.resolve(),
) {
  const channel = createChannel(
    `localhost:${port}`,
    ChannelCredentials.createSsl(
      Buffer.from(pki.ca),
      cert === undefined ? null : Buffer.from(cert.key),
      cert === undefined ? null : Buffer.from(cert.cert),
    ),
  );
  onTestFinished(() => channel.close());
  const client = createClient(AgentServiceDefinition, channel);
  const abort = new AbortController();
  onTestFinished(() => abort.abort());
  async function* requests(): AsyncGenerator<ConnectRequest> {
    await beforeHello;
    yield {
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
    };
    yield {
      message: {
        $case: 'inventory',
        value: {
          paths: paths.map((p) => Path.fromPartial({ path: p, luId: `lu-${p}`, online: true })),
        },
      },
    };
    await new Promise((r) => abort.signal.addEventListener('abort', r, { once: true }));
  }
  try {
    for await (const reply of client.connect(requests(), { signal: abort.signal })) {
      return { welcome: reply.message?.$case === 'welcome' };
    }
    return { welcome: false };
  } catch (e) {
    return { code: (e as { code?: Status }).code, details: (e as { details?: string }).details };
  }
}

describe('AgentService with mTLS', () => {
  it('admits an agent whose certificate names its Hello.agent_id', async () => {
    const { registry, port } = await startAgentServer();
    expect(await connect(port, 'host-a', pki.hostA)).toEqual({ welcome: true });
    expect(registry.session('host-a')).toBeDefined();
  });

  it('refuses a certificate for another agent id with PERMISSION_DENIED', async () => {
    const { registry, port } = await startAgentServer();
    const answer = await connect(port, 'host-b', pki.hostA);
    expect(answer.code).toBe(Status.PERMISSION_DENIED);
    expect(answer.details).toContain('certificate is for agent "host-a"');
    expect(registry.list()).toEqual([]);
  });

  it('refuses an agent without a certificate with UNAUTHENTICATED when certificates are required', async () => {
    const { registry, port } = await startAgentServer();
    expect((await connect(port, 'host-a', undefined)).code).toBe(Status.UNAUTHENTICATED);
    expect(registry.list()).toEqual([]);
  });

  it('refuses a certificate from another CA (no identity) with UNAUTHENTICATED', async () => {
    const { port } = await startAgentServer();
    const answer = await connect(port, 'host-a', pki.rogueHostA);
    // grpc-js verifies optional client certificates in the handshake: a rogue chain fails there or gets no identity.
    expect([Status.UNAUTHENTICATED, Status.UNAVAILABLE]).toContain(answer.code);
  });

  it('admits a certificate-less agent when certificates are not required (plaintext-era servers)', async () => {
    const { port } = await startAgentServer({ requireAgentCertificate: false });
    expect(await connect(port, 'host-a', undefined)).toEqual({ welcome: true });
  });

  it('refuses a Hello sent after the certificate was revoked, though the stream opened before', async () => {
    const { registry, port } = await startAgentServer();
    let revoked = false;
    registry.configure({ isCertificateRevoked: () => revoked });
    let sayHello!: () => void;
    const answer = connect(port, 'host-a', pki.hostA, [], new Promise((r) => (sayHello = r)));
    await new Promise((r) => setTimeout(r, 200)); // the stream is open, its certificate judged fine
    revoked = true;
    sayHello();
    expect(await answer).toMatchObject({
      code: Status.UNAUTHENTICATED,
      details: expect.stringContaining('is revoked') as unknown,
    });
    expect(registry.session('host-a')).toBeUndefined();
  });

  it('keeps only the inventory paths the certificate allow-list names', async () => {
    const { registry, port } = await startAgentServer();
    expect(
      await connect(port, 'host-c', pki.hostC, ['/dev/sg0', '/dev/sg1', '/dev/sg12', '/dev/sg2']),
    ).toEqual({ welcome: true });
    await expect
      .poll(() => registry.get('host-c')?.paths.map((p) => p.path))
      .toEqual(['/dev/sg1', '/dev/sg12']);
  });
});
