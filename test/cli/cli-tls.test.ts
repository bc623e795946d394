// The built `prfleet` binary against the real prfleet-server binary serving TLS, with bearer tokens in the
// durable store (PostgreSQL when reachable, else PGlite), an agent connected over mutual TLS with its own
// certificate, and the key registry deciding which keys an operator may use. Nothing here is in-process.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChannelCredentials } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { createControlClient } from '../../src/common/client.js';
import {
  builtBinaries,
  spawnNode,
  startServerProcess,
  type ChildHandle,
  type ServerProcess,
} from '../../src/demo/processes.js';
import { createTokensProgram } from '../../src/tools/tokens.js';
import { createTestPki, type TestPki } from '../auth/pki.js';
import { DEMO_FABRIC, ensureBuilt, runNode, type CliRun } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';
import { TEST_DATABASE_URL, probePg } from '../store/backends.js';

const pgUnreachable = await probePg();
if (pgUnreachable !== undefined && process.env['CI'] !== 'true') {
  console.warn(
    `cli-tls: PostgreSQL unreachable (${pgUnreachable}); using PGlite (slower start, no revocation while running)`,
  );
}
const usePg = pgUnreachable === undefined || process.env['CI'] === 'true';
const schema = `prfleet_clitls_${process.pid}_${randomBytes(3).toString('hex')}`;

let pki: TestPki;
let dir: string;
let server: ServerProcess;
let agent: ChildHandle;
const file: Record<string, string> = {};
const ids: Record<string, string> = {};

/** Where the tokens and the key registry live: the server's store settings. */
const storeEnv = (): Record<string, string> =>
  usePg
    ? { PRFLEET_STORE: 'postgres', DATABASE_URL: TEST_DATABASE_URL, PRFLEET_DB_SCHEMA: schema }
    : { PRFLEET_STORE: 'pglite', PRFLEET_DATA_DIR: join(dir, 'data') };

/** prfleet-tokens, in-process, against the server's store. */
async function tokens(...args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const where = usePg
    ? ['--database-url', TEST_DATABASE_URL, '--schema', schema]
    : ['--data-dir', join(dir, 'data')];
  await createTokensProgram((l) => lines.push(l), { env: {} }).parseAsync([...args, ...where], {
    from: 'user',
  });
  return lines;
}

/** The built CLI, with only the connection settings given here (nothing inherited from the test's env). */
function prfleet(args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runNode(
    builtBinaries().cli,
    args,
    {
      PRFLEET_SERVER: server.address,
      PRFLEET_PLAINTEXT: undefined,
      PRFLEET_TLS: undefined,
      PRFLEET_TLS_CA: undefined,
      PRFLEET_TLS_CERT: undefined,
      PRFLEET_TLS_KEY: undefined,
      PRFLEET_TOKEN: undefined,
      PRFLEET_TOKEN_FILE: undefined,
      ...env,
    },
    60_000,
  );
}

beforeAll(async () => {
  await ensureBuilt();
  pki = await createTestPki();
  dir = await mkdtemp(join(tmpdir(), 'prfleet-cli-tls-'));
  const write = async (name: string, text: string) => {
    file[name] = join(dir, name);
    await writeFile(file[name], text, { mode: 0o600 });
  };
  await write('ca.crt', pki.ca);
  await write('server.crt', pki.server.cert);
  await write('server.key', pki.server.key);
  await write('host-a.crt', pki.hostA.cert);
  await write('host-a.key', pki.hostA.key);
  file['rogue-ca.crt'] = join(pki.dir, 'rogue', 'ca.crt');

  // Tokens go into the database before the server starts (PGlite's directory is the server's once it runs).
  for (const [role, name] of [
    ['viewer', 'vera'],
    ['operator', 'otto'],
    ['admin', 'ada'],
  ] as const) {
    const [line = '{}'] = await tokens('create', '--role', role, '--name', name, '--json');
    const created = JSON.parse(line) as { token: string; id: string };
    ids[role] = created.id;
    await write(`${role}.token`, `${created.token}\n`);
  }

  server = await startServerProcess({
    env: {
      PRFLEET_PLAINTEXT: 'false',
      PRFLEET_TLS_CERT: file['server.crt'],
      PRFLEET_TLS_KEY: file['server.key'],
      PRFLEET_TLS_CA: file['ca.crt'],
      ...storeEnv(),
    },
  });
  // host-a of the demo fabric, dialling out over mutual TLS with the certificate naming it.
  agent = spawnNode(
    builtBinaries().agent,
    [
      '--server',
      server.address,
      '--tls-ca',
      file['ca.crt'] ?? '',
      '--tls-cert',
      file['host-a.crt'] ?? '',
      '--tls-key',
      file['host-a.key'] ?? '',
      '--agent-id',
      'host-a',
      '--transport',
      'emulated',
      '--fabric',
      DEMO_FABRIC,
      '--host',
      'host-a',
    ],
    { name: 'prfleet-agent host-a (mTLS)', env: { PRFLEET_PLAINTEXT: undefined } },
  );
  const client = createControlClient(`localhost:${server.port}`, {
    credentials: ChannelCredentials.createSsl(Buffer.from(pki.ca)),
    token: (await import('node:fs')).readFileSync(file['viewer.token'] ?? '', 'utf8').trim(),
  });
  try {
    for (let i = 0; ; i += 1) {
      const { logicalUnits } = await client.listDevices({});
      if (
        logicalUnits.some((lu) =>
          lu.paths.some(
            (p) => p.agentId === 'host-a' && p.path?.path === '/dev/sg2' && p.agentConnected,
          ),
        )
      )
        break;
      if (i > 300) throw new Error('host-a did not come online over mTLS');
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client.close();
  }
}, 240_000);

afterAll(async () => {
  await agent?.stop();
  await server?.handle.stop();
  await pki?.cleanup();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  if (usePg && pgUnreachable === undefined) {
    const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => c.end());
  }
}, 60_000);

const ca = () => ['--ca', file['ca.crt'] ?? ''];
const as = (role: string) => ['--token-file', file[`${role}.token`] ?? ''];

describe('prfleet over TLS with tokens (built binaries)', { timeout: 120_000 }, () => {
  it('lets a viewer read over TLS with the fleet CA, by flags or by environment', async () => {
    const keys = await prfleet([...ca(), ...as('viewer'), 'keys', 'host-a:/dev/sg2']);
    expect(keys.stderr).toBe('');
    expect(keys.code).toBe(ExitCode.OK);
    expect(keys.stdout).toContain('READ KEYS: GOOD');

    const viaEnv = await prfleet(['-o', 'json', 'agents'], {
      PRFLEET_TLS_CA: file['ca.crt'] ?? '',
      PRFLEET_TOKEN_FILE: file['viewer.token'] ?? '',
    });
    expect(viaEnv.code).toBe(ExitCode.OK);
    expect(viaEnv.stdout).toContain('"agentId": "host-a"');

    // A client certificate is optional on this port; one signed by the fleet CA is accepted.
    const mtls = await prfleet([
      ...ca(),
      '--tls-cert',
      file['host-a.crt'] ?? '',
      '--tls-key',
      file['host-a.key'] ?? '',
      ...as('viewer'),
      'agents',
    ]);
    expect(mtls.code).toBe(ExitCode.OK);
  });

  it('answers a call without a token with UNAUTHENTICATED (exit 86) and says how to pass one', async () => {
    const run = await prfleet([...ca(), 'keys', 'host-a:/dev/sg2']);
    expect(run.code).toBe(ExitCode.RPC_UNAUTHENTICATED);
    expect(run.stderr).toContain('prfleet: UNAUTHENTICATED: missing bearer token');
    expect(run.stderr).toContain('→ the server wants a bearer token: pass --token-file <file>');
  });

  it('refuses an operator PREEMPT with PERMISSION_DENIED (exit 87), nothing sent', async () => {
    const run = await prfleet([
      ...ca(),
      ...as('operator'),
      'preempt',
      'host-a:/dev/sg2',
      '--key',
      '0xa1',
      '--preempt-key',
      '0xb1',
      '--type',
      'ea',
      '--reason',
      'test',
    ]);
    expect(run.code).toBe(ExitCode.RPC_PERMISSION_DENIED);
    expect(run.stderr).toContain(
      'prfleet: PERMISSION_DENIED: Preempt needs role admin; otto has operator',
    );
    expect(run.stderr).toContain('nothing was sent');
  });

  it('lets an operator register only with a key the registry allocated to it', async () => {
    const allocated = await prfleet([
      ...ca(),
      ...as('admin'),
      '-o',
      'json',
      'registry',
      'allocate',
      '--agent',
      'host-a',
      '--site',
      'dc1',
      '--owner',
      'otto',
    ]);
    expect(allocated.code, allocated.stderr).toBe(ExitCode.OK);
    const key = (JSON.parse(allocated.stdout) as { keys: { key: string }[] }).keys[0]?.key ?? '';
    expect(key).toMatch(/^0x5001/);

    const own = await prfleet([
      ...ca(),
      ...as('operator'),
      'register',
      'host-a:/dev/sg2',
      '--new-key',
      key,
    ]);
    expect(own.code, own.stderr).toBe(ExitCode.OK);
    const foreign = await prfleet([
      ...ca(),
      ...as('operator'),
      'register',
      'host-a:/dev/sg1',
      '--new-key',
      '0x77',
    ]);
    expect(foreign.code).toBe(ExitCode.RPC_PERMISSION_DENIED);
    expect(foreign.stderr).toContain(
      'otto may not use key 0x0000000000000077 (Register): it is not in the key registry',
    );
  });

  it('says clearly when the server certificate is not trusted (exit 88), naming the CA used', async () => {
    const rogue = await prfleet(['--ca', file['rogue-ca.crt'] ?? '', ...as('viewer'), 'agents']);
    expect(rogue.code).toBe(ExitCode.TLS_FAILED);
    expect(rogue.stderr).toContain(
      `prfleet: UNAVAILABLE: TLS handshake with ${server.address} failed: self-signed certificate in certificate chain`,
    );
    expect(rogue.stderr).toContain(`not signed by a CA you trust (--ca ${file['rogue-ca.crt']})`);
    // No --ca: the system roots do not know the fleet CA either.
    const roots = await prfleet([...as('viewer'), 'agents']);
    expect(roots.code).toBe(ExitCode.TLS_FAILED);
    expect(roots.stderr).toContain('the system roots (no --ca given)');
    expect(roots.stderr).not.toContain('DEP0123'); // the IP-address SNI deprecation is not shown to operators
  });

  it('explains a plaintext/TLS mismatch in both directions, and a bad CA file before dialling', async () => {
    const plain = await prfleet(['--plaintext', ...as('viewer'), 'agents']);
    expect(plain.code).toBe(ExitCode.RPC_UNAVAILABLE);
    expect(plain.stderr).toContain('If it is up and serves TLS, drop --plaintext');

    const h2c = await startTestServer();
    const tlsToPlain = await prfleet([...ca(), 'agents'], { PRFLEET_SERVER: h2c.address });
    expect(tlsToPlain.code).toBe(ExitCode.TLS_FAILED);
    expect(tlsToPlain.stderr).toContain('wrong version number');
    expect(tlsToPlain.stderr).toContain('pass --plaintext');

    const missing = await prfleet(['--ca', join(dir, 'nope.crt'), 'agents']);
    expect(missing.code).toBe(ExitCode.USAGE);
    expect(missing.stderr).toContain(`cannot read CA file ${join(dir, 'nope.crt')}: ENOENT`);
  });

  it.skipIf(!usePg)(
    'refuses a token revoked in the database while the server runs (exit 86)',
    async () => {
      await tokens('revoke', '--id', ids['viewer'] ?? '');
      await new Promise((r) => setTimeout(r, 1100)); // the server caches a found token for 1 s
      const run = await prfleet([...ca(), ...as('viewer'), 'agents']);
      expect(run.code).toBe(ExitCode.RPC_UNAUTHENTICATED);
      expect(run.stderr).toContain(
        `the server refused the token from --token-file ${file['viewer.token']}`,
      );
    },
  );
});
