/**
 * `node dist/bench/scale.js`: the multi-instance figures of issue 7, on the real Redis (127.0.0.1:6379) and
 * PostgreSQL (127.0.0.1:5432, db test), two prfleet-server instances as child processes, and
 * 1,000 emulated agents sharing this process (each with its own channel and TCP connection):
 *
 *  (1) READ KEYS latency, same instance (client → the instance holding the agent) vs cross instance (client →
 *      the other instance → Redis → the holder → agent), interleaved rounds, one call in flight;
 *  (2) server memory per idle connected agent: RSS of the instance with 1,000 idle agents minus its RSS with none
 *      (after a warm-up like scale-floor's: 50 agents connect, serve the READ KEYS rounds of (1) and leave),
 *      both read after full collections (the children get --expose-gc and a SIGUSR2 → gc() hook; the figure
 *      without collections is printed too), and the V8 heap in use from its /metrics;
 *  (3) RSS of one idle prfleet-agent process (emulated transport, the demo fabric's host-a);
 *  (4) failover: SIGKILL the instance holding all 1,000 agents; time until every agent is attached to the other
 *      one (its Redis presence names it and its stream is welcomed), with when the first and half of them were,
 *      the CPU the survivor and the agents (this process) used meanwhile, and TCP listen queue overflows.
 *
 * Runs the server and agent binaries of the build it belongs to (`node <outDir>/bench/scale.js`, dist/ by
 * default); examples/ comes from the repository root above it (repoRoot).
 *
 * Targets: failover ≤ 5 s, ≤ 32 KiB per idle agent. Misses are printed as MISS. Bounded: every wait has a limit.
 * `PRFLEET_BENCH_HEAP_SNAPSHOTS=<dir>` also takes heap snapshots of A with none and with all agents and prints
 * what each agent retains by kind of object (bench/heap-snapshot.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createAgent, type Agent } from '../agent/agent.js';
import { createEmulatedFabric, type EmulatedHost } from '../agent/fabric.js';
import { createEmulatedSource } from '../agent/sources.js';
import { createControlClient, type ControlClient } from '../src/common/client.js';
import { createLogger } from '../src/common/logger.js';
import { spawnNode, repoRoot, type ChildHandle } from '../src/demo/processes.js';
import { Outcome } from '../src/gen/prfleet/v1/scsi.js';
import {
  builtFile,
  manyHostsFabric,
  startScaleServer,
  uniqueClusterNames,
  type ScaleClusterEnv,
} from './scale-cluster.js';
import { retainedPerConnection, takeSnapshot, writeSnapshotHook } from './heap-snapshot.js';
import { measureFloor, REDUCING_GC, REDUCING_GC_SIGNAL, type FloorReading } from './scale-floor.js';
import { formatMs, summarize } from './stats.js';

const AGENTS = Number(process.env['PRFLEET_BENCH_AGENTS'] ?? 1000);
const LATENCY_ROUNDS = 3;
const CALLS_PER_ROUND = 100;
/** Agents that connect, serve the READ KEYS rounds once and leave before the baseline (scale-floor's warm-up: 50). */
const WARMUP_AGENTS = 50;
const FAILOVER_TARGET_MS = 5_000;
const MEMORY_TARGET_KIB = 32;
/** Issue 15: memory per idle agent ≤ 1.1× a bare grpc-js server's per connection (scale-floor), same run. */
const FLOOR_RATIO_TARGET = 1.1;
const REDIS_URL = process.env['PRFLEET_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const SNAPSHOT_DIR = process.env['PRFLEET_BENCH_HEAP_SNAPSHOTS'];

const log = createLogger({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resident set size of `pid`, KiB (VmRSS of /proc/<pid>/status). */
function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) : Number.NaN;
}

/** CPU time (user + system) `pid` has used, ms (/proc/<pid>/stat; clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** TCP listen queue overflows so far (TcpExt ListenOverflows of /proc/net/netstat): connects the kernel dropped. */
function listenOverflows(): number {
  const [names, values] = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  const index = (names ?? '').split(' ').indexOf('ListenOverflows');
  return index < 0 ? Number.NaN : Number((values ?? '').split(' ')[index]);
}

/** Polls `check` every `intervalMs` until true or `limitMs`; returns the time it took, or undefined. */
async function waitUntil(
  check: () => Promise<boolean> | boolean,
  limitMs: number,
  intervalMs = 50,
): Promise<number | undefined> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (await check()) return performance.now() - started;
    await sleep(intervalMs);
  }
  return undefined;
}

/** A free TCP port on 127.0.0.1 (for the /metrics listener). */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        resolvePort(typeof address === 'object' && address !== null ? address.port : 0),
      );
    });
  });
}

/** V8 heap in use of a server, bytes, from its /metrics (prom-client's nodejs_heap_size_used_bytes). */
async function heapUsedBytes(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const match = /^prfleet_nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

/**
 * The children (servers, the solo agent) run with `--expose-gc` and this hook: SIGUSR2 makes them collect
 * garbage. Memory per agent is then what agents keep alive, not how far V8 let garbage pile up before its next
 * major collection (an idle server with 1,000 agents still allocates: heartbeats, Redis refreshes; without a
 * collection the same server reads anywhere in a ±20 KiB-per-agent band depending on the moment).
 */
const gcHookDir = mkdtempSync(join(tmpdir(), 'prfleet-bench-scale-'));
const gcHook = join(gcHookDir, 'gc-on-signal.mjs');
writeFileSync(
  gcHook,
  "process.on('SIGUSR2', () => { globalThis.gc?.(); globalThis.gc?.(); });\n" +
    `process.on('${REDUCING_GC_SIGNAL}', () => globalThis.gc?.(${JSON.stringify(REDUCING_GC)}));\n`,
);
process.env['PRFLEET_CHILD_NODE_ARGS'] = [
  process.env['PRFLEET_CHILD_NODE_ARGS'] ?? '',
  '--expose-gc',
  `--import=${pathToFileURL(gcHook).href}`,
  ...(SNAPSHOT_DIR === undefined
    ? []
    : [`--import=${pathToFileURL(writeSnapshotHook(gcHookDir)).href}`]),
]
  .join(' ')
  .trim();

/** RSS without forcing a collection: the smallest of 4 readings a second apart (the figure before issue 7's work). */
async function settledRss(pid: number): Promise<number> {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 4; i++) {
    await sleep(1_000);
    min = Math.min(min, rssKiB(pid));
  }
  return min;
}

/**
 * RSS after full collections (SIGUSR2 → gc(), or with `signal` REDUCING_GC_SIGNAL a memory-reducing one): the
 * smallest of 4 readings a second apart, each after one.
 */
async function collectedRss(pid: number, signal: NodeJS.Signals = 'SIGUSR2'): Promise<number> {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 4; i++) {
    process.kill(pid, signal);
    await sleep(1_000);
    min = Math.min(min, rssKiB(pid));
  }
  return min;
}

/** Prints prfleet's memory per idle agent over the bare grpc-js server's per connection, with the verdict. */
function reportFloorRatio(
  report: (line: string) => void,
  floor: FloorReading,
  { perAgentKiB, reducedPerAgentKiB }: { perAgentKiB: number; reducedPerAgentKiB: number },
  retained: { totalKiB: number; codeKiB: number } | undefined,
): void {
  const line = (what: string, ours: number, theirs: number, verdict = true) => {
    const ratio = ours / theirs;
    const pass = ratio <= FLOOR_RATIO_TARGET ? 'PASS' : 'MISS';
    report(
      `${what}: ${ours.toFixed(1)} / ${theirs.toFixed(1)} KiB = ${ratio.toFixed(2)}× (target ≤ ${FLOOR_RATIO_TARGET}×)${verdict ? ` ${pass}` : ''}`,
    );
  };
  if (retained !== undefined && floor.retainedKiB !== undefined) {
    line(
      'per idle agent / bare grpc-js connection, heap snapshots',
      retained.totalKiB,
      floor.retainedKiB,
    );
    // Not a verdict: the same ratio without what V8 compiled meanwhile (the floor runs no commands).
    line(
      '  the same without compiled code on either side (not the target)',
      retained.totalKiB - retained.codeKiB,
      floor.retainedKiB - (floor.codeKiB ?? 0),
      false,
    );
  } else {
    line(
      'per idle agent / bare grpc-js connection, RSS after GC',
      perAgentKiB,
      floor.perConnectionKiB,
    );
    // Not a verdict: a server gets such collections only from V8's memory reducer or under memory pressure.
    line(
      '  the same after memory-reducing GCs on both sides (not the target)',
      reducedPerAgentKiB,
      floor.reducedPerConnectionKiB,
      false,
    );
  }
}

/** One bench agent for `host`, attached to `first` (its second address `second`). */
function startAgent(host: EmulatedHost, first: string, second: string): Agent {
  return createAgent(
    {
      server: `${first},${second}`,
      agentId: host.id,
      hostname: host.id,
      plaintext: true,
      heartbeatMs: 15_000,
      backoff: { initialMs: 250, maxMs: 2_000 },
    },
    { log, source: createEmulatedSource(host) },
  );
}

interface Target {
  agentId: string;
  path: string;
}

/** One READ KEYS of `target` through `client`; its latency, ms. */
async function readKeys(client: ControlClient, target: Target): Promise<number> {
  const started = performance.now();
  const { result } = await client.readKeys({ target });
  if (result?.outcome !== Outcome.OUTCOME_GOOD)
    throw new Error(`READ KEYS answered ${String(result?.outcome)}`);
  return performance.now() - started;
}

/** READ KEYS of `target`, 50 warm-up calls through each client, then the interleaved rounds of (1). */
async function readKeysRounds(
  viaA: ControlClient,
  viaB: ControlClient,
  target: Target,
): Promise<{ same: number[]; cross: number[] }> {
  const call = (client: ControlClient) => readKeys(client, target);
  for (let i = 0; i < 50; i++) {
    await call(viaA);
    await call(viaB);
  }
  const same: number[] = [];
  const cross: number[] = [];
  for (let round = 0; round < LATENCY_ROUNDS; round++) {
    for (let i = 0; i < CALLS_PER_ROUND; i++) same.push(await call(viaA));
    for (let i = 0; i < CALLS_PER_ROUND; i++) cross.push(await call(viaB));
  }
  return { same, cross };
}

type Report = (line: string) => void;

/** The two instances, their clients and the agents of a run; what the steps below share and `cleanUp` ends. */
interface Cluster {
  names: ReturnType<typeof uniqueClusterNames>;
  redis: Redis;
  a: Awaited<ReturnType<typeof startScaleServer>>;
  b: Awaited<ReturnType<typeof startScaleServer>>;
  metricsPort: number;
  viaA: ControlClient;
  viaB: ControlClient;
  fabric: ReturnType<typeof createEmulatedFabric>;
  agents: Agent[];
  children: ChildHandle[];
}

/** Starts bench-a (with its metrics port, for the heap in use) and bench-b on one Redis and PostgreSQL schema. */
async function startCluster(children: ChildHandle[]): Promise<Cluster> {
  const names = uniqueClusterNames('bench');
  const env: ScaleClusterEnv = {
    redisUrl: REDIS_URL,
    databaseUrl: DATABASE_URL,
    ...names,
    extra: {
      PRFLEET_INSTANCE_TTL_MS: '2000',
      PRFLEET_LOG_LEVEL: 'info',
      PRFLEET_AGENT_QUEUE_CAPACITY: '16',
    },
  };
  const redis = new Redis(REDIS_URL);
  const metricsPort = await freePort();
  const a = await startScaleServer('bench-a', {
    ...env,
    extra: {
      ...env.extra,
      PRFLEET_METRICS_PORT: String(metricsPort),
      PRFLEET_METRICS_HOST: '127.0.0.1',
    },
  });
  children.push(a.handle);
  const b = await startScaleServer('bench-b', env);
  children.push(b.handle);
  return {
    names,
    redis,
    a,
    b,
    metricsPort,
    viaA: createControlClient(a.address),
    viaB: createControlClient(b.address),
    fabric: createEmulatedFabric(manyHostsFabric(AGENTS + WARMUP_AGENTS, 'b', 1)),
    agents: [],
    children,
  };
}

/**
 * Warm-up, as scale-floor warms its server (peers that connect and leave before the baseline): agents beyond the
 * measured ones connect to A, the same READ KEYS rounds as (1) run through A and B, and the agents leave. What the
 * server allocates once (compiled code, pools, module state) is then in the baseline, not counted per agent;
 * without it ~3 KiB per agent of the snapshot figure was code compiled between the snapshots.
 */
async function warmUp({ fabric, a, b, viaA, viaB }: Cluster): Promise<void> {
  const warm = fabric.hosts.slice(AGENTS).map((host) => startAgent(host, a.address, b.address));
  await Promise.all(warm.map((agent) => agent.start()));
  await Promise.all(warm.map((agent) => agent.waitForState('connected')));
  // Connected is not yet listed with its paths on both instances (the inventory follows Hello, B reads Redis).
  const warmTarget = { agentId: warm[0]?.id ?? '', path: '/dev/sg0' };
  const answers = (client: ControlClient) =>
    readKeys(client, warmTarget).then(
      () => true,
      () => false,
    );
  await waitUntil(async () => (await answers(viaA)) && (await answers(viaB)), 30_000, 200);
  await readKeysRounds(viaA, viaB, warmTarget);
  await Promise.all(warm.map((agent) => agent.stop()));
  await sleep(1_500);
}

/** bench-a's memory readings: RSS settled, after GC and after memory-reducing GCs, the V8 heap in use. */
async function readMemory({ a, metricsPort }: Cluster) {
  return {
    raw: await settledRss(a.handle.pid),
    rss: await collectedRss(a.handle.pid),
    heap: await heapUsedBytes(metricsPort),
    reduced: await collectedRss(a.handle.pid, REDUCING_GC_SIGNAL),
  };
}
type MemoryReading = Awaited<ReturnType<typeof readMemory>>;

/** Whose presence Redis holds for each agent. */
function presence({ redis, names, agents }: Cluster) {
  return redis.mget(agents.map((agent) => `${names.redisPrefix}agent:${agent.id}`));
}

/** 1,000 agents, one path each, attached to A first (B is their second address). */
async function connectAgents(cluster: Cluster, report: Report): Promise<void> {
  const { fabric, a, b, agents } = cluster;
  const connectStarted = performance.now();
  for (let i = 0; i < AGENTS; i += 100) {
    const batch = fabric.hosts
      .slice(i, Math.min(i + 100, AGENTS))
      .map((host) => startAgent(host, a.address, b.address));
    agents.push(...batch);
    await Promise.all(batch.map((agent) => agent.start()));
    await Promise.all(batch.map((agent) => agent.waitForState('connected')));
  }
  await waitUntil(
    async () => (await presence(cluster)).every((owner) => owner === 'bench-a'),
    30_000,
    200,
  );
  report(
    `${AGENTS} agents connected to bench-a in ${formatMs(performance.now() - connectStarted)}`,
  );
}

/** (1) READ KEYS through the agents' instance and through the other one. */
async function measureLatency({ viaA, viaB }: Cluster, target: Target, report: Report) {
  const { same, cross } = await readKeysRounds(viaA, viaB, target);
  const s = summarize(same);
  const c = summarize(cross);
  report(`READ KEYS same instance:  p50 ${formatMs(s.p50)}  p99 ${formatMs(s.p99)}  (n=${s.n})`);
  report(
    `READ KEYS cross instance: p50 ${formatMs(c.p50)}  p99 ${formatMs(c.p99)}  (n=${c.n}; + Redis relay ${formatMs(c.p50 - s.p50)} at p50)`,
  );
}

/** (2) server memory per idle agent (after the latency rounds: what idle agents keep, not start-up garbage). */
async function measureMemory(
  cluster: Cluster,
  before: MemoryReading & { snapshot: string | undefined },
  floor: FloorReading,
  report: Report,
): Promise<void> {
  const after = await readMemory(cluster);
  const reducedPerAgentKiB = (after.reduced - before.reduced) / AGENTS;
  const perAgentKiB = (after.rss - before.rss) / AGENTS;
  const heapPerAgentKiB = (after.heap - before.heap) / 1024 / AGENTS;
  // Memory freed before the no-agent reading (V8 pages kept committed, malloc free lists) stays resident and is
  // reused by the agents: RSS can then grow less than the V8 heap alone did. Such a reading is no measurement.
  const verdict =
    perAgentKiB < heapPerAgentKiB
      ? 'INVALID (RSS grew less than the V8 heap in use: memory freed before the baseline was reused; run again)'
      : perAgentKiB <= MEMORY_TARGET_KIB
        ? 'PASS'
        : 'MISS';
  report(
    `server RSS after GC: ${(before.rss / 1024).toFixed(1)} MiB with no agent, ${(after.rss / 1024).toFixed(1)} MiB with ${AGENTS} idle agents → ${perAgentKiB.toFixed(1)} KiB per agent (target ≤ ${MEMORY_TARGET_KIB} KiB) ${verdict}`,
  );
  report(
    `  of which V8 heap in use: ${heapPerAgentKiB.toFixed(1)} KiB per agent (the rest: HTTP/2 sessions in nghttp2, sockets, malloc and V8 page slack)`,
  );
  report(
    `  without forcing a GC (smallest of 4 readings): ${((after.raw - before.raw) / AGENTS).toFixed(1)} KiB per agent (includes garbage not yet collected)`,
  );
  report(
    `  after memory-reducing GCs (V8's reaction to memory pressure; it also shrinks the young generation): ${reducedPerAgentKiB.toFixed(1)} KiB per agent`,
  );
  let retainedKiB: { totalKiB: number; codeKiB: number } | undefined;
  if (SNAPSHOT_DIR !== undefined && before.snapshot !== undefined) {
    const retained = retainedPerConnection(
      before.snapshot,
      await takeSnapshot(cluster.a.handle.pid, SNAPSHOT_DIR),
      AGENTS,
    );
    retainedKiB = retained;
    report(
      `  heap snapshots: ${retained.totalKiB.toFixed(1)} KiB retained per agent (JS + native memory V8 is told of; the RSS figures above are not comparable in such a run: the first snapshot grew the process), largest kinds:`,
    );
    for (const line of retained.lines) report(`    ${line}`);
    report(
      `  of which compiled code, bytecode and feedback: ${retained.codeKiB.toFixed(1)} KiB per agent (what the run made V8 compile, the READ KEYS rounds included: it does not grow with the agents)`,
    );
  }
  reportFloorRatio(report, floor, { perAgentKiB, reducedPerAgentKiB }, retainedKiB);
}

/** (3) one idle agent process. */
async function measureSoloAgent({ b, children }: Cluster, report: Report): Promise<void> {
  const solo = spawnNode(
    builtFile('agent/main.js'),
    [
      '--server',
      b.address,
      '--plaintext',
      '--agent-id',
      'bench-solo',
      '--transport',
      'emulated',
      '--fabric',
      resolve(repoRoot(), 'examples/fabric-demo.yaml'),
      '--host',
      'host-a',
    ],
    { name: 'prfleet-agent bench-solo' },
  );
  children.push(solo);
  await solo.waitForLog((e) => e['msg'] === 'connected', 30_000);
  const agentRss = await settledRss(solo.pid);
  const agentRssCollected = await collectedRss(solo.pid);
  report(
    `idle prfleet-agent process RSS: ${(agentRss / 1024).toFixed(1)} MiB, ${(agentRssCollected / 1024).toFixed(1)} MiB after GC (emulated transport, 5 paths)`,
  );
  await solo.stop();
}

/** (4) failover of 1,000 agents: bench-a killed, each agent welcomed by bench-b and its presence moved there. */
async function measureFailover(cluster: Cluster, target: Target, report: Report): Promise<void> {
  const { a, b, agents, viaB } = cluster;
  const sessionsBefore = agents.map((agent) => agent.sessions);
  const back = () =>
    agents.filter(
      (agent, i) => agent.state === 'connected' && agent.sessions > (sessionsBefore[i] ?? 0),
    ).length;
  const overflowsBefore = listenOverflows();
  const cpuBefore = cpuMs(b.handle.pid);
  const benchCpuBefore = process.cpuUsage();
  const killedAt = performance.now();
  a.handle.signal('SIGKILL');
  // When the first, half and all of the agents were welcomed again (how the time splits).
  const marks: { first?: number; half?: number } = {};
  const welcomedMs = await waitUntil(
    () => {
      const n = back();
      const now = performance.now() - killedAt;
      if (n > 0) marks.first ??= now;
      if (n >= AGENTS / 2) marks.half ??= now;
      return n === AGENTS;
    },
    60_000,
    50,
  );
  const bCpuMs = cpuMs(b.handle.pid) - cpuBefore;
  const benchCpu = process.cpuUsage(benchCpuBefore);
  const tookMs = await waitUntil(
    async () => (await presence(cluster)).every((owner) => owner === 'bench-b'),
    60_000,
    50,
  );
  if (welcomedMs !== undefined && tookMs !== undefined) {
    report(
      `  every agent welcomed by bench-b after ${formatMs(welcomedMs)} (first ${formatMs(marks.first ?? Number.NaN)}, half ${formatMs(marks.half ?? Number.NaN)}); Redis presence complete after ${formatMs(welcomedMs + tookMs)}`,
    );
    report(
      `  CPU meanwhile: bench-b ${bCpuMs} ms, this process (the ${AGENTS} agents) ${Math.round((benchCpu.user + benchCpu.system) / 1000)} ms; TCP listen overflows ${listenOverflows() - overflowsBefore}`,
    );
  }
  const agentsBack = agents.filter((agent, i) => agent.sessions > (sessionsBefore[i] ?? 0)).length;
  report(
    tookMs === undefined
      ? `failover: only ${agentsBack}/${AGENTS} agents re-attached within 60 s MISS`
      : `failover: ${AGENTS} agents re-attached to bench-b ${formatMs((welcomedMs ?? 0) + tookMs)} after SIGKILL of bench-a (target ≤ ${FAILOVER_TARGET_MS / 1000} s) ${(welcomedMs ?? 0) + tookMs <= FAILOVER_TARGET_MS ? 'PASS' : 'MISS'}`,
  );
  const { result } = await viaB.readKeys({ target });
  report(
    `after failover, READ KEYS via bench-b: ${result?.outcome === Outcome.OUTCOME_GOOD ? 'GOOD' : String(result?.outcome)}`,
  );
}

/** Stops the agents, clients and processes and removes the run's Redis keys, schema and files. */
async function cleanUp(cluster: Cluster | undefined, children: ChildHandle[]): Promise<void> {
  if (cluster !== undefined) {
    await Promise.all(cluster.agents.map((agent) => agent.stop().catch(() => undefined)));
    cluster.viaA.close();
    cluster.viaB.close();
  }
  await Promise.all(children.map((child) => child.stop({ graceMs: 5_000 })));
  if (cluster !== undefined) {
    const { redis, names } = cluster;
    const keys = await redis.keys(`${names.redisPrefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    const db = new pg.Client({ connectionString: DATABASE_URL });
    await db.connect();
    await db.query(`DROP SCHEMA IF EXISTS ${names.schema} CASCADE`);
    await db.end();
  }
  rmSync(gcHookDir, { recursive: true, force: true });
}

const loadLine = (when: string) =>
  `load average (1/5/15 min) at the ${when}: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`;

async function main(): Promise<void> {
  const children: ChildHandle[] = [];
  let cluster: Cluster | undefined;
  const report: Report = (line) => process.stdout.write(`${line}\n`);
  try {
    report(loadLine('start'));
    // The floor first, before the instances start: a bare grpc-js server child with as many idle peers, measured
    // the same way (bench/scale-floor.ts), so the ratio below compares readings of the same minutes.
    const floor = await measureFloor('grpc-js');
    report(`floor (scale-floor): ${floor.line.split('\n').join('\n  ')}`);
    cluster = await startCluster(children);
    await warmUp(cluster);
    const before = {
      ...(await readMemory(cluster)),
      snapshot:
        SNAPSHOT_DIR === undefined
          ? undefined
          : await takeSnapshot(cluster.a.handle.pid, SNAPSHOT_DIR),
    };
    await connectAgents(cluster, report);
    const target = { agentId: cluster.agents[0]?.id ?? '', path: '/dev/sg0' };
    await measureLatency(cluster, target, report);
    await measureMemory(cluster, before, floor, report);
    await measureSoloAgent(cluster, report);
    await measureFailover(cluster, target, report);
    report(loadLine('end'));
  } finally {
    await cleanUp(cluster, children);
  }
}

const limit = setTimeout(() => {
  process.stderr.write('bench/scale: over its 5-minute limit, giving up\n');
  process.exit(2);
}, 300_000);
limit.unref();
main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench/scale failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
