/**
 * `make bench-link`: one command's latency over the HTTP/1.1 long-poll agent link against the gRPC stream, in the
 * same run. A real prfleet server (memory store) on one port, two agents of the demo fabric in this process:
 * host-a holds the gRPC stream, host-b the long-poll link (both see loader 1's drive). READ KEYS go to one and
 * then the other, one in flight at a time, interleaved so background load hits both alike; then bursts of
 * `burst` commands at once (the long-poll link carries them in batches).
 *
 * `node dist/bench/long-poll.js [commands] [burst]` (defaults 2000 and 64; small values to check it works).
 */
import { availableParallelism, loadavg } from 'node:os';
import Table from 'cli-table3';
import { startEmulatedFleet } from '../agent/fleet.js';
import { createControlClient } from '../src/common/client.js';
import { createLogger } from '../src/common/logger.js';
import type { Target } from '../src/gen/prfleet/v1/control.js';
import { Outcome } from '../src/gen/prfleet/v1/scsi.js';
import { defaultServerConfig } from '../src/server/config.js';
import { createPrfleetServer } from '../src/server/server.js';
import { formatMs, summarize, type LatencySummary } from './stats.js';

const DEMO_FABRIC = new URL('../../examples/fabric-demo.yaml', import.meta.url).pathname;
const DRIVE = 'naa.5000e11100000002';
const TARGETS = {
  stream: { luId: DRIVE, agentId: 'host-a', path: '/dev/sg2' },
  'long-poll': { luId: DRIVE, agentId: 'host-b', path: '/dev/sg1' },
} as const satisfies Record<string, Target>;
type Link = keyof typeof TARGETS;

const commands = Number(process.argv[2] ?? 2000);
const burst = Number(process.argv[3] ?? 64);
const log = createLogger({ level: 'silent', name: 'bench-link' });

const server = await createPrfleetServer({
  log,
  config: { ...defaultServerConfig(), instanceId: 'bench-link', shutdownTimeoutMs: 2_000 },
});
const port = await server.listen('127.0.0.1:0');
const address = `127.0.0.1:${port}`;
const fleet = await startEmulatedFleet({
  address,
  fabric: DEMO_FABRIC,
  hosts: ['host-a'],
  log,
  agentOptions: { plaintext: true },
});
const polled = await startEmulatedFleet({
  address,
  fabric: fleet.fabric,
  hosts: ['host-b'],
  log,
  agentOptions: { plaintext: true, link: 'long-poll' },
});
const client = createControlClient(address);

async function readKeys(link: Link): Promise<number> {
  const started = performance.now();
  const { result } = await client.readKeys({ target: TARGETS[link] });
  if (result?.outcome !== Outcome.OUTCOME_GOOD)
    throw new Error(`READ KEYS over ${link}: ${result?.outcome}`);
  return performance.now() - started;
}

async function burstOf(link: Link): Promise<number> {
  const started = performance.now();
  await Promise.all(Array.from({ length: burst }, () => readKeys(link)));
  return performance.now() - started;
}

// Warm-up: JIT, keep-alive connections, HTTP/2 windows.
for (let i = 0; i < Math.min(500, commands); i++) {
  await readKeys('stream');
  await readKeys('long-poll');
}
const samples: Record<Link, number[]> = { stream: [], 'long-poll': [] };
const bursts: Record<Link, number[]> = { stream: [], 'long-poll': [] };
for (let i = 0; i < commands; i++) {
  // Alternating which goes first keeps any ordering effect out of the comparison.
  const order: Link[] = i % 2 === 0 ? ['stream', 'long-poll'] : ['long-poll', 'stream'];
  for (const link of order) samples[link].push(await readKeys(link));
}
for (let i = 0; i < Math.max(3, Math.floor(commands / 200)); i++) {
  for (const link of ['stream', 'long-poll'] as const) bursts[link].push(await burstOf(link));
}

const rows: Record<Link, LatencySummary> = {
  stream: summarize(samples.stream),
  'long-poll': summarize(samples['long-poll']),
};
const table = new Table({
  head: ['link', 'n', 'p50', 'p99', 'mean', `burst of ${burst} (median)`],
});
for (const link of ['stream', 'long-poll'] as const) {
  const r = rows[link];
  table.push([
    link,
    String(r.n),
    formatMs(r.p50),
    formatMs(r.p99),
    formatMs(r.mean),
    formatMs(summarize(bursts[link]).p50),
  ]);
}
process.stdout.write(
  `READ KEYS latency, client → server → agent → emulator and back, one in flight (${availableParallelism()} CPUs, load ${loadavg()[0]?.toFixed(2)})\n${table.toString()}\nlong-poll / stream: p50 ${(rows['long-poll'].p50 / rows.stream.p50).toFixed(2)}×, p99 ${(rows['long-poll'].p99 / rows.stream.p99).toFixed(2)}×\n`,
);

client.close();
await polled.stop();
await fleet.stop();
await server.drain(500);
await server.shutdown();
