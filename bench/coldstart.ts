/**
 * `node dist/bench/coldstart.js` (make bench-coldstart): how fast a fresh `prfleet-server` process serves, as a
 * serverless platform starting an instance on demand sees it. Per start, interleaved with the others in each
 * round so background load hits them alike:
 *
 *  - bare: `node -e 0`, spawn → exit (the runtime's own floor, measured in the same run), and the CPU time a
 *    bare node has used when its first line is out;
 *  - memory / postgres: spawn → the "listening" log line (and the CPU time the process used until then), and
 *    spawn → the first answered RPC (ListAgents on a fresh channel opened when "listening" arrives, as a platform
 *    routes the first request once the port is up);
 *  - pglite first open (an empty data directory: loaded from the template the build ships, or initdb without
 *    one, and the schema) and reopen (the same directory again), for each server entry.
 *
 * Each server start is measured for the tsc output (dist/src/server/main.js) and for the esbuild bundle
 * (dist/bundle/server/prfleet-server.mjs, `make bundle`), which is what the container and the agent package
 * run. Prints p50/min/max and PASS/MISS against the targets (listening ≤ 150 ms and ≤ 3× bare, first RPC
 * ≤ 250 ms). CPU time is the figure a loaded machine distorts least. Options: --rounds N (default 5),
 * --entry name=path (repeatable; adds a server script, e.g. an older build for a before/after in one run).
 *
 * In the same rounds, on the memory store's settings, the floors (bench/server-floor.ts, bundled here as the server
 * is): a nice-grpc server answering ListAgents, and the same with the libraries the server's features load at
 * start; what no prfleet code can go below.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createControlClient } from '../src/common/client.js';
import { processCpuMs, summarize } from './stats.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
// A first PGlite open (initdb) takes tens of seconds on a loaded 2-core machine.
const START_TIMEOUT_MS = 120_000;

const ENTRIES = [
  { name: 'tsc output', path: join('dist', 'src', 'server', 'main.js') },
  { name: 'bundle', path: join('dist', 'bundle', 'server', 'prfleet-server.mjs') },
] as const;

const FLOOR = join('dist', 'bundle', 'server-floor', 'server-floor.mjs');
const FLOORS = [
  { name: 'floor, nice-grpc', env: { PRFLEET_FLOOR: 'grpc' } },
  { name: 'floor, nice-grpc + deps', env: { PRFLEET_FLOOR: 'deps' } },
] as const;

interface StartTimes {
  readonly listeningMs: number;
  readonly listeningCpuMs: number;
  readonly firstRpcMs: number;
}

/** Spawns the server with `env`, times "listening" and the first answered RPC, then stops it (SIGTERM). */
async function timeServerStart(entry: string, env: Record<string, string>): Promise<StartTimes> {
  const started = performance.now();
  const child = spawn(process.execPath, [entry], {
    cwd: ROOT,
    env: {
      ...process.env,
      PRFLEET_PLAINTEXT: 'true',
      PRFLEET_HOST: '127.0.0.1',
      PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    const { port, at, cpu } = await new Promise<{ port: number; at: number; cpu: number }>(
      (resolveListen, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no "listening" in ${START_TIMEOUT_MS} ms: ${stderr}`)),
          START_TIMEOUT_MS,
        );
        let pending = '';
        child.stdout.on('data', (d: Buffer) => {
          pending += d.toString();
          const lines = pending.split('\n');
          pending = lines.pop() ?? '';
          for (const line of lines) {
            if (!line.includes('"listening"')) continue;
            clearTimeout(timer);
            const at = performance.now();
            const port = (JSON.parse(line) as { port: number }).port;
            resolveListen({ port, at, cpu: processCpuMs(child.pid ?? 0) });
          }
        });
        child.once('exit', (code) =>
          reject(new Error(`server exited (${code}) before listening: ${stderr}`)),
        );
      },
    );
    const client = createControlClient(`127.0.0.1:${port}`);
    try {
      await client.listAgents({}, { deadline: START_TIMEOUT_MS });
    } finally {
      client.close();
    }
    return {
      listeningMs: at - started,
      listeningCpuMs: cpu,
      firstRpcMs: performance.now() - started,
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

/** Bundles bench/server-floor.ts (tsc output) as the server is bundled; false when the build is missing. */
function bundleFloor(): boolean {
  if (!existsSync(resolve(ROOT, 'dist', 'bench', 'server-floor.js'))) return false;
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'bundle.mjs'), 'server-floor'], {
    stdio: 'ignore',
  });
  return true;
}

/** `node -e 0`: spawn → exit. */
async function timeBareNode(): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise<void>((r) => child.once('exit', () => r()));
  return performance.now() - started;
}

/** CPU time of a bare node when its first line is out (the floor of the servers' CPU to "listening"). */
async function bareNodeCpu(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'console.log("up"); setInterval(() => {}, 1000)'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((r) => child.stdout.once('data', () => r()));
  const cpu = processCpuMs(child.pid ?? 0);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  await exited;
  return cpu;
}

/** Samples of one server entry. */
interface EntrySamples {
  memory: StartTimes[];
  postgres: StartTimes[];
}

const fmt = (ms: number): string => `${ms.toFixed(0)} ms`;

function row(name: string, values: readonly number[]): string {
  const s = summarize(values);
  return `${name.padEnd(52)} p50 ${fmt(s.p50).padStart(8)}   min ${fmt(s.min).padStart(8)}   max ${fmt(s.max).padStart(8)}`;
}

function verdict(name: string, value: number, limit: number, unit: 'ms' | '×'): string {
  const shown = unit === '×' ? `${value.toFixed(2)}×` : fmt(value);
  const target = unit === '×' ? `${limit}×` : `${limit} ms`;
  return `${name.padEnd(52)} ${shown.padStart(8)}  (target ≤ ${target})  ${value <= limit ? 'PASS' : 'MISS'}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '5' },
      entry: { type: 'string', multiple: true, default: [] },
    },
  });
  const rounds = Number(values.rounds);
  const extra = values.entry.map((spec) => {
    const [name = spec, path = spec] = spec.split('=');
    return { name, path };
  });
  const entries = [...extra, ...ENTRIES].filter(({ name, path }) => {
    if (existsSync(resolve(ROOT, path))) return true;
    console.log(`${name}: ${path} is missing (make build) — not measured`);
    return false;
  });
  const schema = `bench_coldstart_${process.pid}`;
  const dataRoot = await mkdtemp(join(tmpdir(), 'prfleet-coldstart-'));
  const memory = { PRFLEET_STORE: 'memory' };
  const postgres = { DATABASE_URL, PRFLEET_DB_SCHEMA: schema };
  const bare: number[] = [];
  const bareCpu: number[] = [];
  const floors = new Map<string, StartTimes[]>(
    bundleFloor() ? FLOORS.map((f) => [f.name, []]) : [],
  );
  const samples = new Map<string, EntrySamples>(
    entries.map((e) => [e.name, { memory: [], postgres: [] }]),
  );
  const pglite = new Map<string, { first: number[]; reopen: number[] }>(
    entries.map((e) => [e.name, { first: [], reopen: [] }]),
  );
  const load = loadavg()[0]?.toFixed(1) ?? '?';
  console.log(`prfleet-server cold start, node ${process.version}, ${rounds} rounds, load ${load}`);
  try {
    // One start of each kind first (disk cache, compile cache, the PostgreSQL schema) is not counted.
    for (const { path } of entries) {
      await timeServerStart(resolve(ROOT, path), memory);
      await timeServerStart(resolve(ROOT, path), postgres);
    }
    for (const { env } of FLOORS.filter((f) => floors.has(f.name))) {
      await timeServerStart(resolve(ROOT, FLOOR), { ...memory, ...env });
    }
    for (let round = 0; round < rounds; round++) {
      bare.push(await timeBareNode());
      bareCpu.push(await bareNodeCpu());
      for (const { name, env } of FLOORS.filter((f) => floors.has(f.name))) {
        floors.get(name)!.push(await timeServerStart(resolve(ROOT, FLOOR), { ...memory, ...env }));
      }
      for (const { name, path } of entries) {
        const s = samples.get(name)!;
        s.memory.push(await timeServerStart(resolve(ROOT, path), memory));
        s.postgres.push(await timeServerStart(resolve(ROOT, path), postgres));
      }
      // PGlite (the default store): a first open takes seconds, so every other round only.
      for (const { name, path } of round % 2 === 0 ? entries : []) {
        const env = {
          PRFLEET_STORE: 'pglite',
          PRFLEET_DATA_DIR: join(
            dataRoot,
            `pglite-${round}-${entries.findIndex((e) => e.name === name)}`,
          ),
        };
        const times = pglite.get(name)!;
        times.first.push((await timeServerStart(resolve(ROOT, path), env)).listeningMs);
        times.reopen.push((await timeServerStart(resolve(ROOT, path), env)).listeningMs);
      }
    }
  } finally {
    await rm(dataRoot, { recursive: true, force: true });
    await dropSchema(schema);
  }
  report({ bare, bareCpu, samples, pglite, floors });
}

/** Removes the benchmark's PostgreSQL schema (pg is a dependency of the server anyway). */
async function dropSchema(schema: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

function report(r: {
  bare: number[];
  bareCpu: number[];
  samples: Map<string, EntrySamples>;
  pglite: Map<string, { first: number[]; reopen: number[] }>;
  floors: Map<string, StartTimes[]>;
}): void {
  const p50 = (v: readonly number[]): number => summarize(v).p50;
  console.log(row('bare `node -e 0`: spawn → exit', r.bare));
  console.log(row('bare node: CPU time at its first line', r.bareCpu));
  for (const [entry, s] of r.samples) {
    for (const [store, starts] of [
      ['memory store', s.memory],
      ['PostgreSQL', s.postgres],
    ] as const) {
      console.log(
        row(
          `${entry}, ${store}: spawn → listening`,
          starts.map((t) => t.listeningMs),
        ),
      );
      console.log(
        row(
          `${entry}, ${store}: CPU time at listening`,
          starts.map((t) => t.listeningCpuMs),
        ),
      );
      console.log(
        row(
          `${entry}, ${store}: spawn → first RPC answered`,
          starts.map((t) => t.firstRpcMs),
        ),
      );
    }
  }
  for (const [floor, starts] of r.floors) {
    console.log(
      row(
        `${floor}: spawn → listening`,
        starts.map((t) => t.listeningMs),
      ),
    );
    console.log(
      row(
        `${floor}: CPU time at listening`,
        starts.map((t) => t.listeningCpuMs),
      ),
    );
    console.log(
      row(
        `${floor}: spawn → first RPC answered`,
        starts.map((t) => t.firstRpcMs),
      ),
    );
  }
  for (const [entry, times] of r.pglite) {
    if (times.first.length === 0) continue;
    console.log(row(`${entry}, PGlite first open (empty dir): listening`, times.first));
    console.log(row(`${entry}, PGlite reopen: listening`, times.reopen));
  }
  console.log('');
  const bare = p50(r.bare);
  const bareCpu = p50(r.bareCpu);
  for (const [floor, starts] of r.floors) {
    const ratio = p50(starts.map((t) => t.listeningCpuMs)) / bareCpu;
    const name = `${floor}: CPU to listening / bare node CPU`;
    console.log(`${name.padEnd(52)} ${`${ratio.toFixed(2)}×`.padStart(8)}  (the floor: no target)`);
  }
  for (const [entry, s] of r.samples) {
    for (const [store, starts] of [
      ['memory store', s.memory],
      ['PostgreSQL', s.postgres],
    ] as const) {
      const listen = p50(starts.map((t) => t.listeningMs));
      const cpu = p50(starts.map((t) => t.listeningCpuMs));
      console.log(verdict(`${entry}, ${store}: listening p50`, listen, 150, 'ms'));
      console.log(
        verdict(`${entry}, ${store}: listening p50 / bare node -e 0`, listen / bare, 3, '×'),
      );
      console.log(
        verdict(`${entry}, ${store}: CPU to listening / bare node CPU`, cpu / bareCpu, 3, '×'),
      );
      console.log(
        verdict(
          `${entry}, ${store}: first RPC p50`,
          p50(starts.map((t) => t.firstRpcMs)),
          250,
          'ms',
        ),
      );
    }
  }
}

await main();
