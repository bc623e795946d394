/**
 * `node dist/bench/agent-weight.js` (make bench-agent): how heavy an idle `prfleet-agent` is on a host, against
 * an idle bare node and against the floor of any agent of this design, all measured in the same run. A
 * `prfleet-server` (memory store) runs as a child; per round and per agent kind:
 *
 *  - start → connected: spawn → the agent's "connected" log line (the server's Welcome: it lists the agent);
 *  - idle RSS (VmRSS) SETTLE_MS after connecting, vs `node -e 'setInterval(() => {}, 1e9)'` just as long after
 *    its start;
 *  - idle CPU: the agent's CPU time over IDLE_MS after that (heartbeats only; /proc ticks are 10 ms).
 *
 * Agent kinds: the tsc output with the emulated transport (host-a of examples/fabric-demo.yaml: 5 paths; what
 * tests run), the bundle (`make bundle`) with the emulated transport, and the bundle with the sgio transport
 * (what a real host runs; this machine may have no /dev/sg nodes, which makes no difference to an idle agent),
 * without and with the node flags of the shipped launch: those of ExecStart in deploy/prfleet-agent.service,
 * read from the unit itself, so this measures what `make agent-dist` and systemd run; and that launch on the
 * HTTP/1.1 long-poll link (`--link long-poll`). The floors (bench/agent-floor.ts, bundled here the same way) hold
 * koffi and one link without any agent code: @grpc/grpc-js with one open Connect stream (what no stream agent
 * can go below), the same stream on bare node:http2 (what grpc-js adds), and a kept-alive node:http connection
 * (what no long-poll agent can go below). Targets: RSS ≤ 1.3× bare, start → connected ≤ 300 ms, idle CPU ≤ 10
 * ms (one tick) in IDLE_MS. Options: --rounds N (default 3), --entry name=path (repeatable; adds another agent
 * script, e.g. an older build, run as `node <flags> <path> --transport sgio` with the shipped launch's flags).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { build } from 'esbuild';
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { processCpuMs, summarize } from './stats.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SETTLE_MS = 3_000;
const IDLE_MS = 5_000;
const LINE_TIMEOUT_MS = 60_000;
const FABRIC = join(ROOT, 'examples', 'fabric-demo.yaml');
const BUNDLE = join('dist', 'bundle', 'agent', 'prfleet-agent.mjs');

interface AgentKind {
  readonly name: string;
  readonly entry: string;
  /** Node flags before the script. */
  readonly flags: readonly string[];
  /** Arguments after the server address (agents). */
  readonly transport?: readonly string[];
  /** The floor's link (floors: bench/agent-floor.ts takes it and the address only). */
  readonly floor?: 'grpc-js' | 'http2' | 'http1';
}

const EMULATED = ['--transport', 'emulated', '--fabric', FABRIC, '--host', 'host-a'];
const SGIO = ['--transport', 'sgio'];
const FLOOR = join('dist', 'bench-agent-floor', 'agent-floor.cjs');

/** The node flags of the shipped launch: between the node binary and the script in the unit's ExecStart. */
function shippedFlags(): string[] {
  const unit = readFileSync(join(ROOT, 'deploy', 'prfleet-agent.service'), 'utf8');
  const words = /^ExecStart=(.+)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  return words.slice(1, -1);
}

function kinds(shipped: readonly string[]): AgentKind[] {
  const flags = shipped.join(' ') || '(none)';
  return [
    {
      name: 'tsc output, emulated (5 paths), no flags',
      entry: join('dist', 'agent', 'main.js'),
      flags: [],
      transport: EMULATED,
    },
    {
      name: `bundle, emulated (5 paths), ${flags}`,
      entry: BUNDLE,
      flags: shipped,
      transport: EMULATED,
    },
    { name: 'bundle, sgio, no flags', entry: BUNDLE, flags: [], transport: SGIO },
    {
      name: `bundle, sgio, ${flags} (the shipped launch)`,
      entry: BUNDLE,
      flags: shipped,
      transport: SGIO,
    },
    {
      name: `bundle, sgio, long-poll link, ${flags}`,
      entry: BUNDLE,
      flags: shipped,
      transport: [...SGIO, '--link', 'long-poll'],
    },
    { name: 'floor: grpc-js stream + koffi, no flags', entry: FLOOR, flags: [], floor: 'grpc-js' },
    {
      name: `floor: grpc-js stream + koffi, ${flags}`,
      entry: FLOOR,
      flags: shipped,
      floor: 'grpc-js',
    },
    {
      name: `floor: node:http2 stream + koffi (no grpc-js), ${flags}`,
      entry: FLOOR,
      flags: shipped,
      floor: 'http2',
    },
    {
      name: `floor: node:http kept-alive connection + koffi, ${flags}`,
      entry: FLOOR,
      flags: shipped,
      floor: 'http1',
    },
  ];
}

/**
 * Bundles bench/agent-floor.ts (tsc output) as scripts/bundle.mjs bundles the agent: minified, koffi and
 * @grpc/proto-loader (which grpc-js requires only for server-side services) external.
 */
async function bundleFloor(): Promise<void> {
  await build({
    entryPoints: [join(ROOT, 'dist', 'bench', 'agent-floor.js')],
    outfile: join(ROOT, FLOOR),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node22',
    external: ['koffi', '@grpc/proto-loader'],
    minify: true,
    logLevel: 'warning',
  });
}

/** Resident set size of `pid` in KiB (VmRSS). */
function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? NaN);
}

/** Resolves with the first stdout line containing `marker` (JSON log lines), or rejects on exit / timeout. */
function waitForLine(child: ChildProcess, marker: string): Promise<string> {
  return new Promise((resolveLine, reject) => {
    let pending = '';
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(
      () => reject(new Error(`no ${marker} in ${LINE_TIMEOUT_MS} ms: ${stderr}`)),
      LINE_TIMEOUT_MS,
    );
    const onData = (d: Buffer): void => {
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      const line = lines.find((l) => l.includes(marker));
      if (line === undefined) return;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stdout?.resume();
      resolveLine(line);
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited (${code}) before ${marker}: ${stderr}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  await exited;
}

interface Weight {
  readonly connectMs: number;
  readonly rssKiB: number;
  readonly idleCpuMs: number;
}

async function measureAgent(kind: AgentKind, address: string, id: string): Promise<Weight> {
  const args = [
    ...kind.flags,
    resolve(ROOT, kind.entry),
    ...(kind.floor === undefined
      ? ['--server', address, '--plaintext', '--agent-id', id, ...(kind.transport ?? [])]
      : [kind.floor, address]),
  ];
  const started = performance.now();
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await waitForLine(child, '"connected"');
    const connectMs = performance.now() - started;
    await sleep(SETTLE_MS);
    const pid = child.pid ?? 0;
    const rss = rssKiB(pid);
    const cpuBefore = processCpuMs(pid);
    await sleep(IDLE_MS);
    return { connectMs, rssKiB: rss, idleCpuMs: processCpuMs(pid) - cpuBefore };
  } finally {
    await stop(child);
  }
}

async function bareNodeRss(flags: readonly string[] = []): Promise<number> {
  const child = spawn(
    process.execPath,
    [...flags, '-e', 'console.log("up"); setInterval(() => {}, 1e9)'],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  try {
    await waitForLine(child, 'up');
    await sleep(SETTLE_MS);
    return rssKiB(child.pid ?? 0);
  } finally {
    await stop(child);
  }
}

/** The floor a shipped-flags sgio agent is compared with: its link's (undefined for other agents). */
function floorOf(kind: AgentKind): AgentKind['floor'] {
  if (kind.transport?.[1] !== 'sgio') return undefined;
  return kind.transport.includes('long-poll') ? 'http1' : 'grpc-js';
}

const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

function verdict(name: string, shown: string, target: string, pass: boolean): string {
  return `${name.padEnd(50)} ${shown.padStart(10)}  (target ${target})  ${pass ? 'PASS' : 'MISS'}`;
}

function startServer(): ChildProcess {
  const serverEntry = existsSync(join(ROOT, 'dist', 'bundle', 'server', 'prfleet-server.mjs'))
    ? join(ROOT, 'dist', 'bundle', 'server', 'prfleet-server.mjs')
    : join(ROOT, 'dist', 'src', 'server', 'main.js');
  return spawn(process.execPath, [serverEntry], {
    cwd: ROOT,
    env: {
      ...process.env,
      PRFLEET_STORE: 'memory',
      PRFLEET_PLAINTEXT: 'true',
      PRFLEET_HOST: '127.0.0.1',
      PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Prints each kind's figures; agents get the verdicts, the floors their ratio and the shipped agent its margin. */
function report(
  bare: readonly number[],
  bareFlagged: readonly number[],
  results: ReadonlyMap<AgentKind, Weight[]>,
): void {
  const bareRss = summarize(bare).p50;
  console.log(`idle bare node RSS p50 ${mib(bareRss)} (min ${mib(summarize(bare).min)})`);
  // Not the target's baseline (a bare node as it starts); shows what the flags alone save.
  console.log(`idle bare node with the shipped flags: RSS p50 ${mib(summarize(bareFlagged).p50)}`);
  const rssOf = (kind: AgentKind): number => summarize(results.get(kind)!.map((w) => w.rssKiB)).p50;
  const shippedFloor = (link: AgentKind['floor']): AgentKind | undefined =>
    [...results.keys()].find((k) => k.floor === link && k.flags.length > 0);
  for (const [kind, weights] of results) {
    const rss = summarize(weights.map((w) => w.rssKiB));
    const connect = summarize(weights.map((w) => w.connectMs));
    const cpu = summarize(weights.map((w) => w.idleCpuMs));
    console.log(
      `${kind.name}: RSS p50 ${mib(rss.p50)} (min ${mib(rss.min)}, max ${mib(rss.max)}), start → connected p50 ` +
        `${connect.p50.toFixed(0)} ms (min ${connect.min.toFixed(0)}), idle CPU in ${IDLE_MS / 1000} s ` +
        `p50 ${cpu.p50.toFixed(0)} ms (max ${cpu.max.toFixed(0)})`,
    );
    const ratio = rss.p50 / bareRss;
    if (kind.floor !== undefined) {
      console.log(`  RSS / bare node RSS ${ratio.toFixed(2)}× (the floor: no agent code)`);
      continue;
    }
    console.log(verdict(`  RSS / bare node RSS`, `${ratio.toFixed(2)}×`, '≤ 1.3×', ratio <= 1.3));
    const link = kind.flags.length > 0 ? floorOf(kind) : undefined;
    const floor = link === undefined ? undefined : shippedFloor(link);
    if (floor !== undefined)
      console.log(
        `  above its floor (${floor.floor}) with the same flags: ${mib(rss.p50 - rssOf(floor))}`,
      );
    console.log(
      verdict(
        `  start → connected p50`,
        `${connect.p50.toFixed(0)} ms`,
        '≤ 300 ms',
        connect.p50 <= 300,
      ),
    );
    console.log(
      verdict(
        `  idle CPU max in ${IDLE_MS / 1000} s`,
        `${cpu.max.toFixed(0)} ms`,
        '≤ 10 ms',
        cpu.max <= 10,
      ),
    );
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      entry: { type: 'string', multiple: true, default: [] },
    },
  });
  const rounds = Number(values.rounds);
  await bundleFloor();
  const shipped = shippedFlags();
  const extra = values.entry.map((spec): AgentKind => {
    const [name = spec, entry = spec] = spec.split('=');
    return { name: `${name}, sgio, ${shipped.join(' ')}`, entry, flags: shipped, transport: SGIO };
  });
  const all = [...extra, ...kinds(shipped)];
  const present = all.filter((k) => existsSync(resolve(ROOT, k.entry)));
  for (const k of all)
    if (!present.includes(k)) console.log(`${k.name}: ${k.entry} missing (make build)`);
  const server = startServer();
  const bare: number[] = [];
  const bareFlagged: number[] = [];
  const results = new Map<AgentKind, Weight[]>(present.map((k) => [k, []]));
  console.log(
    `prfleet-agent weight, node ${process.version}, ${rounds} rounds, load ${loadavg()[0]?.toFixed(1) ?? '?'}, ` +
      `shipped flags: ${shipped.join(' ') || '(none)'}`,
  );
  try {
    const listening = await waitForLine(server, '"listening"');
    const address = `127.0.0.1:${(JSON.parse(listening) as { port: number }).port}`;
    for (let round = 0; round < rounds; round++) {
      bare.push(await bareNodeRss());
      bareFlagged.push(await bareNodeRss(shipped));
      for (const [i, kind] of present.entries()) {
        results.get(kind)!.push(await measureAgent(kind, address, `weight-${i}-${round}`));
      }
    }
  } finally {
    await stop(server);
  }
  report(bare, bareFlagged, results);
}

await main();
