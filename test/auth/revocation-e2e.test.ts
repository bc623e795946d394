import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChannelCredentials } from '@grpc/grpc-js';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createAgent, type Agent } from '../../agent/agent.js';
import { createEmulatedFabric, loadFabric } from '../../agent/fabric.js';
import { createEmulatedSource } from '../../agent/sources.js';
import { createControlClient } from '../../src/common/client.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { createLogger } from '../../src/common/logger.js';
import { revokeCertificate } from '../../src/tools/certs.js';
import { DEMO_FABRIC, ensureBuilt, startServerChild } from '../helpers/processes.js';
import { readKeysSession } from '../helpers/session.js';
import { createFileTokenStore, createToken } from '../../src/server/auth/index.js';
import { connectFakeAgent, tlsAs } from '../server/fake-agent.js';
import { createTestPki, reencodeSignature, type Pem, type TestPki } from './pki.js';

// The built prfleet-server with TLS, no client tokens and a revocation list it polls every 100 ms; agents present
// agent certificates of the test CA, the control client a client certificate.

const log = createLogger({ level: 'silent' });
let pki: TestPki;
let dir: string;
let files: { ca: string; serverCert: string; serverKey: string; hostA: string; revoked: string };
beforeAll(async () => {
  await ensureBuilt();
  pki = await createTestPki();
  dir = await mkdtemp(join(tmpdir(), 'prfleet-revocation-'));
  files = {
    ca: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    hostA: join(dir, 'host-a.crt'),
    revoked: join(dir, 'revoked.txt'),
  };
  await Promise.all([
    writeFile(files.ca, pki.ca),
    writeFile(files.serverCert, pki.server.cert),
    writeFile(files.serverKey, pki.server.key),
    writeFile(files.hostA, pki.hostA.cert),
    writeFile(files.revoked, '# revoked client certificates\n'),
  ]);
});
afterAll(async () => {
  await pki.cleanup();
  await rm(dir, { recursive: true, force: true });
});

const credentialsOf = (pem: Pem) =>
  ChannelCredentials.createSsl(Buffer.from(pki.ca), Buffer.from(pem.key), Buffer.from(pem.cert));

async function startAgent(address: string, id: 'host-a' | 'host-b', pem: Pem): Promise<Agent> {
  const fabric = createEmulatedFabric(await loadFabric(DEMO_FABRIC));
  const agent = createAgent(
    {
      server: address,
      agentId: id,
      plaintext: false,
      tls: { ca: Buffer.from(pki.ca), cert: Buffer.from(pem.cert), key: Buffer.from(pem.key) },
      backoff: { initialMs: 50, maxMs: 200 },
      drainMs: 500,
    },
    { log, source: createEmulatedSource(fabric.host(id)) },
  );
  onTestFinished(() => agent.stop());
  await agent.start();
  await agent.waitForState('connected');
  return agent;
}

describe('revoked client certificates (PRFLEET_TLS_REVOKED)', () => {
  it('cuts off a connected agent when its certificate is revoked, refuses it from then on, and leaves the others be', async () => {
    const server = await startServerChild({
      PRFLEET_PLAINTEXT: 'false',
      PRFLEET_TLS_CERT: files.serverCert,
      PRFLEET_TLS_KEY: files.serverKey,
      PRFLEET_TLS_CA: files.ca,
      PRFLEET_TOKENS: 'off',
      PRFLEET_TLS_REVOKED: files.revoked,
      PRFLEET_TLS_REVOKED_POLL_MS: '100',
    });
    const address = `localhost:${server.port}`;
    const hostA = await startAgent(address, 'host-a', pki.hostA);
    await startAgent(address, 'host-b', pki.hostB);
    // Without tokens the certificate is the credential: a client certificate may call ControlService, an agent's
    // may only open its own stream.
    const viaOps = createControlClient(address, { credentials: credentialsOf(pki.clientOps) });
    const viaA = createControlClient(address, { credentials: credentialsOf(pki.hostA) });
    onTestFinished(() => {
      viaA.close();
      viaOps.close();
    });
    const connected = async () =>
      Object.fromEntries(
        (await viaOps.listAgents({})).agents.map((a) => [a.agentId, a.connected] as const),
      );
    await expect.poll(connected).toEqual({ 'host-a': true, 'host-b': true });
    expect(await viaA.listAgents({}, { retry: false }).catch((e: unknown) => e)).toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: expect.stringContaining('may only connect that agent') as unknown,
    });

    await revokeCertificate({ cert: files.hostA, list: files.revoked, reason: 'host retired' });

    // The stream of host-a ends (UNAUTHENTICATED) and its reconnects are refused: it stays away.
    await expect.poll(connected, { timeout: 5_000 }).toEqual({ 'host-a': false, 'host-b': true });
    const sessions = hostA.sessions;
    await new Promise((r) => setTimeout(r, 600)); // several reconnect attempts at 50–200 ms backoff
    expect(hostA.sessions).toBe(sessions);
    expect(await connected()).toEqual({ 'host-a': false, 'host-b': true });
    // The revoked certificate is refused as such everywhere.
    const refused = await viaA.listAgents({}, { retry: false }).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: Status.UNAUTHENTICATED,
      details: expect.stringContaining('is revoked') as unknown,
    });
    // A client certificate is revoked the same way, also for the session it has open already.
    const ask = readKeysSession(viaOps, { agentId: 'host-b', path: '/dev/sg0' });
    expect(await ask()).toEqual({ outcome: Outcome.OUTCOME_GOOD });
    const opsFile = join(dir, 'ops.crt');
    await writeFile(opsFile, pki.clientOps.cert);
    await revokeCertificate({ cert: opsFile, list: files.revoked, reason: 'laptop lost' });
    await expect
      .poll(() => viaOps.listAgents({}, { retry: false }).catch((e: unknown) => e), {
        timeout: 5_000,
      })
      .toMatchObject({ code: Status.UNAUTHENTICATED });
    expect(await ask()).toEqual({ errorCode: Status.UNAUTHENTICATED });

    // The same certificates with their signatures re-encoded ((r, n − s): still the CA's signature, another
    // SHA-256 fingerprint) are refused just the same: the list names issuer + serial and key.
    const reA = { cert: reencodeSignature(pki.hostA.cert), key: pki.hostA.key };
    const hello = await connectFakeAgent(address, {
      agentId: 'host-a',
      credentials: tlsAs(pki.ca, reA),
    }).catch((e: { end?: unknown }) => e.end);
    expect(hello).toMatchObject({
      code: Status.UNAUTHENTICATED,
      details: expect.stringContaining('is revoked') as unknown,
    });
    const reOps = createControlClient(address, {
      credentials: tlsAs(pki.ca, {
        cert: reencodeSignature(pki.clientOps.cert),
        key: pki.clientOps.key,
      }),
    });
    onTestFinished(() => reOps.close());
    expect(await reOps.listAgents({}, { retry: false }).catch((e: unknown) => e)).toMatchObject({
      code: Status.UNAUTHENTICATED,
      details: expect.stringContaining('is revoked') as unknown,
    });
  });

  it('refuses a revoked client certificate whatever token comes along, also re-encoded', async () => {
    const tokenFile = join(dir, 'tokens.json');
    const { token } = await createToken(createFileTokenStore(tokenFile), {
      name: 'ada',
      role: 'admin',
    });
    const list = join(dir, 'revoked-token-server.txt');
    const opsFile = join(dir, 'ops-token-server.crt');
    await writeFile(opsFile, pki.clientOps.cert);
    await revokeCertificate({ cert: opsFile, list });
    const server = await startServerChild({
      PRFLEET_PLAINTEXT: 'false',
      PRFLEET_TLS_CERT: files.serverCert,
      PRFLEET_TLS_KEY: files.serverKey,
      PRFLEET_TLS_CA: files.ca,
      PRFLEET_TOKENS: 'file',
      PRFLEET_TOKENS_FILE: tokenFile,
      PRFLEET_TLS_REVOKED: list,
    });
    const address = `localhost:${server.port}`;
    const client = (cert?: string) => {
      const c = createControlClient(address, {
        token,
        credentials:
          cert === undefined
            ? ChannelCredentials.createSsl(Buffer.from(pki.ca))
            : tlsAs(pki.ca, { cert, key: pki.clientOps.key }),
      });
      onTestFinished(() => c.close());
      return c;
    };
    // The token alone is enough; with the revoked certificate, in either encoding, it is not.
    expect((await client().listAgents({})).agents).toEqual([]);
    for (const cert of [pki.clientOps.cert, reencodeSignature(pki.clientOps.cert)]) {
      expect(
        await client(cert)
          .listAgents({}, { retry: false })
          .catch((e: unknown) => e),
      ).toMatchObject({ code: Status.UNAUTHENTICATED });
    }
  });
});
