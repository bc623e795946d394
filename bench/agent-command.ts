/**
 * `node dist/bench/agent-command.js [calls] [--thrash=MiB]`: the agent's own CPU per READ KEYS, in one process,
 * without transport (issue 15.5's profile aid for the agent side; no targets, figures only).
 *
 * The real agent (createAgent: session, executor with its admission, path queue, watchdog and result building,
 * the emulated transport over host-a of examples/fabric-demo.yaml) behind a stand-in for nice-grpc's stream: each
 * Command arrives as the bytes the server sends (a ConnectResponse, decoded with the agent's own deserializer),
 * and everything the agent writes on the stream is encoded with its own serializer, as grpc-js would. What it
 * leaves out is what `make bench-core` adds: grpc-js, nice-grpc, HTTP/2 and the other processes. The server's
 * side of the same call is bench/command-path.ts.
 *
 * `--thrash=<MiB>`: write that much memory between two calls (its CPU is not counted), so each call starts with
 * cold caches as in bench-core.
 *
 * `--callgrind`: for instruction counts that repeat whatever the machine's load, run it under
 * `valgrind --tool=callgrind --instr-atstart=no node dist/bench/agent-command.js 2000 --callgrind`; the bench
 * turns instrumentation on (callgrind_control -i on) after the warm-up for one round, then off, and prints nothing
 * else: instructions per call = the "Collected" total / calls.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { resolve } from 'node:path';
import pino from 'pino';
import { createAgent } from '../agent/agent.js';
import { createEmulatedFabric, loadFabric } from '../agent/fabric.js';
import { createEmulatedSource } from '../agent/sources.js';
import { AsyncQueue } from '../src/common/async-queue.js';
import { msToDuration } from '../src/common/command.js';
import { directServiceDefinition } from '../src/common/service-definition.js';
import {
  AgentServiceDefinition,
  ConnectResponse,
  type AgentServiceClient,
  type ConnectRequest,
  type DeepPartial,
} from '../src/gen/prfleet/v1/agent.js';
import { Outcome, PrinAction } from '../src/gen/prfleet/v1/scsi.js';
import { repoRoot } from '../src/demo/processes.js';
import { measureInProcess, thrashMiBOf } from './stats.js';

/** Enough calls for V8 to optimize the whole path before the measured rounds. */
const WARMUP_CALLS = 30_000;
const ROUNDS = 5;

/** The agent's stream codec: what nice-grpc calls for each message of AgentService.Connect. */
const connect = directServiceDefinition(AgentServiceDefinition).connect;

/** A running agent behind an in-memory stream, and a way to send it one Command's bytes and await the result. */
async function agentUnderTest() {
  const fabric = createEmulatedFabric(
    await loadFabric(resolve(repoRoot(), 'examples/fabric-demo.yaml')),
  );
  const host = fabric.hosts.find((h) => h.id === 'host-a') ?? fabric.hosts[0];
  if (host === undefined) throw new Error('the demo fabric has no host');
  const path = host.paths[0]?.path ?? '/dev/sg0';
  const toAgent = new AsyncQueue<ConnectResponse>(Infinity);
  let answered: ((bytes: Uint8Array) => void) | undefined;
  let welcomed!: () => void;
  const ready = new Promise<void>((r) => (welcomed = r));
  /** Reads what the agent writes, encoding every message; a result settles the call waiting for it. */
  const readAgent = async (requests: AsyncIterable<DeepPartial<ConnectRequest>>) => {
    for await (const request of requests) {
      const bytes = connect.requestSerialize(request);
      const kind = request.message?.$case;
      if (kind === 'inventory') welcomed();
      if (kind === 'result' || kind === 'results') answered?.(bytes);
    }
  };
  const client: AgentServiceClient = {
    connect(requests) {
      void readAgent(requests);
      toAgent.push(
        ConnectResponse.fromPartial({
          message: {
            $case: 'welcome',
            value: { sessionId: 's', serverInstance: 'bench', acceptsResultBatches: true },
          },
        }),
      );
      return toAgent as AsyncIterable<ConnectResponse>;
    },
  };
  // The agent logs at info, as shipped (a PRIN's "command done" is debug): pino's work per line is counted.
  const log = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }));
  const agent = createAgent(
    { server: 'bench', agentId: host.id, hostname: host.id, heartbeatMs: 60_000 },
    { log, source: createEmulatedSource(host, { closeFabric: fabric }), client },
  );
  await agent.start();
  await ready;
  // Never stopped: the process exits after the rounds (the stand-in stream has no end to drain to).
  // The same Command every time, as the server encodes it: an id is refused only while it is in flight, and
  // encoding it is the server's work, not the agent's.
  const bytes = ConnectResponse.encode(
    ConnectResponse.fromPartial({
      message: {
        $case: 'command',
        value: {
          commandId: '00000000-0000-4000-8000-000000000001',
          path,
          timeout: msToDuration(60_000),
          kind: { $case: 'prin', value: { action: PrinAction.PRIN_ACTION_READ_KEYS } },
        },
      },
    }),
  ).finish();
  return {
    /** Sends one READ KEYS as the server encodes it and resolves with the agent's encoded result. */
    call: (): Promise<Uint8Array> => {
      const result = new Promise<Uint8Array>((r) => (answered = r));
      toAgent.push(connect.responseDeserialize(bytes));
      return result;
    },
  };
}

async function main(): Promise<void> {
  const calls = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 20_000);
  const thrashMiB = thrashMiBOf(process.argv.slice(2));
  const { call } = await agentUnderTest();
  const first = connect.requestDeserialize(await call());
  if (first.message?.$case !== 'result' || first.message.value.outcome !== Outcome.OUTCOME_GOOD)
    throw new Error(`READ KEYS did not answer GOOD: ${JSON.stringify(first.message)}`);
  for (let i = 0; i < WARMUP_CALLS; i++) await call();
  if (process.argv.includes('--callgrind')) {
    const instrument = (on: boolean) =>
      promisify(execFile)('callgrind_control', ['-i', on ? 'on' : 'off', String(process.pid)]);
    await instrument(true);
    for (let i = 0; i < calls; i++) await call();
    await instrument(false);
    process.stdout.write(`agent command path under callgrind: ${calls} calls measured\n`);
    return;
  }
  const { line } = await measureInProcess('agent command path, READ KEYS in process', call, {
    calls,
    rounds: ROUNDS,
    thrashMiB,
  });
  process.stdout.write(`${line}\n`);
}

await main();
process.exit(0);
