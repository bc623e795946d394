/**
 * Fleet audit benchmark: a real prfleet server (AgentService + FleetService, in-memory store) in this process,
 * N emulated agents in a child process (one shared fabric, one gRPC connection each), and one Audit of every LU.
 * Reports wall time, results/s, commands/s and this process's memory (server + the audit client; the agents live
 * in the child). Target: 10,000 LUs behind 1,000 agents in ≤ 1 s. Misses are printed, not hidden.
 *
 * Run from a build: `npx tsc -p tsconfig.build.json --outDir <dir> && node <dir>/bench/fleet.js [hosts] [lusPerHost] [maxConcurrency]`.
 * PRFLEET_BENCH_PROFILE=<dir> writes a CPU profile of the last measured audit only (server+client and agents
 * child: `server.cpuprofile`, `agents.cpuprofile`), without start-up and warm-up in it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { Session as InspectorSession } from 'node:inspector/promises';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient, createServer, type Client } from 'nice-grpc';
import { errorDetailsServerMiddleware } from 'nice-grpc-error-details';
import { startEmulatedFleet } from '../agent/fleet.js';
import { fabricSpec } from './fleet-fabric.js';
import { createLogger } from '../src/common/logger.js';
import { directServiceDefinition } from '../src/common/service-definition.js';
import { AgentServiceDefinition } from '../src/gen/prfleet/v1/agent.js';
import { FleetServiceDefinition, Reachability } from '../src/gen/prfleet/v1/fleet.js';
import { AgentRegistry } from '../src/server/agents/index.js';
import { createAgentService } from '../src/server/agents/service.js';
import { createCommandPipeline } from '../src/server/commands/pipeline.js';
import { createMemoryJournal } from '../src/server/journal.js';
import { registerFleetService } from '../src/server/fleet/index.js';
import { createInProcessRouter, type CommandRouter } from '../src/server/router.js';
import { createFleetState } from '../src/server/web/index.js';
import { openStore } from '../src/server/store/index.js';
import { processCpuMs } from './stats.js';

const log = createLogger({ level: 'silent', name: 'bench-fleet' });

/** Starts the V8 CPU profiler in this process; the returned function stops it and writes `file`. */
async function startProfile(file: string): Promise<() => Promise<void>> {
  const session = new InspectorSession();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

async function agentsMain(address: string, fabricFile: string): Promise<void> {
  const fleet = await startEmulatedFleet({
    address,
    fabric: fabricFile,
    log,
    agentOptions: { heartbeatMs: 60_000, pathConcurrency: 8 },
  });
  process.send?.({ ready: fleet.agents.length });
  let stopProfile: (() => Promise<void>) | undefined;
  process.on('message', (m: unknown) => {
    if (m === 'stop') void fleet.stop().then(() => process.exit(0));
    const profile = (m as { profile?: string } | null)?.profile;
    if (profile !== undefined)
      void startProfile(profile).then((stop) => {
        stopProfile = stop;
        process.send?.('profiling');
      });
    if (m === 'profile-stop') void stopProfile?.().then(() => process.send?.('profiled'));
  });
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

type Store = Awaited<ReturnType<typeof openStore>>;

/** The fleet service as prfleet-server registers it (src/server/server.ts), on an in-memory store. */
async function startFleetServer() {
  const agents = new AgentRegistry({
    heartbeatMs: 60_000,
    missedHeartbeats: 5,
    outboxCapacity: 256,
    log,
  });
  const router = createInProcessRouter({
    registry: agents,
    log,
    instanceId: 'bench',
    resultSlackMs: 5_000,
  });
  const store = await openStore({ inMemory: true });
  const agentService = createAgentService({ registry: agents, router, instanceId: 'bench', log });
  const server = createServer({ interceptors: [agentService.interceptor] }).use(
    errorDetailsServerMiddleware,
  );
  server.add(directServiceDefinition(AgentServiceDefinition), agentService.implementation);
  registerFleetService(server, {
    commands: createCommandPipeline({ router, journal: createMemoryJournal(), marginMs: 0, log }),
    devices: agents,
    store,
    log,
  });
  const port = await server.listen('127.0.0.1:0');
  return { agents, router, store, server, address: `127.0.0.1:${port}` };
}

/** Forks the emulated agents and waits until every one has its session and inventory in. */
async function startAgents(
  agents: AgentRegistry,
  address: string,
  hosts: number,
  lusPerHost: number,
) {
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-bench-'));
  const fabricFile = join(dir, 'fabric.json');
  writeFileSync(fabricFile, JSON.stringify(fabricSpec(hosts, lusPerHost)));
  const t0 = performance.now();
  const startCpu = process.cpuUsage();
  const child = fork(fileURLToPath(import.meta.url), ['--agents', address, fabricFile], {
    stdio: 'inherit',
  });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`agents exited with ${code}`)));
  });
  for (;;) {
    const ready = agents.list().filter((a) => a.session !== undefined && a.paths.length > 0).length;
    if (ready === hosts) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const cpu = process.cpuUsage(startCpu);
  const line =
    `startup (agents connected + inventories): ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
    `CPU: server ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms, agents child ${processCpuMs(child.pid ?? -1).toFixed(0)} ms`;
  return { child, line };
}

/** Samples this process's peak RSS and heap until stopped. */
function samplePeaks() {
  const before = process.memoryUsage();
  let peakRss = before.rss;
  let peakHeap = before.heapUsed;
  // rss() and the heap statistics alone: process.memoryUsage() cost ~0.5 ms a call here (5 % of the audit's CPU);
  // the peak RSS is also read once more at the end.
  let ticks = 0;
  const sampler = setInterval(() => {
    // RSS every 250 ms only: reading it costs ~1 ms in this process (its large wasm mappings).
    if (ticks++ % 5 === 0) peakRss = Math.max(peakRss, process.memoryUsage.rss());
    peakHeap = Math.max(peakHeap, getHeapStatistics().used_heap_size);
  }, 50);
  return () => {
    clearInterval(sampler);
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
    return `server RSS ${mib(before.rss)} → peak ${mib(peakRss)}, heap ${mib(before.heapUsed)} → peak ${mib(peakHeap)}`;
  };
}

/** Starts CPU profiles of this process and of the agents child; resolves with the function that stops both. */
async function profileBoth(child: ChildProcess, profileDir: string): Promise<() => Promise<void>> {
  child.send({ profile: join(profileDir, 'agents.cpuprofile') });
  await new Promise((r) => child.once('message', r));
  const stopServer = await startProfile(join(profileDir, 'server.cpuprofile'));
  return async () => {
    await stopServer();
    child.send('profile-stop');
    await new Promise((r) => child.once('message', r));
  };
}

interface AuditRound {
  client: Client<typeof FleetServiceDefinition>;
  child: ChildProcess;
  expectedLus: number;
  maxConcurrency: number;
  batchReports: boolean;
}

/** One fleet audit, timed; returns its result line. */
async function auditRound(round: AuditRound, label: string): Promise<string> {
  const { client, child, expectedLus, maxConcurrency, batchReports } = round;
  const peaks = samplePeaks();
  const cpuBefore = process.cpuUsage();
  const agentsCpuBefore = processCpuMs(child.pid ?? -1);
  const started = performance.now();
  let reports = 0;
  let reachable = 0;
  let commands = 0;
  let firstReportMs = 0;
  let reportMessages = 0;
  for await (const e of client.audit({ maxConcurrency, maxPerAgent: 8, batchReports })) {
    const batch =
      e.event?.$case === 'report'
        ? [e.event.value]
        : e.event?.$case === 'reports'
          ? e.event.value.reports
          : [];
    if (batch.length > 0) reportMessages += 1;
    for (const report of batch) {
      if (reports === 0) firstReportMs = performance.now() - started;
      reports += 1;
      if (report.reachability === Reachability.REACHABILITY_REACHABLE) reachable += 1;
    }
    if (e.event?.$case === 'summary') commands = e.event.value.commandsSent;
  }
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const serverCpuMs = (cpu.user + cpu.system) / 1000;
  const agentsCpuMs = processCpuMs(child.pid ?? -1) - agentsCpuBefore;
  return (
    `${label.padEnd(9)} ${reports} LU reports (${reachable} reachable of ${expectedLus}), ${commands} commands: wall ${ms.toFixed(0)} ms, ` +
    `first report ${firstReportMs.toFixed(0)} ms, ${(reports / (ms / 1000)).toFixed(0)} results/s, ${(commands / (ms / 1000)).toFixed(0)} commands/s; ` +
    `reports in ${reportMessages} messages; CPU: server+client ${serverCpuMs.toFixed(0)} ms (${((1000 * serverCpuMs) / Math.max(1, reports)).toFixed(0)} µs/LU), ` +
    `agents ${agentsCpuMs.toFixed(0)} ms (${((1000 * agentsCpuMs) / Math.max(1, commands)).toFixed(0)} µs/command); ` +
    peaks()
  );
}

async function main(): Promise<void> {
  const hosts = Number(process.argv[2] ?? 1000);
  const lusPerHost = Number(process.argv[3] ?? 10);
  const maxConcurrency = Number(process.argv[4] ?? 256);
  const { agents, router, store, server, address } = await startFleetServer();
  const { child, line: startupLine } = await startAgents(agents, address, hosts, lusPerHost);
  const round: AuditRound = {
    client: createClient(FleetServiceDefinition, createChannel(address)),
    child,
    expectedLus: hosts * Math.max(1, Math.floor(lusPerHost / 2)) * 2,
    maxConcurrency,
    // As the CLI asks for it; PRFLEET_BENCH_BATCH_REPORTS=false measures one message per report.
    batchReports: process.env['PRFLEET_BENCH_BATCH_REPORTS'] !== 'false',
  };
  const profileDir = process.env['PRFLEET_BENCH_PROFILE'];
  const rows: string[] = [];
  const labels = ['warm-up', 'measured', 'measured'];
  for (const [i, label] of labels.entries()) {
    (globalThis as { gc?: () => void }).gc?.();
    const last = i === labels.length - 1;
    const stopProfile =
      profileDir !== undefined && last ? await profileBoth(child, profileDir) : undefined;
    rows.push(await auditRound(round, label));
    await stopProfile?.();
  }
  rows.push(...(await measureWebView(agents, router, store)));
  console.log(
    `fleet audit bench: ${hosts} agents, ${round.expectedLus} LUs (${hosts * lusPerHost} paths), max ${maxConcurrency} commands in flight, ${availableParallelism()} CPUs, load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log(startupLine);
  for (const r of rows) console.log(r);
  console.log('target: ≤ 1000 ms wall for 10,000 LUs behind 1,000 agents');
  console.log(
    'CPU: user+system of this process (server and the audit client) and of the agents child (/proc), per audit; ' +
      'on a shared machine read CPU per LU rather than wall time',
  );
  child.send('stop');
  await new Promise((r) => child.once('exit', r));
  await server.forceShutdown();
  await store.close();
  process.exit(0);
}

/**
 * The web fleet view's full read of the same fleet (src/server/web: one path per LU, at most 16 reads in flight
 * and 2 per agent, where the audit reads every path 256 at a time), twice, and the size of its JSON.
 */
async function measureWebView(
  registry: AgentRegistry,
  router: CommandRouter,
  store: Store,
): Promise<string[]> {
  const state = createFleetState({
    registry,
    router,
    store,
    history: store.history,
    log,
    staleMs: 0,
  });
  const rows: string[] = [];
  for (const label of ['web view', 'web view']) {
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const view = await state.snapshot();
    const ms = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const lus = view.sites.flatMap((s) => s.loaders).flatMap((l) => [...l.changers, ...l.drives]);
    const bytes = Buffer.byteLength(JSON.stringify(view));
    rows.push(
      `${label.padEnd(9)} snapshot of ${lus.length} LUs (${lus.filter((l) => l.status === 'read').length} read): wall ${ms.toFixed(0)} ms, ` +
        `CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms (${((cpu.user + cpu.system) / Math.max(1, lus.length)).toFixed(0)} µs/LU), JSON ${mib(bytes)}`,
    );
  }
  state.close();
  return rows;
}

if (process.argv[2] === '--agents')
  await agentsMain(process.argv[3] as string, process.argv[4] as string);
else await main();
