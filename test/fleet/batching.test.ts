/**
 * CommandBatch / ResultBatch on the agent stream (agent.proto): negotiated in Hello and Welcome, only framing.
 * Server side against scripted agents (one that accepts batches, one that does not); agent side against a
 * minimal server that sends a CommandBatch and says whether it accepts ResultBatch.
 */
import { createServer } from 'nice-grpc';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createAgent } from '../../agent/agent.js';
import { createEmulatedFabric, loadFabric } from '../../agent/fabric.js';
import { createEmulatedSource } from '../../agent/sources.js';
import { createAgentClient } from '../../src/common/client.js';
import { msToDuration } from '../../src/common/command.js';
import { createLogger } from '../../src/common/logger.js';
import { directServiceDefinition } from '../../src/common/service-definition.js';
import {
  AgentServiceDefinition,
  Command,
  type ConnectRequest,
  type ConnectResponse,
  type DeepPartial,
} from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, PrinAction } from '../../src/gen/prfleet/v1/scsi.js';
import { AgentRegistry } from '../../src/server/agents/index.js';
import { createAgentService } from '../../src/server/agents/service.js';
import { AsyncQueue } from '../../src/common/async-queue.js';
import { createInProcessRouter } from '../../src/server/router.js';
import { startFakeAgentServer } from '../agent/fake-server.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';

const log = createLogger({ level: 'silent', name: 'batching-test' });
const demo = new URL('../../examples/fabric-demo.yaml', import.meta.url).pathname;

function readKeys(path: string): Command {
  return Command.fromPartial({
    path,
    kind: { $case: 'prin', value: { action: PrinAction.PRIN_ACTION_READ_KEYS } },
  });
}

async function startServer() {
  const registry = new AgentRegistry({
    heartbeatMs: 60_000,
    missedHeartbeats: 5,
    outboxCapacity: 256,
    log,
  });
  const router = createInProcessRouter({
    registry,
    log,
    instanceId: 'batch',
    resultSlackMs: 60_000,
  });
  const agentService = createAgentService({ registry, router, instanceId: 'batch', log });
  const server = createServer({ interceptors: [agentService.interceptor] });
  server.add(directServiceDefinition(AgentServiceDefinition), agentService.implementation);
  const port = await server.listen('127.0.0.1:0');
  onTestFinished(() => server.forceShutdown());
  return { registry, router, address: `127.0.0.1:${port}` };
}

/** A scripted agent that says it accepts CommandBatch and records every message the server sends. */
async function connectBatchingAgent(address: string, agentId: string) {
  const client = createAgentClient(address);
  onTestFinished(() => client.close());
  const outgoing = new AsyncQueue<DeepPartial<ConnectRequest>>(Number.MAX_SAFE_INTEGER);
  const abort = new AbortController();
  onTestFinished(() => {
    outgoing.close();
    abort.abort();
  });
  const received: ConnectResponse[] = [];
  outgoing.push({
    message: {
      $case: 'hello',
      value: {
        agentId,
        hostname: agentId,
        version: 't',
        transport: 'emulated',
        acceptsCommandBatches: true,
      },
    },
  });
  outgoing.push({
    message: {
      $case: 'inventory',
      value: { paths: [fakePath('/dev/sg0', 'lu-0'), fakePath('/dev/sg1', 'lu-1')] },
    },
  });
  const ended = (async () => {
    try {
      for await (const m of client.connect(outgoing, { signal: abort.signal })) received.push(m);
    } catch {
      // killed by the test
    }
  })();
  const waitFor = async (check: () => boolean): Promise<void> => {
    for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(check()).toBe(true);
  };
  return { received, outgoing, abort, ended, waitFor };
}

describe('CommandBatch and ResultBatch on the agent stream', () => {
  it('coalesces commands queued together for an agent that accepts batches, and settles a ResultBatch per command', async () => {
    const { registry, router, address } = await startServer();
    const agent = await connectBatchingAgent(address, 'batcher');
    await agent.waitFor(() => (registry.get('batcher')?.paths.length ?? 0) === 2);
    const welcome = agent.received.find((m) => m.message?.$case === 'welcome');
    expect(
      welcome?.message?.$case === 'welcome' && welcome.message.value.acceptsResultBatches,
    ).toBe(true);

    // Three commands dispatched in one tick: two on one path (their order must hold), one on another.
    const sent = [readKeys('/dev/sg0'), readKeys('/dev/sg1'), readKeys('/dev/sg0')].map((c) =>
      router.dispatch('batcher', c, { timeoutMs: 5_000, luId: 'lu' }),
    );
    await agent.waitFor(() => agent.received.some((m) => m.message?.$case === 'commands'));
    const batches = agent.received.filter((m) => m.message?.$case === 'commands');
    expect(batches).toHaveLength(1);
    expect(agent.received.filter((m) => m.message?.$case === 'command')).toHaveLength(0);
    const commands =
      batches[0]?.message?.$case === 'commands' ? batches[0].message.value.commands : [];
    expect(commands.map((c) => c.path)).toEqual(['/dev/sg0', '/dev/sg1', '/dev/sg0']);
    expect(new Set(commands.map((c) => c.commandId)).size).toBe(3);
    for (const c of commands) expect(c.timeout).toBeDefined();

    // One ResultBatch, in another order: each result settles its own command.
    agent.outgoing.push({
      message: {
        $case: 'results',
        value: {
          results: [2, 0, 1].map((i) => ({
            commandId: commands[i]?.commandId ?? '',
            outcome: Outcome.OUTCOME_GOOD,
            path: commands[i]?.path ?? '',
            message: `answer ${i}`,
          })),
        },
      },
    });
    const results = await Promise.all(sent);
    expect(results.map((r) => r.message)).toEqual(['answer 0', 'answer 1', 'answer 2']);
    expect(results.map((r) => r.commandId)).toEqual(commands.map((c) => c.commandId));
    expect(router.inFlight).toBe(0);
  });

  it('keeps cancel per command and turns every batched command in flight into UNKNOWN when the stream is lost', async () => {
    const { registry, router, address } = await startServer();
    const agent = await connectBatchingAgent(address, 'batcher');
    await agent.waitFor(() => (registry.get('batcher')?.paths.length ?? 0) === 2);
    const caller = new AbortController();
    const cancelled = router.dispatch('batcher', readKeys('/dev/sg0'), {
      timeoutMs: 5_000,
      signal: caller.signal,
    });
    const lost = router.dispatch('batcher', readKeys('/dev/sg1'), { timeoutMs: 5_000 });
    cancelled.catch(() => undefined);
    await agent.waitFor(() => agent.received.some((m) => m.message?.$case === 'commands'));
    const batch = agent.received.find((m) => m.message?.$case === 'commands');
    const ids =
      batch?.message?.$case === 'commands'
        ? batch.message.value.commands.map((c) => c.commandId)
        : [];
    expect(ids).toHaveLength(2);

    caller.abort(new Error('caller gave up'));
    await expect(cancelled).rejects.toThrow('caller gave up');
    await agent.waitFor(() => agent.received.some((m) => m.message?.$case === 'cancel'));
    const cancel = agent.received.find((m) => m.message?.$case === 'cancel');
    expect(cancel?.message?.$case === 'cancel' && cancel.message.value.commandId).toBe(ids[0]);

    agent.abort.abort(); // the agent vanishes with the second command in flight
    const result = await lost;
    expect(result.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result.commandId).toBe(ids[1]);
  });

  it('sends single commands to an agent that did not ask for batches', async () => {
    const { router, address } = await startServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'old',
      paths: [fakePath('/dev/sg0', 'lu-0'), fakePath('/dev/sg1', 'lu-1')],
    });
    await new Promise((r) => setTimeout(r, 50));
    const sent = [readKeys('/dev/sg0'), readKeys('/dev/sg1'), readKeys('/dev/sg0')].map((c) =>
      router.dispatch('old', c, { timeoutMs: 5_000 }),
    );
    const commands = [
      await agent.nextCommand(),
      await agent.nextCommand(),
      await agent.nextCommand(),
    ];
    expect(commands.map((c) => c.path)).toEqual(['/dev/sg0', '/dev/sg1', '/dev/sg0']);
    expect(agent.received.some((m) => m.message?.$case === 'commands')).toBe(false);
    for (const c of commands) agent.respond(c);
    expect((await Promise.all(sent)).map((r) => r.outcome)).toEqual([
      Outcome.OUTCOME_GOOD,
      Outcome.OUTCOME_GOOD,
      Outcome.OUTCOME_GOOD,
    ]);
  });
});

describe('the agent with CommandBatch and ResultBatch', () => {
  async function runBatch(acceptsResultBatches: boolean) {
    const server = await startFakeAgentServer({ acceptsResultBatches });
    const fabric = createEmulatedFabric(await loadFabric(demo));
    const agent = createAgent(
      {
        server: server.address,
        agentId: 'host-a',
        plaintext: true,
        heartbeatMs: 60_000,
        pathConcurrency: 8,
      },
      { log, source: createEmulatedSource(fabric.host('host-a'), { closeFabric: fabric }) },
    );
    onTestFinished(() => agent.stop());
    await agent.start();
    const session = await server.session(0);
    expect(session.hello.acceptsCommandBatches).toBe(true);
    await session.next('inventory');
    const commands = ['/dev/sg0', '/dev/sg2', '/dev/sg3', '/dev/sg0'].map((path, i) =>
      Command.fromPartial({ ...readKeys(path), commandId: `b${i}`, timeout: msToDuration(5_000) }),
    );
    const before = session.received.length;
    session.send({ $case: 'commands', value: { commands } });
    const deadline = Date.now() + 5_000;
    const results = () =>
      session.received
        .slice(before)
        .flatMap((m) =>
          m.message?.$case === 'result'
            ? [m.message.value]
            : m.message?.$case === 'results'
              ? m.message.value.results
              : [],
        );
    while (results().length < 4 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    return { results: results(), messages: session.received.slice(before) };
  }

  it('runs every command of a CommandBatch and answers them in one ResultBatch when the server accepts it', async () => {
    const { results, messages } = await runBatch(true);
    expect(results.map((r) => r.outcome)).toEqual(Array(4).fill(Outcome.OUTCOME_GOOD));
    expect(new Set(results.map((r) => r.commandId))).toEqual(new Set(['b0', 'b1', 'b2', 'b3']));
    // Per-path order: the second command on /dev/sg0 finishes after the first.
    const ids = results.map((r) => r.commandId);
    expect(ids.indexOf('b0')).toBeLessThan(ids.indexOf('b3'));
    expect(messages.some((m) => m.message?.$case === 'results')).toBe(true);
    expect(
      messages.filter((m) => m.message?.$case === 'result' || m.message?.$case === 'results')
        .length,
    ).toBeLessThan(4);
  });

  it('sends every result as its own message to a server that did not say it accepts ResultBatch', async () => {
    const { results, messages } = await runBatch(false);
    expect(results.map((r) => r.outcome)).toEqual(Array(4).fill(Outcome.OUTCOME_GOOD));
    expect(messages.some((m) => m.message?.$case === 'results')).toBe(false);
    expect(messages.filter((m) => m.message?.$case === 'result')).toHaveLength(4);
  });
});
