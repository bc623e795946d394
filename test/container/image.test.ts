/**
 * The server image (deploy/Containerfile) built from Debian's packages alone and run: mmdebstrap makes the base
 * root filesystems (scripts/container-bases.sh), podman builds the Containerfile on them, and the server in the
 * container serves an agent and the CLI on the host, runs unprivileged, writes only its data volume, drains on
 * SIGTERM and reopens its store in a new container; its first start reads the module compile cache the build made.
 * Needs podman + mmdebstrap (.ci/run installs them); a run outside CI without them skips, in CI it fails.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import module from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bufCurl,
  ensureBuilt,
  repoRoot,
  runCliBinary,
  startAgentChild,
} from '../helpers/processes.js';

const ROOT = repoRoot();
const has = (tool: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const available = has('podman') && has('mmdebstrap');
if (!available && process.env['CI'] === 'true') {
  throw new Error('CI needs podman and mmdebstrap for the image test (.ci/run installs them)');
}

/**
 * podman flags for sandboxed machines: no CAP_SYS_RESOURCE means the runtime may not raise rlimits (podman's
 * defaults are above the hard limits), and runc copes with a cgroup v1 hierarchy where crun does not.
 */
function runFlags(): string[] {
  const nofile = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  return [
    ...(has('runc') ? ['--runtime', 'runc'] : []),
    '--ulimit',
    `nofile=${nofile}:${nofile}`,
    '--ulimit',
    'nproc=4096:4096',
  ];
}
const [runtime, rest] = (() => {
  const flags = available ? runFlags() : [];
  return flags[0] === '--runtime' ? [flags.slice(0, 2), flags.slice(2)] : [[], flags];
})();

function podman(args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'podman',
      [...runtime, ...args],
      { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) =>
        error
          ? reject(new Error(`podman ${args[0]}: ${error.message}\n${stderr}`))
          : resolve(stdout),
    );
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForLog(name: string, pattern: RegExp, timeoutMs = 60_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const logs = await podman(['logs', name]).catch(() => '');
    if (pattern.test(logs)) return logs;
    if (Date.now() > until) throw new Error(`container ${name}: no ${pattern} in:\n${logs}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.skipIf(!available)('server image from Debian packages (podman + mmdebstrap)', () => {
  const tag = `localhost/prfleet-server:test-${process.pid}`;
  const names: string[] = [];
  let dataDir = '';

  beforeAll(async () => {
    await ensureBuilt();
    const bases = execFileSync(join(ROOT, 'scripts/container-bases.sh'), {
      encoding: 'utf8',
      timeout: 15 * 60_000,
    });
    const args = [...bases.matchAll(/(BUILD_BASE|RUN_BASE)=(\S+)/g)].flatMap(([, k, v]) => [
      '--build-arg',
      `${k}=${v}`,
    ]);
    expect(args).toHaveLength(4);
    await podman(
      [
        'build',
        '--network',
        'host',
        ...rest,
        ...args,
        '-f',
        'deploy/Containerfile',
        '-t',
        tag,
        '.',
      ],
      20 * 60_000,
    );
    dataDir = mkdtempSync(join(tmpdir(), 'prfleet-image-'));
    chownSync(dataDir, 1000, 1000);
  }, 40 * 60_000);

  afterAll(async () => {
    for (const name of names) await podman(['rm', '-f', name]).catch(() => undefined);
    await podman(['rmi', '-f', tag]).catch(() => undefined);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(port: number, env: readonly string[] = []): Promise<string> {
    const name = `prfleet-image-${process.pid}-${names.length}`;
    names.push(name);
    await podman([
      'run',
      '-d',
      '--name',
      name,
      '--network',
      'host',
      ...rest,
      '-e',
      `PORT=${port}`,
      '-e',
      'PRFLEET_HOST=127.0.0.1',
      '-e',
      'PRFLEET_PLAINTEXT=true',
      ...env.flatMap((e) => ['-e', e]),
      '-v',
      `${dataDir}:/data`,
      tag,
    ]);
    await waitForLog(name, /"msg":"listening"/);
    return name;
  }

  it(
    'serves agents and clients, runs unprivileged, drains on SIGTERM, keeps its store',
    async () => {
      const port = await freePort();
      const address = `127.0.0.1:${port}`;
      // Node says which compile cache entries it read (on stderr, beside the JSON log lines).
      const name = await start(port, ['NODE_DEBUG_NATIVE=COMPILE_CACHE']);

      expect((await podman(['exec', name, 'id', '-u'])).trim()).toBe('1000');
      await expect(podman(['exec', name, 'touch', '/app/written'])).rejects.toThrow();
      expect((await podman(['exec', name, 'node', '--version'])).trim()).toBe(
        `v${process.versions.node}`,
      );

      // The image's node is the test's (asserted above): with a compile cache, the build warmed it for uid 1000,
      // read-only, and this first start of a new container read the bundle's code from it.
      if (typeof module.enableCompileCache === 'function') {
        const cached = await podman(['exec', name, 'sh', '-c', 'ls -A /app/compile-cache/*-1000']);
        expect(cached.trim()).not.toBe('');
        await expect(
          podman(['exec', name, 'touch', '/app/compile-cache/written']),
        ).rejects.toThrow();
        // Node's debug lines are the container's stderr (podman logs gives them on its own stderr).
        const { stderr } = spawnSync('podman', ['logs', name], { encoding: 'utf8' });
        expect(stderr).toMatch(
          /reading cache from \/app\/compile-cache\/\S+ for ESM file:\/\/\/app\/dist\/bundle\/server\/main\.mjs\.\.\.[^\n]*\.\.\. success/,
        );
      }

      const agent = startAgentChild({ address, agentId: 'image-a', host: 'host-a' });
      let listed = '';
      for (let tries = 0; tries < 60 && !listed.includes('image-a'); tries++) {
        listed = (await runCliBinary(address, ['agents', '-o', 'json'])).stdout;
        if (!listed.includes('image-a')) await new Promise((r) => setTimeout(r, 500));
      }
      expect(listed).toContain('image-a');
      const curl = await bufCurl(address, 'prfleet.v1.ControlService/ListAgents');
      expect(curl.code, curl.stderr).toBe(0);
      expect(curl.stdout).toContain('image-a');
      await agent.stop({ graceMs: 5000 });

      await podman(['stop', '--time', '20', name], 60_000);
      const exit = (await podman(['inspect', '--format', '{{.State.ExitCode}}', name])).trim();
      expect(exit).toBe('0');
      const logs = await podman(['logs', name]);
      for (const line of logs.split('\n').filter((l) => l.startsWith('{'))) {
        expect(() => JSON.parse(line) as unknown).not.toThrow();
      }

      // A new container on the same volume reopens the embedded store (the lock was released on drain).
      const again = await start(await freePort());
      await podman(['stop', '--time', '20', again], 60_000);
      expect((await podman(['inspect', '--format', '{{.State.ExitCode}}', again])).trim()).toBe(
        '0',
      );
    },
    5 * 60_000,
  );
});
