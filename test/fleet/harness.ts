import { onTestFinished } from 'vitest';
import { Command as CliProgram, CommanderError, Option } from '@commander-js/extra-typings';
import { registerFleetCommands } from '../../src/cli/fleet.js';
import { createCli } from '../../src/cli/runner.js';
import { createChannel, createClientFactory, createServer } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { createAgent, type Agent } from '../../agent/agent.js';
import { createEmulatedFabric, loadFabric, type EmulatedFabric } from '../../agent/fabric.js';
import type { ScsiDevice, ScsiTransport } from '../../agent/transport/transport.js';
import { createLogger } from '../../src/common/logger.js';
import { Command, ProutCommand } from '../../src/gen/prfleet/v1/agent.js';
import { AgentServiceDefinition } from '../../src/gen/prfleet/v1/agent.js';
import {
  FleetServiceDefinition,
  type FleetServiceClient,
  type RolloutEvent,
} from '../../src/gen/prfleet/v1/fleet.js';
import type { CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import type { ScsiRequest, ScsiResponse } from '../../src/scsi/index.js';
import { AgentRegistry } from '../../src/server/agents/index.js';
import { createAgentService } from '../../src/server/agents/service.js';
import { createCommandPipeline, type CommandPipeline } from '../../src/server/commands/pipeline.js';
import { exposeDeadline } from '../../src/server/deadline.js';
import { createMemoryJournal } from '../../src/server/journal.js';
import { registerFleetService } from '../../src/server/fleet/index.js';
import { createLuSerializer } from '../../src/server/lu-serializer.js';
import { rpcMiddleware } from '../../src/server/middleware.js';
import { createInProcessRouter, type CommandRouter } from '../../src/server/router.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import type { TakeoverRules } from '../../src/server/fleet/takeover-rules.js';
import type { HoldMemory } from '../../src/server/fleet/holds.js';
import { DEMO_FABRIC } from '../helpers/agents.js';

/** What a test can do to a command on its way into the emulator: run it, or run something else first. */
export type Interceptor = (call: {
  host: string;
  path: string;
  request: ScsiRequest;
  run: () => Promise<ScsiResponse>;
}) => Promise<ScsiResponse>;

/** One PROUT that reached the emulator. */
export interface DeliveredProut {
  /** Host whose transport sent it. */
  readonly host: string;
  /** Path. */
  readonly path: string;
  /** CDB + parameter list as hex (identifies a repeat). */
  readonly bytes: string;
}

/** A real server (AgentService + FleetService), a real store, real agents over one emulated fabric. */
export interface FleetHarness {
  /** FleetService client over loopback. */
  readonly client: FleetServiceClient;
  /** 'host:port' of the server. */
  readonly address: string;
  /** The server's router (tests send setup PROUTs through it, as an agent would run them). */
  readonly router: CommandRouter;
  /** The command pipeline the fleet engine sends through (over `router`). */
  readonly commands: CommandPipeline;
  /** The server's agent registry. */
  readonly agents: AgentRegistry;
  /** The durable store (PGlite in memory). */
  readonly store: Store;
  /** The emulated fabric. */
  readonly fabric: EmulatedFabric;
  /** Running agents by host id. */
  readonly hostAgents: Map<string, Agent>;
  /** PROUTs that reached the emulator, in order. */
  readonly delivered: DeliveredProut[];
  /** Sets (or clears) the interceptor for commands entering the emulator. */
  intercept(fn: Interceptor | undefined): void;
  /** Ends `host`'s agent session on the server side (its in-flight commands become UNKNOWN). */
  cut(host: string): void;
  /** Stops `host`'s agent (it stays stopped). */
  stopAgent(host: string): Promise<void>;
  /** Sends a PROUT as `host` through `path` (setup), returning its result. */
  prout(host: string, path: string, prout: Partial<ProutCommand>): Promise<CommandResult>;
  /** Waits until every running agent is connected with its inventory. */
  settled(): Promise<void>;
}

let shared: Promise<Store> | undefined;

/**
 * One in-memory store per test file (opening PGlite costs seconds on this machine), emptied for each harness.
 * The history stays: it is append-only and hash-chained, and every test finds its own entries by key.
 */
async function sharedStore(): Promise<Store> {
  shared ??= openStore({ inMemory: true });
  const store = await shared;
  await store.db.exec('TRUNCATE operations, desired_state, reservation_keys, key_hosts, key_sites');
  return store;
}

function hex(bytes: Uint8Array | undefined): string {
  return Buffer.from(bytes ?? new Uint8Array(0)).toString('hex');
}

/** Starts the harness on the demo fabric (or `fabricFile`); everything is closed when the test finishes. */
export async function startFleetHarness(
  options: {
    fabricFile?: string;
    wrapRouter?: (r: CommandRouter, agents: AgentRegistry) => CommandRouter;
    /** Told each audit's finding counts (the server wires the Prometheus gauge here). */
    onAuditFindings?: (countsByKind: Readonly<Record<string, number>>) => void;
    /** Takeover rules. @default DEFAULT_TAKEOVER_RULES */
    takeoverRules?: TakeoverRules;
    /** A store to use instead of the shared in-memory PGlite (e.g. PostgreSQL). */
    store?: Store;
    /** MEDIUM REMOVAL PREVENTED memory for the audit (feed it with a wrapRouter tap). */
    holds?: HoldMemory;
  } = {},
): Promise<FleetHarness> {
  const level = process.env['PRFLEET_TEST_LOG'];
  const log = createLogger({
    level: (level as 'debug' | undefined) ?? 'silent',
    name: 'fleet-test',
  });
  const agents = new AgentRegistry({
    heartbeatMs: 1_000,
    missedHeartbeats: 5,
    outboxCapacity: 256,
    log,
  });
  const inner = createInProcessRouter({
    registry: agents,
    log,
    instanceId: 'fleet-test',
    resultSlackMs: 1_000,
  });
  const router = options.wrapRouter ? options.wrapRouter(inner, agents) : inner;
  const store = options.store ?? (await sharedStore());
  const agentService = createAgentService({
    registry: agents,
    router: inner,
    instanceId: 'fleet-test',
    log,
  });
  const server = createServer({
    interceptors: [agentService.interceptor, exposeDeadline],
  }).use(rpcMiddleware(log));
  server.add(AgentServiceDefinition, agentService.implementation);
  // As prfleet-server wires it: every step's read and PROUT in one LU turn, the fleet journaling its own steps.
  const commands = createCommandPipeline({
    router,
    journal: createMemoryJournal(),
    marginMs: 0,
    log,
    luSerializer: createLuSerializer(),
  });
  registerFleetService(server, {
    commands,
    devices: agents,
    store,
    log,
    instanceId: 'fleet-test',
    ...(options.onAuditFindings === undefined ? {} : { onAuditFindings: options.onAuditFindings }),
    ...(options.takeoverRules === undefined ? {} : { takeoverRules: options.takeoverRules }),
    ...(options.holds === undefined ? {} : { holds: options.holds }),
  });
  const port = await server.listen('127.0.0.1:0');
  const address = `127.0.0.1:${port}`;
  const channel = createChannel(address);
  const client = createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(FleetServiceDefinition, channel);

  const fabric = createEmulatedFabric(await loadFabric(options.fabricFile ?? DEMO_FABRIC));
  const delivered: DeliveredProut[] = [];
  let interceptor: Interceptor | undefined;
  const hostAgents = new Map<string, Agent>();
  for (const host of fabric.hosts) {
    const transport: ScsiTransport = {
      kind: 'emulated',
      async open(path, openOptions) {
        const device = await host.transport.open(path, openOptions);
        const wrapped: ScsiDevice = {
          path: device.path,
          close: () => device.close(),
          execute(request, execOptions) {
            const run = async () => {
              const response = await device.execute(request, execOptions);
              if (request.cdb[0] === 0x5f)
                delivered.push({
                  host: host.id,
                  path,
                  bytes: hex(request.cdb) + hex(request.dataOut),
                });
              return response;
            };
            return interceptor ? interceptor({ host: host.id, path, request, run }) : run();
          },
        };
        return wrapped;
      },
    };
    const agent = createAgent(
      {
        server: address,
        agentId: host.id,
        site: host.site,
        labels: host.labels,
        plaintext: true,
        heartbeatMs: 500,
        backoff: { initialMs: 20, maxMs: 200 },
        drainMs: 500,
      },
      {
        log,
        source: {
          transport,
          listTargets: async () =>
            host.paths.map((p) => ({
              path: p.path,
              initiatorPort: p.initiatorPort,
              loaderId: p.loaderId,
            })),
        },
      },
    );
    hostAgents.set(host.id, agent);
  }
  await Promise.all([...hostAgents.values()].map((a) => a.start()));

  const settled = async () => {
    const running = [...hostAgents.values()].filter((a) => a.state !== 'stopped');
    await Promise.all(running.map((a) => a.waitForState('connected')));
    for (let i = 0; i < 200; i++) {
      if (
        running.every(
          (a) => (agents.get(a.id)?.paths.length ?? 0) > 0 && agents.session(a.id) !== undefined,
        )
      )
        return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('agents did not report their inventories');
  };
  await settled();

  onTestFinished(async () => {
    interceptor = undefined;
    await Promise.all([...hostAgents.values()].map((a) => a.stop()));
    channel.close();
    for (const s of agents.sessions()) agents.close(s, 'test over');
    agents.stopLivenessChecks();
    await server.shutdown();
    fabric.close();
  });

  return {
    client,
    address,
    router,
    commands,
    agents,
    store,
    fabric,
    hostAgents,
    delivered,
    intercept: (fn) => void (interceptor = fn),
    cut(host) {
      const session = agents.session(host);
      if (session) agents.close(session, `test cut the connection of ${host}`);
    },
    async stopAgent(host) {
      await hostAgents.get(host)?.stop();
      const session = agents.session(host);
      if (session) agents.close(session, 'agent stopped');
    },
    prout(host, path, prout) {
      return inner.dispatch(
        host,
        Command.fromPartial({
          path,
          kind: { $case: 'prout', value: ProutCommand.fromPartial(prout) },
        }),
        { timeoutMs: 5_000 },
      );
    },
    settled,
  };
}

/** Collects every event of a rollout stream. */
export async function collect<T extends { event?: RolloutEvent | undefined }>(
  stream: AsyncIterable<T>,
): Promise<RolloutEvent[]> {
  const out: RolloutEvent[] = [];
  for await (const r of stream) if (r.event) out.push(r.event);
  return out;
}

/** The step events of a rollout. */
export function stepEvents(events: readonly RolloutEvent[]) {
  return events.flatMap((e) => (e.event?.$case === 'step' ? [e.event.value] : []));
}

/** The finished event of a rollout. */
export function finished(events: readonly RolloutEvent[]) {
  const last = events[events.length - 1];
  if (last?.event?.$case !== 'finished')
    throw new Error(`rollout did not finish: ${JSON.stringify(events.map((e) => e.event?.$case))}`);
  return last.event.value;
}

/** Runs `prfleet <argv>` with only the fleet commands, in-process, against `server`. */
export async function runFleetCli(server: string, argv: string[]) {
  let stdout = '';
  let stderr = '';
  const state = { exitCode: 0 };
  const program = new CliProgram()
    .name('prfleet')
    .addOption(new Option('-s, --server <host:port>').default(server))
    .addOption(
      new Option('-o, --output <format>').choices(['table', 'json'] as const).default('table'),
    )
    .option('--plaintext', 'the harness server is plaintext', true)
    .exitOverride()
    .configureOutput({ writeOut: (t) => (stdout += t), writeErr: (t) => (stderr += t) });
  registerFleetCommands(
    createCli(
      program,
      { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), progress: true },
      state,
    ),
  );
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    state.exitCode = e.exitCode;
  }
  return { stdout, stderr, exitCode: state.exitCode };
}
