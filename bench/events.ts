/**
 * `make bench-events` (issue 16): fleet events under load. A real prfleet server in this process (events,
 * webhooks, FleetService; embedded PGlite in memory, or PostgreSQL with PRFLEET_BENCH_DATABASE_URL), the
 * agents of a bench/fleet-shaped fabric in a child process, and in one run:
 *
 * 1. the fleet audit while PROUTs change registrations at a steady rate, without watchers or webhooks;
 * 2. the same audit and PROUTs with W watchers (FleetService.Watch streams) and R webhook receivers (node:http in
 *    this process) attached: event latency p50/p99 from the PROUT being sent to a watcher (and to a receiver)
 *    seeing its event, and the audit's wall time against (1);
 * 3. the audit again without them (drift of the machine during the run);
 * 4. the periodic light observation (READ KEYS + READ RESERVATION per LU): one round over every LU to record
 *    the baseline, one more as a steady round (nothing changed, nothing written): CPU per LU per round.
 *
 * Sizes from the environment (defaults: the 10,000 LUs behind 1,000 agents, 100 watchers, 10 receivers):
 * PRFLEET_BENCH_HOSTS, PRFLEET_BENCH_LUS_PER_HOST, PRFLEET_BENCH_WATCHERS, PRFLEET_BENCH_RECEIVERS,
 * PRFLEET_BENCH_CHANGE_RATE (PROUTs/s during the audits, default 20), PRFLEET_BENCH_AUDITS (audits per phase,
 * default 3; the median is reported), PRFLEET_BENCH_PHASE_MS (each phase lasts at least this, default 10 s).
 * A small check:
 * `PRFLEET_BENCH_HOSTS=20 PRFLEET_BENCH_WATCHERS=20 PRFLEET_BENCH_RECEIVERS=2 node dist/bench/events.js`.
 */
import { fork } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient, type Channel } from 'nice-grpc';
import { startEmulatedFleet } from '../agent/fleet.js';
import { fabricSpec } from './fleet-fabric.js';
import { createControlClient, type ControlClient } from '../src/common/client.js';
import { createLogger } from '../src/common/logger.js';
import { ChangeCause } from '../src/gen/prfleet/v1/events.js';
import { FleetServiceDefinition, type FleetServiceClient } from '../src/gen/prfleet/v1/fleet.js';
import { defaultServerConfig } from '../src/server/config.js';
import { createPrfleetServer, type PrfleetServer } from '../src/server/server.js';
import { openStore } from '../src/server/store/index.js';
import { WEBHOOK_DEFAULTS } from '../src/server/webhooks/index.js';
import { formatMs, processCpuMs, summarize } from './stats.js';

const log = createLogger({ level: 'silent', name: 'bench-events' });
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);

async function agentsMain(address: string, fabricFile: string): Promise<void> {
  const fleet = await startEmulatedFleet({
    address,
    fabric: fabricFile,
    log,
    agentOptions: { heartbeatMs: 60_000, pathConcurrency: 8 },
  });
  process.send?.({ ready: fleet.agents.length });
  process.on('message', (m: unknown) => {
    if (m === 'stop') void fleet.stop().then(() => process.exit(0));
  });
}

/** When each tagged PROUT was sent, and what its event's arrivals took. */
interface Latencies {
  readonly sentAt: Map<string, number>;
  readonly watcherMs: number[];
  readonly receiverMs: number[];
}

/** The tag of a PROUT event of this bench (its idempotency key), or undefined. */
function tagOf(event: {
  detail?: { $case: string; value: unknown } | undefined;
}): string | undefined {
  if (event.detail?.$case !== 'prout') return undefined;
  const key = (event.detail.value as { idempotencyKey: string }).idempotencyKey;
  return key.startsWith('bench-') ? key : undefined;
}

/** W Watch streams over ten channels; each arrival of a tagged PROUT event is timed. */
function startWatchers(
  address: string,
  count: number,
  lat: Latencies,
): { stop(): void; events(): number } {
  const ac = new AbortController();
  setMaxListeners(count + 10, ac.signal); // one listener per Watch call
  const channels: Channel[] = Array.from({ length: Math.min(10, count) }, () =>
    createChannel(address),
  );
  let events = 0;
  for (let i = 0; i < count; i++) {
    const client = createClient(FleetServiceDefinition, channels[i % channels.length]!);
    void (async () => {
      try {
        for await (const m of client.watch({}, { signal: ac.signal })) {
          if (m.message?.$case !== 'event') continue;
          events += 1;
          const tag = tagOf(m.message.value);
          const sent = tag === undefined ? undefined : lat.sentAt.get(tag);
          if (sent !== undefined) lat.watcherMs.push(performance.now() - sent);
        }
      } catch (error) {
        if (!ac.signal.aborted) console.error(`watcher ${i} ended: ${(error as Error).message}`);
      }
    })();
  }
  return {
    stop: () => {
      ac.abort();
      for (const c of channels) c.close();
    },
    events: () => events,
  };
}

/** R receivers answering 204, each timing tagged PROUT events. */
async function startReceivers(
  count: number,
  lat: Latencies,
): Promise<{ urls: string[]; servers: HttpServer[]; got(): number }> {
  const servers: HttpServer[] = [];
  let got = 0;
  for (let i = 0; i < count; i++) {
    const server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got += 1;
        const event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          prout?: { idempotencyKey?: string };
        };
        const tag = event.prout?.idempotencyKey;
        const sent = tag === undefined ? undefined : lat.sentAt.get(tag);
        if (sent !== undefined) lat.receiverMs.push(performance.now() - sent);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
  }
  return {
    urls: servers.map((s) => `http://127.0.0.1:${(s.address() as AddressInfo).port}/hook`),
    servers,
    got: () => got,
  };
}

/** PROUTs at `rate`/s on the hosts' drives (register a key, then remove it) until stopped; each tagged. */
function startChanges(
  control: ControlClient,
  hosts: number,
  rate: number,
  lat: Latencies,
): () => Promise<number> {
  let stopped = false;
  let sent = 0;
  const run = (async () => {
    while (!stopped) {
      const h = sent % hosts;
      const key = BigInt(0x1000 + Math.floor(sent / hosts));
      const tag = `bench-${sent}`;
      const target = { agentId: `host-${h}`, path: '/dev/sg1' }; // loader 0's drive
      const registered = Math.floor(sent / hosts) % 2 === 1;
      lat.sentAt.set(tag, performance.now());
      await control
        .register({
          target,
          key: registered ? key - 1n : 0n,
          newKey: registered ? 0n : key,
          options: { idempotencyKey: tag },
        })
        .catch((error: unknown) => console.error(`PROUT ${tag}: ${(error as Error).message}`));
      sent += 1;
      await new Promise((r) => setTimeout(r, 1000 / rate));
    }
  })();
  return async () => {
    stopped = true;
    await run;
    return sent;
  };
}

/** One audit of every LU: wall ms and this process's CPU ms. */
async function audit(
  fleet: FleetServiceClient,
): Promise<{ ms: number; cpuMs: number; reports: number }> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  let reports = 0;
  for await (const e of fleet.audit({ maxConcurrency: 256, maxPerAgent: 8, batchReports: true })) {
    if (e.event?.$case === 'reports') reports += e.event.value.reports.length;
    if (e.event?.$case === 'report') reports += 1;
  }
  const used = process.cpuUsage(cpu);
  return { ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000, reports };
}

/** One observation round over every LU, `concurrency` at a time: wall ms, CPU ms here and in the agents. */
async function observationRound(
  server: PrfleetServer,
  luIds: readonly string[],
  concurrency: number,
  agentsPid: number,
): Promise<{ ms: number; cpuMs: number; agentsCpuMs: number; events: number }> {
  const cpu = process.cpuUsage();
  const agentsBefore = processCpuMs(agentsPid);
  const started = performance.now();
  let next = 0;
  let events = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < luIds.length) {
        const luId = luIds[next++]!;
        events += (
          await server.events.observer.observe(
            luId,
            ChangeCause.CHANGE_CAUSE_OBSERVATION,
            'observation',
          )
        ).length;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return {
    ms: performance.now() - started,
    cpuMs: (used.user + used.system) / 1000,
    agentsCpuMs: processCpuMs(agentsPid) - agentsBefore,
    events,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startServer(): Promise<{
  server: PrfleetServer;
  address: string;
  close(): Promise<void>;
}> {
  const databaseUrl = process.env['PRFLEET_BENCH_DATABASE_URL'];
  const schema = `prfleet_bench_events_${process.pid}`;
  const store = await openStore(
    databaseUrl === undefined ? { inMemory: true } : { databaseUrl, schema },
  );
  const base = defaultServerConfig();
  const server = await createPrfleetServer({
    log,
    store,
    config: {
      ...base,
      instanceId: 'bench-events',
      shutdownTimeoutMs: 2_000,
      // Rounds an hour apart: the observation runs only when pokes (PROUTs) or this bench ask for it.
      events: { ...base.events, pollMs: 50, observeIntervalMs: 3_600_000, maxLag: 1_000_000 },
      webhooks: { ...WEBHOOK_DEFAULTS, allowHttp: true, scanMs: 500 },
      // Every watcher of the bench is one principal (no tokens): the per-caller Watch quota would end most of them.
      principalLimits: { ...base.principalLimits, maxWatches: 0 },
    },
  });
  const port = await server.listen('127.0.0.1:0');
  return {
    server,
    address: `127.0.0.1:${port}`,
    async close() {
      await server.drain(0);
      await server.shutdown(2_000);
      if (databaseUrl !== undefined) await store.db.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await store.close();
    },
  };
}

async function startAgents(
  address: string,
  server: PrfleetServer,
  hosts: number,
  lusPerHost: number,
) {
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-bench-events-'));
  const fabricFile = join(dir, 'fabric.json');
  writeFileSync(fabricFile, JSON.stringify(fabricSpec(hosts, lusPerHost)));
  const child = fork(fileURLToPath(import.meta.url), ['--agents', address, fabricFile], {
    stdio: 'inherit',
  });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`agents exited with ${code}`)));
  });
  while (
    server.agents.list().filter((a) => a.session !== undefined && a.paths.length > 0).length < hosts
  )
    await sleep(50);
  return child;
}

const line = (label: string, a: { ms: number; cpuMs: number; reports: number; audits: number }) =>
  `${label.padEnd(42)} median audit wall ${a.ms.toFixed(0)} ms of ${a.audits} audits, ${a.reports} LU reports, CPU here ${a.cpuMs.toFixed(0)} ms`;

/** What the audit phases share. */
interface Bench {
  readonly hosts: number;
  readonly rate: number;
  readonly fleet: FleetServiceClient;
  readonly control: ControlClient;
  readonly lat: Latencies;
}

/** At least PRFLEET_BENCH_AUDITS audits, for at least PRFLEET_BENCH_PHASE_MS, while PROUTs flow: the median. */
async function phase(b: Bench) {
  const audits = env('PRFLEET_BENCH_AUDITS', 3);
  const phaseMs = env('PRFLEET_BENCH_PHASE_MS', 10_000);
  const stop = startChanges(b.control, b.hosts, b.rate, b.lat);
  const runs: Awaited<ReturnType<typeof audit>>[] = [];
  const started = performance.now();
  while (runs.length < audits || performance.now() - started < phaseMs)
    runs.push(await audit(b.fleet));
  const sent = await stop();
  runs.sort((x, y) => x.ms - y.ms);
  return { ...runs[Math.floor(runs.length / 2)]!, sent, audits: runs.length };
}

/** Phases 1–3: the audit without, with and again without watchers and webhooks; the events' latency. */
async function auditPhases(b: Bench, address: string, out: string[]): Promise<void> {
  const watchers = env('PRFLEET_BENCH_WATCHERS', 100);
  const receivers = env('PRFLEET_BENCH_RECEIVERS', 10);
  await audit(b.fleet); // warm-up
  const without = await phase(b);
  out.push(line('audit, PROUTs, no watchers:', without));

  const hooks = await startReceivers(receivers, b.lat);
  for (const url of hooks.urls)
    await b.fleet.addWebhook({ url, secret: 'bench-secret-0123456789abcdef' });
  const watching = startWatchers(address, watchers, b.lat);
  await sleep(1_000); // streams open, webhooks leased
  b.lat.watcherMs.length = 0;
  b.lat.receiverMs.length = 0;
  const tagged = b.lat.sentAt.size;
  const withThem = await phase(b);
  const changes = b.lat.sentAt.size - tagged;
  await sleep(2_000); // the last events reach everyone
  out.push(line(`audit, PROUTs, ${watchers} watchers + ${receivers} webhooks:`, withThem));
  watching.stop();
  for (const w of (await b.fleet.listWebhooks({})).webhooks)
    await b.fleet.removeWebhook({ id: w.id });
  for (const s of hooks.servers) s.close();
  const again = await phase(b);
  out.push(line('audit again, no watchers (drift):', again));

  const w = summarize(b.lat.watcherMs);
  const r = summarize(b.lat.receiverMs);
  out.push(
    `${changes} PROUTs at ${b.rate}/s during the audits; ${watching.events()} events to watchers, ${hooks.got()} webhook deliveries`,
    `PROUT sent → its event at a watcher:  p50 ${formatMs(w.p50)}, p99 ${formatMs(w.p99)}, max ${formatMs(w.max)} (${w.n} arrivals, expected ${changes * watchers})`,
    `PROUT sent → its event at a receiver: p50 ${formatMs(r.p50)}, p99 ${formatMs(r.p99)}, max ${formatMs(r.max)} (${r.n} deliveries, expected ${changes * receivers})`,
    `audit wall with / without: ${(withThem.ms / without.ms).toFixed(2)}× (again without: ${(again.ms / without.ms).toFixed(2)}×)`,
  );
}

/** Phase 4: two observation rounds over every LU. */
async function observationPhase(server: PrfleetServer, agentsPid: number, out: string[]) {
  const luIds = [
    ...new Set(server.agents.list().flatMap((a) => a.paths.map((p) => p.luId))),
  ].sort();
  const concurrency = env('PRFLEET_OBSERVE_CONCURRENCY', 8);
  for (const label of ['first (records every LU)', 'steady (nothing changed)']) {
    const o = await observationRound(server, luIds, concurrency, agentsPid);
    out.push(
      `observation round, ${label}: ${luIds.length} LUs, ${concurrency} at a time: wall ${o.ms.toFixed(0)} ms; ` +
        `CPU server ${((1000 * o.cpuMs) / luIds.length).toFixed(0)} µs/LU, agents ${((1000 * o.agentsCpuMs) / luIds.length).toFixed(0)} µs/LU; ${o.events} events`,
    );
  }
}

async function main(): Promise<void> {
  const hosts = env('PRFLEET_BENCH_HOSTS', 1000);
  const lusPerHost = env('PRFLEET_BENCH_LUS_PER_HOST', 10);
  const started = await startServer();
  const child = await startAgents(started.address, started.server, hosts, lusPerHost);
  const bench: Bench = {
    hosts,
    rate: env('PRFLEET_BENCH_CHANGE_RATE', 20),
    fleet: createClient(FleetServiceDefinition, createChannel(started.address)),
    control: createControlClient(started.address),
    lat: { sentAt: new Map(), watcherMs: [], receiverMs: [] },
  };
  const out: string[] = [];
  await auditPhases(bench, started.address, out);
  await observationPhase(started.server, child.pid ?? -1, out);
  const load = loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  const store =
    process.env['PRFLEET_BENCH_DATABASE_URL'] === undefined ? 'PGlite (memory)' : 'PostgreSQL';
  console.log(
    `events bench: ${hosts} agents, ${hosts * Math.max(1, Math.floor(lusPerHost / 2)) * 2} LUs, ${availableParallelism()} CPUs, load ${load}, store ${store}`,
  );
  for (const o of out) console.log(o);
  bench.control.close();
  child.send('stop');
  await new Promise((resolve) => child.once('exit', resolve));
  await started.close();
  process.exit(0);
}

if (process.argv[2] === '--agents') await agentsMain(process.argv[3]!, process.argv[4]!);
else await main();
