import { X509Certificate } from 'node:crypto';
import { ChannelCredentials, ServerCredentials } from '@grpc/grpc-js';
import {
  createChannel,
  createClient,
  createServer,
  Metadata,
  ServerError,
  Status,
  type Channel,
} from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  AgentServiceDefinition,
  ConnectRequest,
  type AgentServiceImplementation,
  type ConnectResponse,
} from '../../src/gen/prfleet/v1/agent.js';
import { Path } from '../../src/gen/prfleet/v1/scsi.js';
import {
  PEER_HEADERS,
  authorizeAgentHello,
  authorizeInventory,
  identityFromCertificate,
  serverCredentials,
  type TlsMaterial,
} from '../../src/server/auth/mtls.js';
import { createTestPki, type Pem, type TestPki } from './pki.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await createTestPki();
});
afterAll(async () => {
  await pki.cleanup();
});

/** A minimal AgentService.Connect: reads Hello, checks it against the certificate, answers Welcome naming it. */
function agentService(requireCertificate: boolean): AgentServiceImplementation {
  return {
    async *connect(requests, ctx) {
      for await (const request of requests) {
        if (request.message?.$case !== 'hello')
          throw new ServerError(Status.INVALID_ARGUMENT, 'first message must be hello');
        const identity = authorizeAgentHello(ctx, request.message.value, { requireCertificate });
        yield {
          message: {
            $case: 'welcome',
            value: { sessionId: identity?.agentId ?? 'anonymous', serverInstance: 'test' },
          },
        };
        return;
      }
    },
  };
}

async function startServer(
  credentials: ServerCredentials,
  requireCertificate = true,
): Promise<number> {
  const server = createServer();
  server.add(AgentServiceDefinition, agentService(requireCertificate));
  const port = await server.listen('127.0.0.1:0', credentials);
  onTestFinished(() => server.forceShutdown());
  return port;
}

function tls(clientCerts: 'require' | 'optional'): TlsMaterial {
  return { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, clientCerts };
}

function agentChannel(port: number, client?: Pem): Channel {
  const credentials = ChannelCredentials.createSsl(
    Buffer.from(pki.ca),
    client === undefined ? null : Buffer.from(client.key),
    client === undefined ? null : Buffer.from(client.cert),
  );
  const channel = createChannel(`localhost:${port}`, credentials);
  onTestFinished(() => channel.close());
  return channel;
}

/** Sends one Hello and returns the first response (or throws the stream's error). */
async function hello(
  channel: Channel,
  agentId: string,
  metadata?: Metadata,
): Promise<ConnectResponse | undefined> {
  const client = createClient(AgentServiceDefinition, channel);
  async function* requests(): AsyncIterable<ConnectRequest> {
    yield ConnectRequest.fromPartial({
      message: { $case: 'hello', value: { agentId, hostname: agentId } },
    });
  }
  for await (const response of client.connect(
    requests(),
    metadata === undefined ? {} : { metadata },
  ))
    return response;
  return undefined;
}

describe('mTLS for agents (real TLS server on 127.0.0.1:0, certificates from the cert tool)', () => {
  it('accepts an agent whose Hello names the agent of its certificate', async () => {
    const port = await startServer(serverCredentials({ tls: tls('require') }));
    const response = await hello(agentChannel(port, pki.hostA), 'host-a');
    expect(response?.message).toMatchObject({ $case: 'welcome', value: { sessionId: 'host-a' } });
  });

  it('refuses a host-a certificate claiming host-b with PERMISSION_DENIED', async () => {
    const port = await startServer(serverCredentials({ tls: tls('require') }));
    await expect(hello(agentChannel(port, pki.hostA), 'host-b')).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: 'certificate is for agent "host-a"; Hello.agent_id "host-b" refused',
    });
  });

  it('refuses a connection without a client certificate at the TLS handshake', async () => {
    const port = await startServer(serverCredentials({ tls: tls('require') }));
    await expect(hello(agentChannel(port), 'host-a')).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
    });
  });

  it('refuses a certificate from another CA at the TLS handshake', async () => {
    const port = await startServer(serverCredentials({ tls: tls('require') }));
    await expect(hello(agentChannel(port, pki.rogueHostA), 'host-a')).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
    });
  });

  describe('optional client certificates (CLI clients with tokens share the port)', () => {
    it('accepts a CA-signed agent certificate', async () => {
      const port = await startServer(serverCredentials({ tls: tls('optional') }));
      const response = await hello(agentChannel(port, pki.hostB), 'host-b');
      expect(response?.message).toMatchObject({ $case: 'welcome', value: { sessionId: 'host-b' } });
    });

    it('lets a certificate-less caller connect but refuses its Hello with UNAUTHENTICATED', async () => {
      const port = await startServer(serverCredentials({ tls: tls('optional') }));
      await expect(hello(agentChannel(port), 'host-a')).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
    });

    it('gives no identity to a certificate from another CA', async () => {
      const port = await startServer(serverCredentials({ tls: tls('optional') }));
      await expect(hello(agentChannel(port, pki.rogueHostA), 'host-a')).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
    });

    it('still refuses a certificate claiming another agent', async () => {
      const port = await startServer(serverCredentials({ tls: tls('optional') }));
      await expect(hello(agentChannel(port, pki.hostB), 'host-a')).rejects.toMatchObject({
        code: Status.PERMISSION_DENIED,
      });
    });
  });

  describe('forged identity headers', () => {
    const forged = (): Metadata =>
      Metadata({
        [PEER_HEADERS.agentId]: 'host-a',
        [PEER_HEADERS.allow]: '[]',
        [PEER_HEADERS.fingerprint]: 'AA',
        [PEER_HEADERS.proof]: 'guess',
      });

    it('are stripped on a plaintext server built with serverCredentials', async () => {
      const port = await startServer(serverCredentials({ plaintext: true }));
      const channel = createChannel(`127.0.0.1:${port}`);
      onTestFinished(() => channel.close());
      await expect(hello(channel, 'host-a', forged())).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
    });

    it('are not trusted on a server that lacks the interceptor', async () => {
      const port = await startServer(ServerCredentials.createInsecure());
      const channel = createChannel(`127.0.0.1:${port}`);
      onTestFinished(() => channel.close());
      await expect(hello(channel, 'host-a', forged())).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
    });

    it('do not matter when certificates are not required (plaintext development mode)', async () => {
      const port = await startServer(serverCredentials({ plaintext: true }), false);
      const channel = createChannel(`127.0.0.1:${port}`);
      onTestFinished(() => channel.close());
      const response = await hello(channel, 'host-a', forged());
      expect(response?.message).toMatchObject({
        $case: 'welcome',
        value: { sessionId: 'anonymous' },
      });
    });
  });

  it('refuses to build credentials without TLS unless plaintext is asked for', () => {
    expect(() => serverCredentials({})).toThrow('no TLS material given; pass plaintext: true');
    expect(() => serverCredentials({ tls: tls('require'), plaintext: true })).toThrow('not both');
    expect(() => serverCredentials({ tls: { ...tls('require'), ca: 'not a pem' } })).toThrow(
      'no PEM certificate',
    );
  });
});

describe('device allow-list from the certificate', () => {
  const paths = [
    Path.fromPartial({ path: '/dev/sg1', luId: 'naa.5000e11100000001' }),
    Path.fromPartial({ path: '/dev/sg12', luId: 'naa.600140500000000c' }),
    Path.fromPartial({ path: '/dev/sg2', luId: 'naa.5000e11100000002' }),
    Path.fromPartial({ path: '/dev/sg3', luId: 'naa.600140500000000d' }),
  ];

  it('keeps only paths whose node or LU id matches a glob', () => {
    const identity = identityFromCertificate(new X509Certificate(pki.hostC.cert));
    const { allowed, denied } = authorizeInventory(identity, paths);
    expect(allowed.map((p) => p.path)).toEqual(['/dev/sg1', '/dev/sg12', '/dev/sg2']);
    expect(denied.map((p) => p.path)).toEqual(['/dev/sg3']);
  });

  it('matches normalized paths only: `..`, `.` and `//` never pass, and `*` stops at `/`', () => {
    const identity = identityFromCertificate(new X509Certificate(pki.hostC.cert)); // /dev/sg1*, naa.5000e111*
    const sneaky = [
      '/dev/sg1/../sg0',
      '/dev/sg1/./x',
      '/dev//sg1',
      '/dev/sg1/',
      '/dev/sg1x/sg0',
    ].map((path) => Path.fromPartial({ path, luId: 'naa.600140500000000d' }));
    const { allowed, denied } = authorizeInventory(identity, sneaky);
    expect(allowed).toEqual([]);
    expect(denied).toHaveLength(sneaky.length);
    // Not even by a matching LU id.
    const byLu = Path.fromPartial({ path: '/dev/sg1/../sg0', luId: 'naa.5000e11100000001' });
    expect(authorizeInventory(identity, [byLu]).allowed).toEqual([]);
  });

  it('allows everything for a certificate without an allow-list, or without a certificate', () => {
    const identity = identityFromCertificate(new X509Certificate(pki.hostA.cert));
    expect(authorizeInventory(identity, paths).denied).toEqual([]);
    expect(authorizeInventory(undefined, paths).allowed).toHaveLength(4);
  });
});
