/**
 * `node dist/bench/command-path.js [calls]`: the server's own CPU per unary READ KEYS, in one process, without
 * transport (issue 15.5's profile aid; no targets, figures only).
 *
 * The real ControlService, edge check, executor, pipeline, router (with the events' result tap), agent session
 * and result checks on the memory store and the default configuration; the server's four protobuf messages are
 * encoded and decoded as grpc-js would (request, Command, the agent's result, reply). The "agent" answers each
 * Command at once with the bytes of a real READ KEYS result, taken from one call to prfleet-server and prfleet-sim
 * started first. What it leaves out is what `make bench-core` adds: grpc-js, nice-grpc and its middlewares, the
 * deadline interceptor, the agent process, and the three processes' cache misses. Its figure repeats within a few
 * per cent where bench-core's CPU per call moves by ±15 % on this machine, so it shows a cut of a few µs.
 *
 * `--thrash=<MiB>`: write that much memory between two calls (its own CPU is not counted), so each call starts
 * with cold caches as in bench-core, where the client, the agent and everything else run between two calls.
 */
import { resolve } from 'node:path';
import pino from 'pino';
import { createChannel, createClient, Metadata, type CallContext } from 'nice-grpc';
import { AgentServiceDefinition, Hello } from '../src/gen/prfleet/v1/agent.js';
import { ControlServiceDefinition, ReadKeysRequest } from '../src/gen/prfleet/v1/control.js';
import { Outcome, type CommandResult, type Path } from '../src/gen/prfleet/v1/scsi.js';
import { systemClock } from '../src/common/clock.js';
import { directServiceDefinition } from '../src/common/service-definition.js';
import { createSessionHandler } from '../src/server/agents/session-handler.js';
import { defaultServerConfig } from '../src/server/config.js';
import { createControlService } from '../src/server/control-service.js';
import {
  agentRequestDeserializer,
  checkRequest,
  edgeDeserializer,
  loadEdgeSchema,
} from '../src/server/edge.js';
import { buildCommandPath } from '../src/server/startup/command-path.js';
import { buildRouting } from '../src/server/startup/routing.js';
import { repoRoot, startServerProcess, startSimProcess } from '../src/demo/processes.js';
import { measureInProcess, thrashMiBOf } from './stats.js';

/** V8 needs tens of thousands of calls before the whole path runs optimized (fewer: the first rounds ~2×). */
const WARMUP_CALLS = 30_000;
const ROUNDS = 5;

/** One READ KEYS as prfleet-server answers it: the request, the agent's result and the path it ran on. */
interface Sample {
  readonly request: ReadKeysRequest;
  readonly result: CommandResult;
  readonly path: Path;
}

/** Asks a real server and emulated agent for one READ KEYS, so the loop below answers with real bytes. */
async function sampleReadKeys(): Promise<Sample> {
  const server = await startServerProcess({ env: { PRFLEET_STORE: 'memory' } });
  try {
    const sim = await startSimProcess({
      address: server.address,
      fabric: resolve(repoRoot(), 'examples/fabric-demo.yaml'),
    });
    try {
      const channel = createChannel(`http://${server.address}`);
      const control = createClient(ControlServiceDefinition, channel);
      for (let tries = 0; tries < 100; tries++) {
        const { logicalUnits } = await control.listDevices({});
        for (const lu of logicalUnits) {
          const found = lu.paths.find((p) => p.agentConnected && p.path?.online === true);
          if (found?.path === undefined) continue;
          const request = ReadKeysRequest.fromPartial({
            target: { luId: lu.luId, agentId: found.agentId, path: found.path.path },
          });
          const { result } = await control.readKeys(request);
          channel.close();
          if (result?.outcome !== Outcome.OUTCOME_GOOD) throw new Error('READ KEYS failed');
          return { request, result, path: found.path };
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no connected path: is prfleet-sim running?');
    } finally {
      await sim.stop();
    }
  } finally {
    await server.handle.stop();
  }
}

/** The server's command path in this process, with an agent session that answers every Command at once. */
function commandPath(sample: Sample) {
  const log = pino({ level: 'silent' });
  const config = { ...defaultServerConfig(), instanceId: 'command-path-bench' };
  const deps = { log, config };
  const routing = buildRouting(deps, undefined, systemClock);
  const path = buildCommandPath(deps, undefined, routing, systemClock);
  const schema = loadEdgeSchema();
  const sessions = createSessionHandler({
    registry: routing.agents,
    router: routing.router,
    instanceId: config.instanceId,
    log,
  });
  const hello = Hello.fromPartial({ agentId: sample.request.target?.agentId ?? '', hostname: 'h' });
  const { session } = sessions.open(hello, { metadata: new Metadata() }, '127.0.0.1', 'stream');
  sessions.handle(
    session,
    { message: { $case: 'inventory', value: { paths: [sample.path] } } },
    undefined,
  );
  const control = createControlService({
    registry: routing.agents,
    router: routing.router,
    executor: path.executor,
    instanceId: config.instanceId,
    sessionConcurrency: 16,
    sessions: new Set(),
    log,
    schema,
  });
  // The server's (de)serializers, as grpc-services.ts registers them (the agent's encoder for its result).
  const readKeys = directServiceDefinition(ControlServiceDefinition, {
    requestDeserializer: edgeDeserializer(schema),
  }).readKeys;
  const connect = directServiceDefinition(AgentServiceDefinition, {
    requestDeserializer: agentRequestDeserializer(schema),
  }).connect;
  const requestBytes = ReadKeysRequest.encode(sample.request).finish();
  const desc = schema.requestOf(readKeys.path);
  /** The agent's side of the stream: each Command encoded, its result's bytes decoded and handled. */
  const answerCommands = () => {
    for (let m = session.outbox.take(); m !== undefined; m = session.outbox.take()) {
      connect.responseSerialize(m);
      if (m.message?.$case !== 'command') continue;
      const result = { ...sample.result, commandId: m.message.value.commandId };
      const up = connect.requestSerialize({ message: { $case: 'result', value: result } });
      sessions.handle(session, connect.requestDeserialize(Buffer.from(up)), undefined);
    }
  };
  return async (): Promise<void> => {
    const request = readKeys.requestDeserialize(requestBytes);
    if (desc !== undefined) checkRequest(desc, request);
    const ctx: CallContext = {
      signal: new AbortController().signal,
      metadata: new Metadata(),
      peer: 'ipv4:127.0.0.1:40000',
      header: new Metadata(),
      trailer: new Metadata(),
      sendHeader: () => {},
    };
    const answered = control.readKeys(request, ctx);
    // The Command reaches the outbox a few promise hops after the call starts.
    while (session.queued === 0 && session.inFlight === 0) await Promise.resolve();
    await Promise.resolve();
    answerCommands();
    const response = await answered;
    if (response.result?.outcome !== Outcome.OUTCOME_GOOD) throw new Error('READ KEYS failed');
    readKeys.responseSerialize(response);
  };
}

async function main(): Promise<void> {
  const calls = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 20_000);
  const thrashMiB = thrashMiBOf(process.argv.slice(2));
  const sample = await sampleReadKeys();
  const call = commandPath(sample);
  for (let i = 0; i < WARMUP_CALLS; i++) await call();
  const { line } = await measureInProcess('server command path, unary READ KEYS in process', call, {
    calls,
    rounds: ROUNDS,
    thrashMiB,
  });
  process.stdout.write(`${line}\n`);
}

await main();
process.exit(0);
