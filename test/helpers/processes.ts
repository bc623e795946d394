/**
 * Test helpers for prfleet's built binaries: build dist/ once when it is missing or older than the sources,
 * start the server, agents and simulator as child processes (stopped when the test finishes), and run the CLI
 * binary and `buf curl` as independent clients.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { onTestFinished } from 'vitest';
import {
  builtBinaries,
  repoRoot,
  spawnNode,
  startAgentProcess,
  startServerProcess,
  startSimProcess,
  type ChildHandle,
  type ServerProcess,
} from '../../src/demo/processes.js';

export { builtBinaries, repoRoot, type ChildHandle, type ServerProcess };

const ROOT = repoRoot();
/** The demo fabric: 3 hosts sharing 2 SuperLoaders. */
export const DEMO_FABRIC = resolve(ROOT, 'examples/fabric-demo.yaml');

/** Source folders compiled by tsconfig.build.json. */
const BUILD_SOURCES = ['src', 'agent', 'bench'];

/** Source files whose compiled .js is missing or older than the .ts (empty when dist is up to date). */
export function staleOutputs(root = ROOT): string[] {
  const stale: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const out = join(root, 'dist', relative(root, full).replace(/\.ts$/, '.js'));
        let outTime = 0;
        try {
          outTime = statSync(out).mtimeMs;
        } catch {
          // missing output
        }
        if (outTime < statSync(full).mtimeMs) stale.push(relative(root, full));
      }
    }
  };
  for (const folder of BUILD_SOURCES) walk(join(root, folder));
  return stale;
}

const LOCK_DIR = join(
  tmpdir(),
  `prfleet-e2e-build-${Buffer.from(ROOT).toString('hex').slice(-16)}.lock`,
);
/** A build lock older than this is left over from a killed run. */
const STALE_LOCK_MS = 5 * 60_000;

/**
 * Builds dist/ with `tsc -p tsconfig.build.json` when any output is missing or stale: once per change, however
 * many test files ask (a lock directory serialises vitest's workers). Type errors in files outside the e2e path
 * do not stop tsc from emitting, so the build counts as done when the binaries are there and fresh.
 */
export async function ensureBuilt(): Promise<void> {
  if (staleOutputs().length === 0) return;
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      break;
    } catch {
      try {
        if (Date.now() - statSync(LOCK_DIR).mtimeMs > STALE_LOCK_MS) rmdirSync(LOCK_DIR);
      } catch {
        // the holder just released it
      }
      if (Date.now() - started > STALE_LOCK_MS)
        throw new Error(`build lock ${LOCK_DIR} held too long`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    if (staleOutputs().length === 0) return;
    try {
      execFileSync(
        process.execPath,
        [resolve(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
        {
          cwd: ROOT,
          stdio: 'pipe',
        },
      );
    } catch (error) {
      const missing = Object.values(builtBinaries()).filter((file) => {
        try {
          statSync(file);
          return false;
        } catch {
          return true;
        }
      });
      if (missing.length > 0) {
        const output = (error as { stdout?: Buffer }).stdout?.toString() ?? String(error);
        throw new Error(
          `tsc -p tsconfig.build.json did not produce ${missing.join(', ')}:\n${output.slice(0, 4000)}`,
        );
      }
    }
  } finally {
    rmdirSync(LOCK_DIR);
  }
}

/**
 * Starts prfleet-server (PORT=0) as a child process, stopped (SIGTERM, then SIGKILL) when the test finishes. Its
 * store is the in-memory one unless `env` picks another: these tests are about the wire, and opening an embedded
 * PGlite takes seconds (the demo test runs the embedded default). The observation is off unless `env` turns it
 * on: it reads every LU as it appears, and a test scripting a fake agent's answers must see only its own commands.
 */
export async function startServerChild(
  env: Record<string, string | undefined> = {},
): Promise<ServerProcess> {
  const server = await startServerProcess({
    env: { PRFLEET_STORE: 'memory', PRFLEET_OBSERVE_INTERVAL_MS: '0', ...env },
  });
  onTestFinished(async () => {
    await server.handle.stop({ graceMs: 5000 });
  });
  return server;
}

/** Starts prfleet-sim for `fabric` against `address`, stopped when the test finishes. */
export async function startSimChild(address: string, fabric = DEMO_FABRIC): Promise<ChildHandle> {
  const sim = await startSimProcess({ address, fabric });
  onTestFinished(async () => {
    await sim.stop({ graceMs: 5000 });
  });
  return sim;
}

/** Starts one prfleet-agent (emulated transport, `host` of `fabric`), stopped when the test finishes. */
export function startAgentChild(options: {
  address: string;
  agentId: string;
  host: string;
  fabric?: string;
  extraArgs?: readonly string[];
  env?: Record<string, string | undefined>;
}): ChildHandle {
  const agent = startAgentProcess({ fabric: DEMO_FABRIC, ...options });
  onTestFinished(async () => {
    await agent.stop({ graceMs: 5000 });
  });
  return agent;
}

/** What a child CLI run produced. */
export interface CliRun {
  /** Exit code. */
  readonly code: number;
  /** Standard output. */
  readonly stdout: string;
  /** Standard error. */
  readonly stderr: string;
}

/** Runs the built `prfleet` binary with `args` against `server` (via PRFLEET_SERVER). */
export function runCliBinary(
  server: string,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<CliRun> {
  // The test servers serve plaintext on loopback; the CLI speaks TLS unless asked.
  return runNode(
    builtBinaries().cli,
    args,
    { PRFLEET_SERVER: server, PRFLEET_PLAINTEXT: 'true' },
    timeoutMs,
  );
}

/** Runs `node <script> <args>` to completion and captures its output. */
export function runNode(
  script: string,
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 30_000,
): Promise<CliRun> {
  return new Promise((resolveRun) => {
    execFile(
      process.execPath,
      [script, ...args],
      {
        cwd: ROOT,
        env: { ...process.env, ...env },
        timeout: timeoutMs,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolveRun({ code, stdout, stderr });
      },
    );
  });
}

/**
 * Calls `method` (e.g. "prfleet.v1.ControlService/ListAgents") through `buf curl` over h2c with server
 * reflection, so the request is encoded by a client that shares no code with prfleet.
 */
export function bufCurl(
  address: string,
  method: string,
  body: unknown = {},
  timeoutMs = 30_000,
): Promise<CliRun> {
  return new Promise((resolveRun) => {
    execFile(
      resolve(ROOT, 'node_modules/.bin/buf'),
      [
        'curl',
        '--protocol',
        'grpc',
        '--http2-prior-knowledge',
        '--data',
        JSON.stringify(body),
        `http://${address}/${method}`,
      ],
      { cwd: ROOT, timeout: timeoutMs },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolveRun({ code, stdout, stderr });
      },
    );
  });
}

/** Spawns `node <script>` as a long-running child, stopped when the test finishes. */
export function spawnNodeChild(script: string, args: readonly string[], name: string): ChildHandle {
  const child = spawnNode(script, args, { name });
  onTestFinished(async () => {
    await child.stop({ graceMs: 5000 });
  });
  return child;
}
