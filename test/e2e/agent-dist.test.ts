// `make agent-dist` as a host gets it: the directory is built, copied into an empty directory outside the
// repository (nothing there can resolve the project's node_modules), and its own node runs the bundled agent
// against a real server: the emulated transport answers READ KEYS end to end, and the sgio transport (koffi's
// native module from the directory) starts and connects.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createControlClient } from '../../src/common/client.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { DEMO_FABRIC, ensureBuilt, repoRoot, startServerChild } from '../helpers/processes.js';

let work: string;
let installed: string;

beforeAll(async () => {
  await ensureBuilt();
  work = await mkdtemp(join(tmpdir(), 'prfleet-agent-dist-'));
  const built = join(work, 'built');
  execFileSync(process.execPath, [join(repoRoot(), 'scripts', 'agent-dist.mjs'), '--out', built], {
    cwd: repoRoot(),
    stdio: 'pipe',
  });
  installed = join(work, 'opt', 'prfleet-agent');
  await cp(built, installed, { recursive: true });
  await rm(built, { recursive: true });
}, 180_000);

afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

/**
 * Runs the installed agent as the unit's ExecStart does (its node flags, with /opt/prfleet-agent replaced by the
 * directory), with a bare environment (no PATH to a Node, no NODE_PATH); stopped after the test.
 */
async function runInstalled(
  args: readonly string[],
): Promise<{ child: ChildProcess; output: () => string }> {
  const unit = await readFile(join(installed, 'prfleet-agent.service'), 'utf8');
  const [node = '', ...rest] = (/^ExecStart=(.+)$/m.exec(unit)?.[1] ?? '')
    .trim()
    .split(/\s+/)
    .map((word) => word.replace(/^\/opt\/prfleet-agent(?=\/)/, installed));
  const child = spawn(node, [...rest, ...args], {
    cwd: installed,
    env: { PATH: '/usr/bin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  onTestFinished(async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    await exited;
  });
  return { child, output: () => output };
}

describe('make agent-dist, installed into an empty directory', () => {
  it('holds the bundle, koffi and its native module, node and the unit; nothing else from node_modules', async () => {
    expect((await readdir(installed)).sort()).toEqual([
      'VERSION',
      'agent.env.example',
      'deployment.md',
      'lib',
      'node',
      'prfleet-agent.service',
    ]);
    expect((await readdir(join(installed, 'lib', 'node_modules'))).sort()).toEqual([
      '@koromix',
      'koffi',
    ]);
    const unit = await readFile(join(installed, 'prfleet-agent.service'), 'utf8');
    expect(unit).toMatch(
      /^ExecStart=\/opt\/prfleet-agent\/node (--\S+ )*\/opt\/prfleet-agent\/lib\/prfleet-agent\.mjs$/m,
    );
    expect(await readFile(join(installed, 'VERSION'), 'utf8')).toContain(process.version);
  });

  // The stream link's modules are a chunk of their own, loaded on the first stream session.
  it.each(['stream', 'long-poll'])(
    'runs the emulated agent with its own node on the %s link: the server lists it and READ KEYS reaches its device',
    async (link) => {
      const server = await startServerChild();
      const agent = await runInstalled([
        '--server',
        server.address,
        '--plaintext',
        '--agent-id',
        'dist-emulated',
        '--transport',
        'emulated',
        '--fabric',
        DEMO_FABRIC,
        '--host',
        'host-a',
        '--link',
        link,
      ]);
      const client = createControlClient(server.address);
      onTestFinished(() => client.close());
      // Listed once its Hello is in; its inventory (the paths a READ KEYS needs) may come in a later message.
      await expect
        .poll(
          async () =>
            (await client.listAgents({})).agents.find((a) => a.agentId === 'dist-emulated')
              ?.pathCount ?? 0,
          { timeout: 60_000, interval: 200 },
        )
        .toBeGreaterThan(0);
      const { result } = await client.readKeys({
        target: { agentId: 'dist-emulated', path: '/dev/sg2', luId: '' },
        options: { commandTimeout: { seconds: 10n, nanos: 0 } },
      });
      expect(result?.outcome, agent.output()).toBe(Outcome.OUTCOME_GOOD);
    },
  );

  it('runs the sgio agent: koffi loads from the directory and the agent connects', async () => {
    const server = await startServerChild();
    const agent = await runInstalled([
      '--server',
      server.address,
      '--plaintext',
      '--agent-id',
      'dist-sgio',
      '--transport',
      'sgio',
    ]);
    const client = createControlClient(server.address);
    onTestFinished(() => client.close());
    await expect
      .poll(async () => (await client.listAgents({})).agents.map((a) => a.agentId), {
        timeout: 60_000,
        interval: 200,
      })
      .toContain('dist-sgio');
    expect(agent.output()).toContain('"transport":"sgio"');
  });
});
