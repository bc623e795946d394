// fence_prfleet against the fence-agents interface: its metadata validates against the schema Debian's
// fence-agents package ships, options come as flags or as name=value lines on stdin, and every action runs
// against a real server (embedded store) with the demo fabric's emulated hosts.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectFleet } from '../../src/cli/fleet.js';
import {
  builtBinaries,
  ensureBuilt,
  startServerChild,
  startSimChild,
} from '../helpers/processes.js';

const SCHEMA = '/usr/share/cluster/relaxng/metadata.rng';
const XMLLINT = '/usr/bin/xmllint';
const inCi = process.env['CI'] === 'true';

/** Runs fence_prfleet with `args`, or with `stdin` lines and no arguments (as pacemaker does). */
function fence(args: readonly string[], stdin?: string) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [builtBinaries().fence, ...args], {
      env: { ...process.env, PRFLEET_TOKEN: undefined },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

describe('fence_prfleet', { timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-fence-'));
  beforeAll(async () => {
    await ensureBuilt();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints metadata that validates against the fence-agents schema', async () => {
    const { code, stdout } = await fence(['-o', 'metadata']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/<resource-agent name="fence_prfleet"/);
    for (const action of ['on', 'off', 'reboot', 'status', 'monitor', 'list', 'metadata'])
      expect(stdout).toContain(`<action name="${action}" />`);
    const haveSchema = existsSync(SCHEMA) && existsSync(XMLLINT);
    if (inCi)
      expect(haveSchema, `${SCHEMA} and ${XMLLINT} (fence-agents, libxml2-utils)`).toBe(true);
    if (!haveSchema) return;
    const file = join(dir, 'metadata.xml');
    writeFileSync(file, stdout);
    // xmllint exits non-zero (and execFileSync throws) when the document does not validate.
    execFileSync(XMLLINT, ['--noout', '--relaxng', SCHEMA, file], { stdio: 'pipe' });
  });

  it('refuses bad arguments with exit 2 and a clear message', async () => {
    const bogus = await fence(['--bogus']);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/unknown option "--bogus"/);
    const explode = await fence(['-o', 'explode']);
    expect(explode.code).toBe(2);
    expect(explode.stderr).toMatch(/unknown action/);
    const noScope = await fence([
      '-o',
      'status',
      '-n',
      'host-b',
      '--server',
      '127.0.0.1:1',
      '--plaintext',
    ]);
    expect(noScope.code).toBe(2);
    expect(noScope.stderr).toMatch(/--loader and\/or --lu/);
  });

  it('unfences, fences and reports a node through a real server, from flags and from stdin', async () => {
    const server = await startServerChild({
      PRFLEET_STORE: 'pglite',
      PRFLEET_DATA_DIR: join(dir, 'data'),
    });
    await startSimChild(server.address);
    const fleet = connectFleet(server.address, { plaintext: true });
    try {
      // Wait for the fabric's agents, then give host-a and host-b keys.
      for (
        let i = 0;
        i < 100 &&
        (
          await fence([
            '-o',
            'list',
            '--server',
            server.address,
            '--plaintext',
            '--loader',
            'loader1',
          ])
        ).stdout.split('\n').length < 4;
        i++
      )
        await new Promise((r) => setTimeout(r, 200));
      for (const agentId of ['host-a', 'host-b'])
        await fleet.client.allocateKey({
          site: 'dc1',
          agentId,
          purpose: 'backup',
          owner: 'cluster',
          note: '',
        });
      const common = ['--server', server.address, '--plaintext', '--loader', 'loader1'];

      const list = await fence(['-o', 'list', ...common]);
      expect(list.code).toBe(0);
      expect(list.stdout).toBe('host-a,host-a\nhost-b,host-b\nhost-c,host-c\n');
      expect((await fence(['-o', 'monitor', ...common])).code).toBe(0);

      // Not registered yet: status OFF (exit 2). "on" registers host-b on each of its paths: status ON.
      expect(await fence(['-o', 'status', '-n', 'host-b', ...common])).toMatchObject({
        code: 2,
        stdout: 'Status: OFF\n',
      });
      expect((await fence(['-o', 'on', '-n', 'host-b', ...common])).code).toBe(0);
      expect((await fence(['-o', 'on', '-n', 'host-a', ...common])).code).toBe(0);
      expect(await fence(['-o', 'status', '-n', 'host-b', ...common])).toMatchObject({
        code: 0,
        stdout: 'Status: ON\n',
      });

      // pacemaker's way: name=value lines on stdin; host-a fences host-b.
      const stdin = [
        'action=off',
        'port=host-b',
        'nodename=host-a',
        `server=${server.address}`,
        'plaintext=1',
        'loader=loader1',
        'pcmk_host_list=host-b', // a cluster manager's own option: ignored with a warning
        '',
      ].join('\n');
      const off = await fence([], stdin);
      expect(off.code, off.stderr).toBe(0);
      expect(off.stderr).toMatch(/Ignoring unknown option 'pcmk_host_list'/);
      expect(await fence(['-o', 'status', '-n', 'host-b', ...common])).toMatchObject({
        code: 2,
        stdout: 'Status: OFF\n',
      });
      // host-a is still registered: fencing removed only the victim.
      expect((await fence(['-o', 'status', '-n', 'host-a', ...common])).code).toBe(0);
      // A node cannot fence itself.
      expect(
        (await fence(['-o', 'off', '-n', 'host-a', '--fencing-host', 'host-a', ...common])).code,
      ).toBe(2);

      // reboot: off then on; the node ends registered again.
      const reboot = await fence([
        '-o',
        'reboot',
        '-n',
        'host-b',
        '--fencing-host',
        'host-a',
        ...common,
      ]);
      expect(reboot.code, reboot.stderr).toBe(0);
      expect(await fence(['-o', 'status', '-n', 'host-b', ...common])).toMatchObject({
        code: 0,
        stdout: 'Status: ON\n',
      });
    } finally {
      fleet.close();
    }
  });
});
