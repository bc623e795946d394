/**
 * `node dist/bench/lio.js` (make bench-lio): READ KEYS on a real LIO LU inside the test VM (QEMU TCG, SG_IO on
 * /dev/sg0), four ways, in one VM boot:
 *
 *  (1) `sg_persist -n --in --read-keys /dev/sg0`: one process per command (what a shell script pays);
 *  (2) the prfleet CLI (`node dist/src/cli/main.js keys vm:/dev/sg0`): one process per command, through the
 *      server and the agent;
 *  (3) a long-lived gRPC client: ControlService.ReadKeys → prfleet server → sgio agent (bidi stream) → SG_IO;
 *  (4) the floor: SG_IO from Node directly (agent/transport/sgio.ts), no gRPC.
 *
 * Server, agent and client run in one guest process on 127.0.0.1 (the guest has no network); the CLI and
 * sg_persist are spawned from it. Times are guest wall clock under TCG (5–10× slower than native), so the ratios
 * matter more than the absolute numbers. Needs root and qemu (the host side installs the rest with apt-get);
 * run after `make build`. Options: --calls N (gRPC and SG_IO calls, default 100), --spawns N (per spawned
 * method, default 5; a CLI process takes 10–20 s to start in the guest).
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { createAgent } from '../agent/agent.js';
import { createSgioSource } from '../agent/sources.js';
import { createSgioTransport } from '../agent/transport/sgio.js';
import { createControlClient } from '../src/common/client.js';
import { createLogger } from '../src/common/logger.js';
import { Outcome } from '../src/gen/prfleet/v1/scsi.js';
import { encodePrin } from '../src/scsi/index.js';
import { defaultServerConfig } from '../src/server/config.js';
import { createPrfleetServer } from '../src/server/server.js';
import { prepareVm, projectRoot, runInVm, vmUnavailableReason } from '../test/scsi-vm/launch.js';
import { formatMs, summarize, type LatencySummary } from './stats.js';

const run = promisify(execFile);
/** Marker of the bench's result lines on the VM console. */
const PREFIX = 'PRFLEET-LIO-BENCH ';

interface MethodResult {
  method: string;
  summary: LatencySummary;
}

async function time(n: number, once: () => Promise<void>): Promise<LatencySummary> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await once();
    samples.push(performance.now() - started);
  }
  return summarize(samples);
}

/** Guest side: measures the four methods on `device` and prints one line per method. */
async function guest(device: string, calls: number, spawns: number): Promise<void> {
  const print = (r: MethodResult): void => {
    process.stdout.write(`${PREFIX}${JSON.stringify(r)}\n`);
  };
  const log = createLogger({ level: 'silent', name: 'bench-lio' });
  const root = projectRoot();

  // (1) sg_persist, one process per command.
  await run('sg_persist', ['-n', '--in', '--read-keys', device]); // warm the page cache
  print({
    method: 'sg_persist process per command',
    summary: await time(spawns, async () => {
      await run('sg_persist', ['-n', '--in', '--read-keys', device]);
    }),
  });

  // (4) the SG_IO floor.
  const transport = createSgioTransport();
  const sg = await transport.open(device);
  const request = { cdb: encodePrin(0, 4096), dataInLength: 4096, timeoutMs: 20_000 };
  for (let i = 0; i < 20; i++) await sg.execute(request);
  const floor = await time(calls, async () => {
    const r = await sg.execute(request);
    if (r.status !== 0) throw new Error(`SG_IO READ KEYS: status ${r.status}`);
  });
  await sg.close();

  // (2) and (3): server + sgio agent in this process.
  const server = await createPrfleetServer({
    log,
    config: { ...defaultServerConfig(), instanceId: 'bench-lio' },
  });
  const port = await server.listen('127.0.0.1:0');
  const address = `127.0.0.1:${port}`;
  const agent = createAgent(
    { server: address, agentId: 'vm', plaintext: true, allow: [device], drainMs: 2000 },
    { log, source: await createSgioSource({ includeDisks: true }) },
  );
  await agent.start();
  await agent.waitForState('connected', AbortSignal.timeout(30_000));
  const client = createControlClient(address);
  const target = { luId: '', agentId: 'vm', path: device };
  const readKeys = async (): Promise<void> => {
    const { result } = await client.readKeys({
      target,
      options: { commandTimeout: { seconds: 20, nanos: 0 } },
    });
    if (result?.outcome !== Outcome.OUTCOME_GOOD)
      throw new Error(`ReadKeys: outcome ${String(result?.outcome)} ${result?.message ?? ''}`);
  };
  // The inventory arrives just after the session opens; wait until the path is known.
  for (let i = 0; ; i++) {
    try {
      await readKeys();
      break;
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const cli = join(root, 'dist', 'src', 'cli', 'main.js');
  await run(process.execPath, [cli, '-s', address, '--plaintext', 'keys', `vm:${device}`]);
  print({
    method: 'prfleet CLI process per command',
    summary: await time(spawns, async () => {
      await run(process.execPath, [
        cli,
        '-s',
        address,
        '--plaintext',
        '-o',
        'json',
        'keys',
        `vm:${device}`,
      ]);
    }),
  });
  for (let i = 0; i < 20; i++) await readKeys();
  print({ method: 'gRPC client → server → agent → SG_IO', summary: await time(calls, readKeys) });
  print({ method: 'SG_IO from Node (floor)', summary: floor });

  client.close();
  await agent.stop();
  await server.shutdown(2000);
}

/** Host side: boots the VM once with the guest side and prints the table. */
async function host(calls: number, spawns: number): Promise<number> {
  const unavailable = vmUnavailableReason();
  if (unavailable !== undefined) {
    process.stderr.write(`bench-lio: cannot run the LIO VM here: ${unavailable}\n`);
    return 1;
  }
  await prepareVm();
  const loadBefore = loadavg()[0]?.toFixed(1) ?? '?';
  const outDir = await mkdtemp(join(tmpdir(), 'prfleet-bench-lio-'));
  const vm = await runInVm({
    outDir,
    // The guest runs the host's own runtime (the pinned Node under node_modules), not the chroot PATH's node.
    script: `exec '${process.execPath}' dist/bench/lio.js --guest --calls ${calls} --spawns ${spawns} "$(echo "$SG_DEVS" | cut -d' ' -f1)"`,
    timeoutMs: 900_000,
  });
  const results: MethodResult[] = vm.output
    .split('\n')
    .filter((l) => l.includes(PREFIX))
    .map((l) => JSON.parse(l.slice(l.indexOf(PREFIX) + PREFIX.length)) as MethodResult);
  if (results.length !== 4) {
    process.stderr.write(
      `bench-lio: expected 4 result lines, got ${results.length} (rc ${vm.rc}); console tail:\n${vm.output.slice(-3000)}\n`,
    );
    return 1;
  }
  const grpc = results.find((r) => r.method.startsWith('gRPC'))?.summary;
  console.log(
    `READ KEYS on LIO in the test VM (TCG, guest wall clock), VM boot + run ${(vm.wallMs / 1000).toFixed(1)} s, ` +
      `host load average ${loadBefore} → ${loadavg()[0]?.toFixed(1) ?? '?'} on ${availableParallelism()} CPUs`,
  );
  console.log(
    `${'method'.padEnd(40)} ${'n'.padStart(4)} ${'p50'.padStart(10)} ${'mean'.padStart(10)} ${'p99'.padStart(10)}  p50 vs gRPC`,
  );
  for (const r of results) {
    const ratio = grpc ? `${(r.summary.p50 / grpc.p50).toFixed(2)}×` : '';
    console.log(
      `${r.method.padEnd(40)} ${String(r.summary.n).padStart(4)} ${formatMs(r.summary.p50).padStart(10)} ` +
        `${formatMs(r.summary.mean).padStart(10)} ${formatMs(r.summary.p99).padStart(10)}  ${ratio}`,
    );
  }
  console.log(`console log: ${join(outDir, 'console.log')}`);
  return 0;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      guest: { type: 'boolean', default: false },
      calls: { type: 'string', default: '100' },
      spawns: { type: 'string', default: '5' },
    },
  });
  const calls = Number(values.calls);
  const spawns = Number(values.spawns);
  if (!Number.isInteger(calls) || calls < 1 || !Number.isInteger(spawns) || spawns < 1) {
    process.stderr.write('bench-lio: --calls and --spawns must be positive integers\n');
    return 1;
  }
  if (values.guest) {
    await guest(positionals[0] ?? '/dev/sg0', calls, spawns);
    return 0;
  }
  return host(calls, spawns);
}

main().then(
  (rc) => process.exit(rc),
  (e: unknown) => {
    process.stderr.write(`bench-lio: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
