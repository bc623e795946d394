// Run once by deploy/Containerfile while the image is built (as root): starts the server bundle as uid 1000 (the
// user the container runs as: Node keeps one cache per user), once on the memory store and once on a new embedded
// store (the image's default), each until "listening", then stops it with SIGTERM so Node writes the module
// compile cache into <cache dir> (the image's NODE_COMPILE_CACHE; this script's own process does not use it). The
// cache is then made root-owned and read-only: a container's first start reads V8's code from it instead of
// compiling the bundle (~30 ms of CPU) and never writes there. A Node without the compile cache (before 22.1)
// skips all this.
//   node dist/src/tools/warm-compile-cache.js <cache dir> <server bootstrap>
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import module from 'node:module';
import { join } from 'node:path';

const UID = 1000;
const START_TIMEOUT_MS = 300_000;
const USAGE = 'usage: node dist/src/tools/warm-compile-cache.js <cache dir> <server bootstrap>';
const [cache = fail(USAGE), entry = fail(USAGE)] = process.argv.slice(2);

if (typeof module.enableCompileCache !== 'function') {
  console.log(`node ${process.version} has no module compile cache: nothing to warm`);
} else {
  mkdirSync(cache, { recursive: true });
  chownSync(cache, UID, UID);
  const store = mkdtempSync('/tmp/prfleet-warm-');
  chownSync(store, UID, UID);
  try {
    await start({ PRFLEET_STORE: 'memory' });
    await start({ PRFLEET_STORE: 'pglite', PRFLEET_DATA_DIR: join(store, 'data') });
  } finally {
    rmSync(store, { recursive: true, force: true });
  }
  readOnly(cache);
  console.log(`compile cache warmed in ${cache}: ${readdirSync(cache).join(', ')}`);
}

/** Starts the server as uid 1000 with `env`, waits for "listening", stops it; rejects unless it exits 0. */
function start(env: Record<string, string>): Promise<void> {
  const child = spawn(process.execPath, [entry], {
    uid: UID,
    gid: UID,
    env: {
      ...process.env,
      NODE_COMPILE_CACHE: cache,
      PRFLEET_PLAINTEXT: 'true',
      PRFLEET_HOST: '127.0.0.1',
      PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), START_TIMEOUT_MS);
    let out = '';
    const listening = (data: Buffer) => {
      out += data.toString();
      if (!out.includes('"msg":"listening"')) return;
      child.stdout.off('data', listening).resume();
      child.kill('SIGTERM');
    };
    child.stdout.on('data', listening);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else
        reject(new Error(`server warm start (${JSON.stringify(env)}): ${code ?? signal}\n${out}`));
    });
  });
}

/** Root-owned, readable by all, writable by none but root. */
function readOnly(path: string): void {
  chownSync(path, 0, 0);
  const entries = readdirSync(path, { withFileTypes: true });
  chmodSync(path, 0o755);
  for (const entry of entries) {
    const at = join(path, entry.name);
    if (entry.isDirectory()) readOnly(at);
    else {
      chownSync(at, 0, 0);
      chmodSync(at, 0o644);
    }
  }
}

function fail(message: string): never {
  throw new Error(message);
}
