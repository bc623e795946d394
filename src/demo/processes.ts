/**
 * Spawning prfleet's built binaries (server, agent, simulator) as child processes and waiting for them to be
 * ready, for the demo, the benchmark and the end-to-end tests. Every child is tracked and killed when this process
 * exits, so a crash of the parent leaves no stray processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How a child ended. */
export interface ChildExit {
  /** Exit code, or null when killed by a signal. */
  readonly code: number | null;
  /** Signal that killed it, or null. */
  readonly signal: NodeJS.Signals | null;
}

/** A running child process and what it printed. */
export interface ChildHandle {
  /** Name used in error messages, e.g. "prfleet-server". */
  readonly name: string;
  /** The process. */
  readonly child: ChildProcess;
  /** Its pid. */
  readonly pid: number;
  /** Recent output lines (stdout and stderr), newest last, at most 200. */
  readonly lines: readonly string[];
  /** Resolves when the process has exited. */
  readonly exited: Promise<ChildExit>;
  /** True once it has exited. */
  readonly hasExited: () => boolean;
  /**
   * Resolves with the first JSON log line (from now on or already printed) that `match` accepts; rejects when
   * the process exits first or after `timeoutMs`, quoting its last output.
   */
  waitForLog(
    match: (entry: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<Record<string, unknown>>;
  /** Sends `signal` (default SIGTERM) and waits up to `graceMs` (default 5 s), then SIGKILLs. Resolves on exit. */
  stop(options?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<ChildExit>;
  /** Sends a signal without waiting (e.g. SIGSTOP/SIGCONT/SIGKILL). */
  signal(signal: NodeJS.Signals): void;
}

/** Children still running, killed synchronously if this process exits. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

/** Maximum output lines kept per child. */
const KEPT_LINES = 200;

/** Options of spawnNode(). */
export interface SpawnNodeOptions {
  /** Name for messages. */
  readonly name: string;
  /** Extra environment (merged over process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Working directory. @default the repository root */
  readonly cwd?: string;
  /** Called with every output line (e.g. to echo it). */
  readonly onLine?: (line: string) => void;
}

/** Starts `node <script> <args…>` with stdout and stderr captured line by line. */
export function spawnNode(
  script: string,
  args: readonly string[],
  options: SpawnNodeOptions,
): ChildHandle {
  installExitHook();
  // PRFLEET_CHILD_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"): profile the children of a bench or
  // the demo; NODE_OPTIONS refuses --cpu-prof.
  const nodeArgs = (process.env['PRFLEET_CHILD_NODE_ARGS'] ?? '')
    .split(' ')
    .filter((a) => a !== '');
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    cwd: options.cwd ?? repoRoot(),
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`${options.name}: could not spawn node ${script}`);
  running.add(child);
  const output = createOutput(options.onLine);
  output.follow(child.stdout);
  output.follow(child.stderr);
  let exitInfo: ChildExit | undefined;
  const exited = new Promise<ChildExit>((resolveExit) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      exitInfo = { code, signal };
      resolveExit(exitInfo);
    });
  });
  return {
    name: options.name,
    child,
    pid: child.pid,
    lines: output.lines,
    exited,
    hasExited: () => exitInfo !== undefined,
    waitForLog: (match, timeoutMs) => waitForLog(output, exited, options.name, match, timeoutMs),
    stop: async (stopOptions = {}) => {
      if (exitInfo) return exitInfo;
      child.kill(stopOptions.signal ?? 'SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), stopOptions.graceMs ?? 5000);
      const info = await exited;
      clearTimeout(timer);
      return info;
    },
    signal: (signal) => {
      if (!exitInfo) child.kill(signal);
    },
  };
}

/** A child's output: its recent lines, and the waiters told of every new one. */
interface ChildOutput {
  /** Recent lines, newest last, at most KEPT_LINES. */
  readonly lines: string[];
  /** Called with every new line. */
  readonly waiters: Set<(line: string) => void>;
  /** Splits `stream` into lines, keeping and announcing each. */
  follow(stream: NodeJS.ReadableStream): void;
}

function createOutput(onLine: ((line: string) => void) | undefined): ChildOutput {
  const lines: string[] = [];
  const waiters = new Set<(line: string) => void>();
  return {
    lines,
    waiters,
    follow(stream) {
      let buffered = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buffered += chunk;
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          lines.push(line);
          if (lines.length > KEPT_LINES) lines.shift();
          onLine?.(line);
          for (const waiter of waiters) waiter(line);
        }
      });
    },
  };
}

/** `line` as a JSON log entry that `match` accepts, else undefined. */
function matchingEntry(
  line: string,
  match: (entry: Record<string, unknown>) => boolean,
): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const entry = JSON.parse(line) as unknown;
    if (typeof entry === 'object' && entry !== null && match(entry as Record<string, unknown>)) {
      return entry as Record<string, unknown>;
    }
  } catch {
    // not a JSON log line
  }
  return undefined;
}

/** ChildHandle.waitForLog over a child's output: a line already printed, or the next one `match` accepts. */
function waitForLog(
  output: ChildOutput,
  exited: Promise<ChildExit>,
  name: string,
  match: (entry: Record<string, unknown>) => boolean,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const tail = () => output.lines.slice(-15).join('\n');
  return new Promise((resolveLog, rejectLog) => {
    for (const line of output.lines) {
      const found = matchingEntry(line, match);
      if (found) return resolveLog(found);
    }
    const cleanup = () => {
      output.waiters.delete(waiter);
      clearTimeout(timer);
    };
    const waiter = (line: string) => {
      const found = matchingEntry(line, match);
      if (found) {
        cleanup();
        resolveLog(found);
      }
    };
    output.waiters.add(waiter);
    const timer = setTimeout(() => {
      cleanup();
      rejectLog(new Error(`${name}: not ready after ${timeoutMs} ms; last output:\n${tail()}`));
    }, timeoutMs);
    void exited.then((info) => {
      cleanup();
      rejectLog(
        new Error(
          `${name} exited (code ${String(info.code)}, signal ${String(info.signal)}) before it was ready; last output:\n${tail()}`,
        ),
      );
    });
  });
}

/** The repository root: the nearest ancestor of this file holding package.json (works from src/ and dist/src/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(
    'cannot find the repository root (package.json) above ' + fileURLToPath(import.meta.url),
  );
}

/** Paths of the built binaries under `root`/dist. */
export function builtBinaries(root = repoRoot()) {
  return {
    server: resolve(root, 'dist/src/server/main.js'),
    agent: resolve(root, 'dist/agent/main.js'),
    sim: resolve(root, 'dist/agent/sim.js'),
    cli: resolve(root, 'dist/src/cli/main.js'),
    demo: resolve(root, 'dist/src/demo/main.js'),
    bench: resolve(root, 'dist/bench/main.js'),
    fence: resolve(root, 'dist/src/tools/fence.js'),
  };
}

/** A started prfleet-server child. */
export interface ServerProcess {
  /** The child. */
  readonly handle: ChildHandle;
  /** Port it listens on. */
  readonly port: number;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  /** Embedded store directory made for this server (removed when it exits), or undefined when the caller chose the store. */
  readonly dataDir: string | undefined;
}

/** True when the caller (or the environment) already chose where the server keeps its state. */
function storeChosen(env: Readonly<Record<string, string | undefined>>): boolean {
  const merged = { ...process.env, ...env };
  return ['PRFLEET_STORE', 'PRFLEET_DATA_DIR', 'DATABASE_URL'].some(
    (name) => (merged[name] ?? '') !== '',
  );
}

/** Milliseconds a child gets to print its ready line (cold start of a Node process under load). */
const READY_TIMEOUT_MS = 30_000;
/** The server may first create its embedded database (PGlite initdb): seconds when idle, much longer under load. */
const SERVER_READY_TIMEOUT_MS = 120_000;

/**
 * Starts `prfleet-server` with PORT=0 on 127.0.0.1 and waits for its `listening` log line (which carries the
 * port). `env` adds PRFLEET_* settings. Unless a store is chosen (PRFLEET_STORE, PRFLEET_DATA_DIR or DATABASE_URL),
 * the server gets the embedded default (PGlite) in a fresh temporary directory, removed when it exits: two
 * servers never share one embedded database, and runs do not inherit each other's state.
 */
export async function startServerProcess(
  options: {
    env?: Readonly<Record<string, string | undefined>>;
    onLine?: (line: string) => void;
  } = {},
): Promise<ServerProcess> {
  const env = options.env ?? {};
  const dataDir = storeChosen(env) ? undefined : mkdtempSync(join(tmpdir(), 'prfleet-server-'));
  const handle = spawnNode(builtBinaries().server, [], {
    name: 'prfleet-server',
    env: {
      PORT: '0',
      PRFLEET_HOST: '127.0.0.1',
      // Loopback children of tests, the demo and benches: plaintext, explicitly asked for (never the default).
      PRFLEET_PLAINTEXT: 'true',
      ...(dataDir ? { PRFLEET_DATA_DIR: dataDir } : {}),
      ...env,
    },
    ...(options.onLine ? { onLine: options.onLine } : {}),
  });
  if (dataDir) {
    void handle.exited.then(() => {
      // The store keeps a lock file beside its directory while open; a killed server leaves it behind.
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(`${dataDir}.lock`, { force: true });
    });
  }
  try {
    const entry = await handle.waitForLog(
      (e) => e['msg'] === 'listening' && typeof e['port'] === 'number',
      SERVER_READY_TIMEOUT_MS,
    );
    const port = entry['port'] as number;
    return { handle, port, address: `127.0.0.1:${port}`, dataDir };
  } catch (error) {
    await handle.stop({ signal: 'SIGKILL' });
    throw error;
  }
}

/**
 * Starts `prfleet-sim` (every host of `fabric` as an agent sharing one emulated fabric) against `address` and
 * waits for its `ready` log line.
 */
export async function startSimProcess(options: {
  address: string;
  fabric: string;
  extraArgs?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
  onLine?: (line: string) => void;
}): Promise<ChildHandle> {
  const handle = spawnNode(
    builtBinaries().sim,
    [
      '--server',
      options.address,
      '--plaintext',
      '--fabric',
      options.fabric,
      ...(options.extraArgs ?? []),
    ],
    {
      name: 'prfleet-sim',
      ...(options.env ? { env: options.env } : {}),
      ...(options.onLine ? { onLine: options.onLine } : {}),
    },
  );
  try {
    await handle.waitForLog((e) => e['msg'] === 'ready', READY_TIMEOUT_MS);
    return handle;
  } catch (error) {
    await handle.stop({ signal: 'SIGKILL' });
    throw error;
  }
}

/**
 * Starts one `prfleet-agent` on the emulated transport for `host` of `fabric` (its own copy of the fabric: it
 * shares no state with other processes). Resolves once spawned; wait for the agent with the server's ListAgents.
 */
export function startAgentProcess(options: {
  address: string;
  agentId: string;
  fabric: string;
  host: string;
  extraArgs?: readonly string[];
  onLine?: (line: string) => void;
  env?: Record<string, string | undefined>;
}): ChildHandle {
  return spawnNode(
    builtBinaries().agent,
    [
      '--server',
      options.address,
      '--plaintext',
      '--agent-id',
      options.agentId,
      '--transport',
      'emulated',
      '--fabric',
      options.fabric,
      '--host',
      options.host,
      ...(options.extraArgs ?? []),
    ],
    {
      name: `prfleet-agent ${options.agentId}`,
      ...(options.onLine ? { onLine: options.onLine } : {}),
      ...(options.env ? { env: options.env } : {}),
    },
  );
}
