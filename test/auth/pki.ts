import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  initCa,
  issueAgentCert,
  issueClientCert,
  issueServerCert,
} from '../../src/tools/openssl-ca.js';

/** PEM text of one issued certificate and its key. */
export interface Pem {
  cert: string;
  key: string;
}

/** A throw-away PKI made with the real cert tool: CA, server, agents host-a/host-b/host-c, and a rogue CA's agent. */
export interface TestPki {
  dir: string;
  ca: string;
  server: Pem;
  hostA: Pem;
  hostB: Pem;
  /** host-c may only report /dev/sg1* and LU naa.5000e111*. */
  hostC: Pem;
  /** Certificate for "host-a" from a different CA. */
  rogueHostA: Pem;
  /** Client (not agent) certificate "ops" (SAN URI prfleet:client:ops). */
  clientOps: Pem;
  cleanup(): Promise<void>;
}

async function pem(files: { cert: string; key: string }): Promise<Pem> {
  return { cert: await readFile(files.cert, 'utf8'), key: await readFile(files.key, 'utf8') };
}

/** Creates the PKI in a temp directory (a few openssl runs, ~0.3 s). */
export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'prfleet-pki-'));
  const ca = join(dir, 'ca');
  const rogue = join(dir, 'rogue');
  await initCa({ out: ca });
  await initCa({ out: rogue, commonName: 'rogue CA' });
  const [server, hostA, hostB, hostC, rogueHostA, clientOps] = await Promise.all([
    issueServerCert({ out: join(dir, 'server'), caDir: ca }),
    issueAgentCert({ out: join(dir, 'agents'), caDir: ca, id: 'host-a' }),
    issueAgentCert({ out: join(dir, 'agents'), caDir: ca, id: 'host-b' }),
    issueAgentCert({
      out: join(dir, 'agents'),
      caDir: ca,
      id: 'host-c',
      allow: ['/dev/sg1*', 'naa.5000e111*'],
    }),
    issueAgentCert({ out: join(dir, 'rogue-agents'), caDir: rogue, id: 'host-a' }),
    issueClientCert({ out: join(dir, 'clients'), caDir: ca, name: 'ops' }),
  ]);
  return {
    dir,
    ca: await readFile(join(ca, 'ca.crt'), 'utf8'),
    server: await pem(server),
    hostA: await pem(hostA),
    hostB: await pem(hostB),
    hostC: await pem(hostC),
    rogueHostA: await pem(rogueHostA),
    clientOps: await pem(clientOps),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
