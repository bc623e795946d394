/**
 * `make bench`: READ KEYS latency through prfleet against the floor of its stack, in one bounded run (< ~60 s).
 *
 *  (1) prfleet unary READ KEYS: client → prfleet-server → prfleet-sim agent (bidi stream) → emulator and back;
 *  (2) a bare nice-grpc relay with the same topology and message sizes and no prfleet logic (bench/relay.ts);
 *  (3) spawning `sg_persist` once (what a script pays before any SCSI happens);
 *  (4) prfleet CommandSession: many READ KEYS on one open stream, one in flight at a time;
 *  (5) the bare relay with the client streaming its requests on one open call: the floor of (4);
 *  (2p), (5p) the relays of (2) and (5) carrying prfleet's real protobuf messages (bench/relay-proto.ts): the
 *      floor with the decoding and encoding no prfleet code can avoid (printed for information; the targets
 *      stay against (2) and (5)).
 *
 * Everything runs on 127.0.0.1 as three processes per stack (client here, server, agent), one call in flight, on
 * warm channels; (1), (2), (4) and (5) are interleaved in rounds so background load hits them alike. Targets: prfleet
 * unary ≤ 1.15× the relay and CommandSession ≤ 1.2× the streaming relay (p50), prfleet's server+agent CPU per
 * call at most 80 µs over the relay's (both), ≤ 0.15× an sg_persist spawn, session p50 ≤ 0.3 ms. Misses are
 * reported, not hidden.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { createChannel, createClient } from 'nice-grpc';
import { Command, ConnectRequest, ConnectResponse } from '../src/gen/prfleet/v1/agent.js';
import {
  ControlServiceDefinition,
  ReadKeysRequest,
  ReadKeysResponse,
  CommandSessionRequest,
  type CommandSessionResponse,
  type Target,
} from '../src/gen/prfleet/v1/control.js';
import { Outcome, PrinAction, type CommandResult } from '../src/gen/prfleet/v1/scsi.js';
import {
  repoRoot,
  spawnNode,
  startServerProcess,
  startSimProcess,
  type ChildHandle,
} from '../src/demo/processes.js';
import { createRelayClient, openRelaySession, type RelaySizes } from './relay.js';
import { createProtoRelayClient, encodeSample, openProtoRelaySession } from './relay-proto.js';
import { formatMs, processCpuMs, summarize, type LatencySummary } from './stats.js';

/**
 * Calls before measuring, per path (JIT, channel and HTTP/2 window warm-up), and the time they may take. A
 * server runs for days: the figure that matters is the steady state, and V8 needs a few thousand calls before
 * the whole call path runs optimized (with 300 warm-up calls the first rounds measured ~2× the later ones).
 */
const WARMUP_CALLS = 3000;
const WARMUP_BUDGET_MS = 15_000;
/** Measurement rounds; each round runs (1), (2), (4), (5), (2p) and (5p) back to back. */
const ROUNDS = 5;
/** Calls per measurement per round, and the time one measurement may take (whichever ends first). */
const CALLS_PER_ROUND = 2000;
const ROUND_BUDGET_MS = 4_000;
/** sg_persist spawns measured. */
const SPAWNS = 20;
/**
 * Hard limit for the whole run, past which every child is killed and the bench exits 1. Measurement itself is
 * bounded by the warm-up and round budgets (~140 s at most, ~60 s on an idle machine); the rest is headroom for
 * starting the processes on a loaded machine.
 */
const HARD_LIMIT_MS = 240_000;

/** Targets: unary p50 and CommandSession p50 over their relays, and prfleet's own CPU per call (ms) over the relay's. */
const TARGET_RELAY_RATIO = 1.15;
const TARGET_SESSION_RELAY_RATIO = 1.2;
const TARGET_OWN_CPU_MS = 0.08;
const TARGET_SPAWN_RATIO = 0.15;
const TARGET_SESSION_P50_MS = 0.3;

type ControlClient = ReturnType<typeof createClient<typeof ControlServiceDefinition>>;

/** A sample of latencies plus the CPU the server and agent processes spent meanwhile. */
interface Measured {
  samples: number[];
  stackCpuMs: number;
  clientCpuMs: number;
}

function emptyMeasured(): Measured {
  return { samples: [], stackCpuMs: 0, clientCpuMs: 0 };
}

/**
 * Runs up to `calls` sequential calls of `call`, for at most `budgetMs` (so a loaded machine shortens the run
 * instead of stretching it), adding latencies and CPU to `into`.
 */
async function measure(
  into: Measured,
  calls: number,
  budgetMs: number,
  pids: readonly number[],
  call: () => Promise<unknown>,
) {
  const cpuBefore = pids.map(processCpuMs);
  const clientBefore = process.cpuUsage();
  const began = performance.now();
  for (let i = 0; i < calls && performance.now() - began < budgetMs; i++) {
    const start = performance.now();
    await call();
    into.samples.push(performance.now() - start);
  }
  const client = process.cpuUsage(clientBefore);
  into.clientCpuMs += (client.user + client.system) / 1000;
  into.stackCpuMs += pids.reduce(
    (sum, pid, i) => sum + processCpuMs(pid) - (cpuBefore[i] ?? NaN),
    0,
  );
}

/** Picks a READ KEYS target: a tape drive path of a connected agent (any LU path when there is no drive). */
async function pickTarget(control: ControlClient): Promise<Target> {
  const { logicalUnits } = await control.listDevices({});
  const candidates = [...logicalUnits].sort(
    (a, b) => a.peripheralDeviceType - b.peripheralDeviceType,
  );
  for (const lu of candidates) {
    const path = lu.paths.find((p) => p.agentConnected && p.path?.online !== false);
    if (path?.path) return { luId: lu.luId, agentId: path.agentId, path: path.path.path };
  }
  throw new Error('no logical unit with a connected path: is prfleet-sim running?');
}

/** One CommandSession stream with one READ KEYS in flight at a time. */
function openSession(control: ControlClient, request: ReadKeysRequest) {
  const queue: CommandSessionRequest[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  const requests: AsyncIterable<CommandSessionRequest> = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const next = queue.shift();
        if (next) yield next;
        else if (closed) return;
        else await new Promise<void>((r) => (wake = r));
      }
    },
  };
  const waiting = new Map<string, (response: CommandSessionResponse) => void>();
  const controller = new AbortController();
  const reader = (async () => {
    for await (const response of control.commandSession(requests, { signal: controller.signal })) {
      waiting.get(response.requestId)?.(response);
      waiting.delete(response.requestId);
    }
  })().catch(() => undefined);
  let n = 0;
  return {
    async readKeys(): Promise<void> {
      const requestId = String(++n);
      const answered = new Promise<CommandSessionResponse>((r) => waiting.set(requestId, r));
      queue.push({ requestId, command: { $case: 'readKeys', value: request } });
      wake?.();
      const response = await answered;
      if (
        response.reply?.$case !== 'result' ||
        response.reply.value.outcome !== Outcome.OUTCOME_GOOD
      ) {
        throw new Error(
          `session READ KEYS failed: ${JSON.stringify(ReadKeysResponse.toJSON({ result: response.reply?.$case === 'result' ? response.reply.value : undefined }))} ${response.reply?.$case === 'error' ? response.reply.value.message : ''}`,
        );
      }
    },
    async close(): Promise<void> {
      closed = true;
      wake?.();
      controller.abort();
      await reader;
    },
  };
}

/** Times `sg_persist --version` spawned from Node (spawnSync, as a script runner would); undefined when missing. */
function measureSgPersistSpawn():
  { summary: LatencySummary; version: string } | { missing: string } {
  const probe = spawnSync('sg_persist', ['--version'], { encoding: 'utf8' });
  if (probe.error) {
    return {
      missing: `sg_persist not found (${(probe.error as NodeJS.ErrnoException).code ?? probe.error.message}): install the sg3-utils package (apt-get install sg3-utils) to measure (3)`,
    };
  }
  const version = `${probe.stdout}${probe.stderr}`.trim().split('\n')[0] ?? '';
  const samples: number[] = [];
  for (let i = 0; i < SPAWNS; i++) {
    const start = performance.now();
    spawnSync('sg_persist', ['--version'], { stdio: 'ignore' });
    samples.push(performance.now() - start);
  }
  return { summary: summarize(samples), version };
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? 'n/a' : ok ? 'PASS' : 'MISS';
}

type Closers = (() => void | Promise<void>)[];

/** One measured path: how to make one call, whose processes' CPU it costs, and what it measured. */
interface CallPath {
  readonly label: string;
  readonly call: () => Promise<unknown>;
  readonly pids: readonly number[];
  readonly measured: Measured;
}

const callPath = (
  label: string,
  call: () => Promise<unknown>,
  pids: readonly number[],
): CallPath => ({
  label,
  call,
  pids,
  measured: emptyMeasured(),
});

/** prfleet-server (memory store) and prfleet-sim on the demo fabric, a control client and its READ KEYS. */
async function startPrfleet(children: ChildHandle[], closers: Closers) {
  const fabric = resolve(repoRoot(), 'examples/fabric-demo.yaml');
  process.stdout.write(
    'Starting prfleet-server and prfleet-sim (examples/fabric-demo.yaml) on 127.0.0.1 …\n',
  );
  // READ KEYS never touches the store (no idempotency key, no PROUT history): the memory store keeps the
  // embedded PGlite (its start-up, and its memory in the server's heap) out of a latency measurement.
  const server = await startServerProcess({ env: { PRFLEET_STORE: 'memory' } });
  children.push(server.handle);
  const sim = await startSimProcess({ address: server.address, fabric });
  children.push(sim);
  const channel = createChannel(`http://${server.address}`);
  closers.push(() => channel.close());
  const control = createClient(ControlServiceDefinition, channel);
  const target = await pickTarget(control);
  const request = ReadKeysRequest.fromPartial({ target });
  const readKeys = async () => {
    const { result } = await control.readKeys(request);
    if (result?.outcome !== Outcome.OUTCOME_GOOD)
      throw new Error(`READ KEYS outcome ${String(result?.outcome)}`);
    return result;
  };
  const session = openSession(control, request);
  closers.unshift(() => session.close());
  return {
    target,
    request,
    sample: await readKeys(),
    pids: [server.handle.pid, sim.pid],
    readKeys,
    session,
  };
}

/**
 * Message sizes of prfleet's READ KEYS, for the relay: the agent-stream messages are rebuilt from the real result
 * (command ids are UUID-sized, as the server's are).
 */
function messageSizes(target: Target, request: ReadKeysRequest, sample: CommandResult) {
  const sizes: RelaySizes = {
    down: ConnectResponse.encode({
      message: {
        $case: 'command',
        value: Command.fromPartial({
          commandId: randomUUID(),
          path: target.path,
          timeout: { seconds: 60n, nanos: 0 },
          kind: {
            $case: 'prin',
            value: { action: PrinAction.PRIN_ACTION_READ_KEYS, allocationLength: 8192 },
          },
        }),
      },
    }).finish().length,
    up: ConnectRequest.encode({ message: { $case: 'result', value: sample } }).finish().length,
    reply: ReadKeysResponse.encode({ result: sample }).finish().length,
  };
  return {
    sizes,
    requestSize: ReadKeysRequest.encode(request).finish().length,
    sessionRequestSize: CommandSessionRequest.encode({
      requestId: '2000',
      command: { $case: 'readKeys', value: request },
    }).finish().length,
  };
}

/** A relay server and agent child (bench/relay-process.ts `mode`); resolves with the server's address. */
async function startRelayPair(
  children: ChildHandle[],
  mode: 'plain' | 'proto',
  serverArgs: string[],
  agentArgs: string[],
) {
  const relayScript = fileURLToPath(new URL('./relay-process.js', import.meta.url));
  const prefix = mode === 'plain' ? '' : 'proto-';
  const relayServer = spawnNode(relayScript, [`${prefix}server`, ...serverArgs], {
    name: `${prefix}relay-server`,
  });
  children.push(relayServer);
  const listening = await relayServer.waitForLog((e) => e['msg'] === 'listening', 30_000);
  const address = `127.0.0.1:${String(listening['port'])}`;
  const relayAgent = spawnNode(relayScript, [`${prefix}agent`, address, ...agentArgs], {
    name: `${prefix}relay-agent`,
  });
  children.push(relayAgent);
  await relayServer.waitForLog((e) => e['msg'] === 'agent connected', 30_000);
  return { address, pids: [relayServer.pid, relayAgent.pid] };
}

/** The bare relay (opaque bytes of prfleet's sizes), unary and streaming. */
async function startRelay(
  children: ChildHandle[],
  closers: Closers,
  { sizes, requestSize, sessionRequestSize }: ReturnType<typeof messageSizes>,
) {
  const sizeArgs = [String(sizes.down), String(sizes.up), String(sizes.reply)];
  const { address, pids } = await startRelayPair(children, 'plain', sizeArgs, sizeArgs);
  const relay = createRelayClient(address);
  closers.push(() => relay.close());
  const payload = new Uint8Array(requestSize);
  const session = openRelaySession(address, sessionRequestSize);
  closers.unshift(() => session.close());
  return { call: () => relay.client.call(payload), session, pids };
}

/** The relay carrying prfleet's real protobuf messages (bench/relay-proto.ts), unary and streaming. */
async function startProtoRelay(
  children: ChildHandle[],
  closers: Closers,
  sample: CommandResult,
  request: ReadKeysRequest,
) {
  const { address, pids } = await startRelayPair(children, 'proto', [], [encodeSample(sample)]);
  const relay = createProtoRelayClient(address, request);
  closers.push(() => relay.close());
  const session = openProtoRelaySession(address, request);
  closers.unshift(() => session.close());
  return { call: relay.call, session, pids };
}

/** Calls each path in turn until WARMUP_CALLS each or `budgetMs` has passed. */
async function warmUp(paths: readonly CallPath[], budgetMs: number): Promise<void> {
  const began = performance.now();
  for (let i = 0; i < WARMUP_CALLS && performance.now() - began < budgetMs; i++)
    for (const path of paths) await path.call();
}

/** One results row: latency figures and CPU per call of a path. */
function resultRow({ label, measured }: CallPath): string[] {
  const m = summarize(measured.samples);
  const perCall = (cpu: number) => formatMs(cpu / measured.samples.length);
  return [
    label,
    String(m.n),
    formatMs(m.p50),
    formatMs(m.p99),
    formatMs(m.mean),
    perCall(measured.stackCpuMs),
    perCall(measured.clientCpuMs),
  ];
}

function spawnRow(spawn: ReturnType<typeof measureSgPersistSpawn>): string[] {
  return 'summary' in spawn
    ? [
        '(3) sg_persist --version spawn',
        String(spawn.summary.n),
        formatMs(spawn.summary.p50),
        formatMs(spawn.summary.p99),
        formatMs(spawn.summary.mean),
        '',
        '',
      ]
    : ['(3) sg_persist spawn', '0', 'n/a', 'n/a', 'n/a', '', ''];
}

interface Measurements {
  prfleet: CallPath;
  bare: CallPath;
  streamed: CallPath;
  bareStreamed: CallPath;
  protoBare: CallPath;
  protoStreamed: CallPath;
}

/** The issue's targets with their verdicts, and the protobuf relays' figures for information. */
function targetsTable(
  m: Measurements,
  spawn: ReturnType<typeof measureSgPersistSpawn>,
): Table.Table {
  const p50 = (path: CallPath) => summarize(path.measured.samples).p50;
  const p99 = (path: CallPath) => summarize(path.measured.samples).p99;
  const cpu = (path: CallPath) => path.measured.stackCpuMs / path.measured.samples.length;
  const relayRatio = p50(m.prfleet) / p50(m.bare);
  const sessionRatio = p50(m.streamed) / p50(m.bareStreamed);
  const ownUnaryCpu = cpu(m.prfleet) - cpu(m.bare);
  const ownSessionCpu = cpu(m.streamed) - cpu(m.bareStreamed);
  const spawnRatio = 'summary' in spawn ? p50(m.prfleet) / spawn.summary.p50 : undefined;
  const ratio = (x: number, digits = 2) => `${x.toFixed(digits)}×`;
  const info = (what: string, value: string) => [`${what} (info)`, value, '', ''];
  const targets = new Table({
    head: ['ratio / figure', 'measured', 'target', ''],
    style: { head: [], border: [] },
  });
  targets.push(
    [
      'prfleet unary p50 / bare relay p50',
      ratio(relayRatio),
      `≤ ${TARGET_RELAY_RATIO}×`,
      verdict(relayRatio <= TARGET_RELAY_RATIO),
    ],
    info('prfleet unary p99 / bare relay p99', ratio(p99(m.prfleet) / p99(m.bare))),
    [
      'prfleet unary p50 / sg_persist spawn p50',
      spawnRatio === undefined ? 'n/a' : ratio(spawnRatio, 3),
      `≤ ${TARGET_SPAWN_RATIO}×`,
      verdict(spawnRatio === undefined ? undefined : spawnRatio <= TARGET_SPAWN_RATIO),
    ],
    [
      'CommandSession p50',
      formatMs(p50(m.streamed)),
      `≤ ${formatMs(TARGET_SESSION_P50_MS)}`,
      verdict(p50(m.streamed) <= TARGET_SESSION_P50_MS),
    ],
    [
      'CommandSession p50 / streaming relay p50',
      ratio(sessionRatio),
      `≤ ${TARGET_SESSION_RELAY_RATIO}×`,
      verdict(sessionRatio <= TARGET_SESSION_RELAY_RATIO),
    ],
    [
      'unary: prfleet server+agent CPU/call − relay',
      formatMs(ownUnaryCpu),
      `≤ ${formatMs(TARGET_OWN_CPU_MS)}`,
      verdict(Number.isNaN(ownUnaryCpu) ? undefined : ownUnaryCpu <= TARGET_OWN_CPU_MS),
    ],
    [
      'session: prfleet server+agent CPU/call − streaming relay',
      formatMs(ownSessionCpu),
      `≤ ${formatMs(TARGET_OWN_CPU_MS)}`,
      verdict(Number.isNaN(ownSessionCpu) ? undefined : ownSessionCpu <= TARGET_OWN_CPU_MS),
    ],
    info('CommandSession p50 / unary p50', ratio(p50(m.streamed) / p50(m.prfleet))),
    info('prfleet unary p50 / protobuf relay (2p) p50', ratio(p50(m.prfleet) / p50(m.protoBare))),
    info(
      'CommandSession p50 / protobuf streaming relay (5p) p50',
      ratio(p50(m.streamed) / p50(m.protoStreamed)),
    ),
    info(
      'unary: protobuf relay (2p) CPU/call − relay (2)',
      formatMs(cpu(m.protoBare) - cpu(m.bare)),
    ),
    info(
      'unary: prfleet CPU/call − protobuf relay (2p)',
      formatMs(cpu(m.prfleet) - cpu(m.protoBare)),
    ),
    info(
      'session: protobuf relay (5p) CPU/call − relay (5)',
      formatMs(cpu(m.protoStreamed) - cpu(m.bareStreamed)),
    ),
    info(
      'session: prfleet CPU/call − protobuf relay (5p)',
      formatMs(cpu(m.streamed) - cpu(m.protoStreamed)),
    ),
  );
  return targets;
}

/** Starts the three stacks, warms them up, measures the six paths in interleaved rounds. */
async function run(children: ChildHandle[], closers: Closers) {
  const prfleet = await startPrfleet(children, closers);
  const sizes = messageSizes(prfleet.target, prfleet.request, prfleet.sample);
  const relay = await startRelay(children, closers, sizes);
  const protoRelay = await startProtoRelay(children, closers, prfleet.sample, prfleet.request);
  const m: Measurements = {
    prfleet: callPath('(1) prfleet unary READ KEYS', prfleet.readKeys, prfleet.pids),
    bare: callPath('(2) bare nice-grpc relay', relay.call, relay.pids),
    streamed: callPath(
      '(4) prfleet CommandSession READ KEYS',
      () => prfleet.session.readKeys(),
      prfleet.pids,
    ),
    bareStreamed: callPath(
      '(5) bare relay, client streaming',
      () => relay.session.call(),
      relay.pids,
    ),
    protoBare: callPath('(2p) relay (2) with prfleet protobuf', protoRelay.call, protoRelay.pids),
    protoStreamed: callPath(
      '(5p) relay (5) with prfleet protobuf',
      () => protoRelay.session.call(),
      protoRelay.pids,
    ),
  };
  const { target } = prfleet;
  process.stdout.write(
    `Target ${target.agentId}:${target.path} (${target.luId}); warming up (up to ${WARMUP_CALLS} calls each) …\n`,
  );
  await warmUp([m.prfleet, m.bare, m.streamed, m.bareStreamed], WARMUP_BUDGET_MS);
  // The protobuf relay warms up on its own budget: the four paths above keep the warm-up they always had.
  await warmUp([m.protoBare, m.protoStreamed], WARMUP_BUDGET_MS / 2);
  const order = [m.prfleet, m.bare, m.streamed, m.bareStreamed, m.protoBare, m.protoStreamed];
  for (let round = 1; round <= ROUNDS; round++) {
    process.stdout.write(
      `Round ${round}/${ROUNDS}: up to ${CALLS_PER_ROUND} calls or ${ROUND_BUDGET_MS / 1000} s each …\n`,
    );
    for (const path of order)
      await measure(path.measured, CALLS_PER_ROUND, ROUND_BUDGET_MS, path.pids, path.call);
  }
  return { m, sizes };
}

async function main(): Promise<number> {
  const children: ChildHandle[] = [];
  const hardStop = setTimeout(() => {
    process.stderr.write(
      `bench: hard limit of ${HARD_LIMIT_MS / 1000} s reached; stopping everything\n`,
    );
    for (const child of children) child.signal('SIGKILL');
    process.exit(1);
  }, HARD_LIMIT_MS);
  const closers: Closers = [];
  try {
    const began = performance.now();
    const { m, sizes } = await run(children, closers);
    const spawn = measureSgPersistSpawn();
    const results = new Table({
      head: ['measurement', 'n', 'p50', 'p99', 'mean', 'server+agent CPU/call', 'client CPU/call'],
      style: { head: [], border: [] },
    });
    results.push(
      resultRow(m.prfleet),
      resultRow(m.bare),
      spawnRow(spawn),
      resultRow(m.streamed),
      resultRow(m.bareStreamed),
      resultRow(m.protoBare),
      resultRow(m.protoStreamed),
    );
    const { down, up, reply } = sizes.sizes;
    process.stdout.write(
      [
        '',
        `prfleet bench: READ KEYS, one call in flight, warm channels, 127.0.0.1, ${ROUNDS} interleaved rounds`,
        `machine: ${availableParallelism()} CPUs, load average ${loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')} (1/5/15 min): other load distorts every figure`,
        `message sizes (bytes): request ${sizes.requestSize}, server→agent ${down}, agent→server ${up}, reply ${reply}`,
        results.toString(),
        'summary' in spawn
          ? `(3) ${spawn.version}, spawnSync from Node, ${SPAWNS} runs`
          : `(3) ${spawn.missing}`,
        targetsTable(m, spawn).toString(),
        'CPU/call: user+system time of the server and agent processes (from /proc) and of this client, per call.',
        `Total bench time ${((performance.now() - began) / 1000).toFixed(1)} s.`,
        '',
      ].join('\n'),
    );
    return 0;
  } finally {
    for (const close of closers) await Promise.resolve(close()).catch(() => undefined);
    await Promise.all(children.map((child) => child.stop({ graceMs: 5000 })));
    clearTimeout(hardStop);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `bench failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
