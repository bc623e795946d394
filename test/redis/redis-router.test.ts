import { randomUUID } from 'node:crypto';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { Redis } from 'ioredis';
import { Status } from 'nice-grpc-common';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { Command, type DeepPartial } from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome, PrinAction } from '../../src/gen/prfleet/v1/scsi.js';
import {
  createRedisRouter,
  decodeRelayMessage,
  encodeRelayMessage,
  loadRedisRouterConfig,
  redisRouterFactory,
  type LocalSessions,
  type RedisRouter,
  type RedisRouterConfig,
} from '../../src/server/redis-router/index.js';
import type { CommandRouter, DispatchOptions } from '../../src/server/router.js';
import { startTestServer } from '../helpers/server.js';
import { connectScriptedAgent } from './scripted-agent.js';

const REDIS_URL = process.env['PRFLEET_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const log = createLogger({
  level: (process.env['PRFLEET_TEST_LOG'] as 'debug' | undefined) ?? 'silent',
  name: 'redis-test',
});
const RESULT_SLACK_MS = 300;
const RELAY_MARGIN_MS = 200;

let admin: Redis;
let runPrefix: string;
beforeAll(async () => {
  admin = new Redis(REDIS_URL);
  await admin.ping();
  runPrefix = `prfleet-test:${randomUUID().slice(0, 8)}:`;
});
afterAll(async () => {
  const keys = await admin.keys(`${runPrefix}*`);
  if (keys.length > 0) await admin.del(...keys);
  await admin.quit();
});

/** A key prefix of its own for each test, under this run's prefix. */
function testPrefix(): string {
  return `${runPrefix}${randomUUID().slice(0, 8)}:`;
}

function redisConfig(prefix: string): RedisRouterConfig {
  return { redisUrl: REDIS_URL, keyPrefix: prefix, presenceTtlMs: 3_000, instanceTtlMs: 600 };
}

/** A real prfleet server whose router is the Redis router. */
async function startInstance(prefix: string, name: string) {
  const instanceId = `${name}-${randomUUID().slice(0, 6)}`;
  const createRouter = redisRouterFactory(redisConfig(prefix), {
    log,
    instanceId,
    resultSlackMs: RESULT_SLACK_MS,
    tuning: { syncIntervalMs: 50, relayMarginMs: RELAY_MARGIN_MS },
  });
  if (createRouter === undefined) throw new Error('a Redis URL was given: the factory must exist');
  const test = await startTestServer({
    config: { instanceId, resultSlackMs: RESULT_SLACK_MS },
    deps: { createRouter },
  });
  const router = test.server.router as RedisRouter;
  await router.ready;
  onTestFinished(() => router.close());
  return { ...test, router, instanceId };
}

const readKeys = (path = '/dev/sg1'): Command =>
  Command.fromPartial({
    path,
    kind: { $case: 'prin', value: { action: PrinAction.PRIN_ACTION_READ_KEYS } },
  });

/**
 * A router standing in for an instance whose agent streams the test fakes (its local side answers nothing until
 * the test says), with its own Redis connections so the test can cut them as a crash would.
 */
function bareInstance(prefix: string, agents: string[]) {
  const instanceId = `bare-${randomUUID().slice(0, 6)}`;
  const held: {
    agentId: string;
    command: Command;
    options: DispatchOptions;
    resolve(r: CommandResult): void;
  }[] = [];
  const local: CommandRouter = {
    draining: false,
    inFlight: 0,
    startDraining() {},
    whenIdle: async () => true,
    dispatch: (agentId, command, options) =>
      new Promise((resolve) => {
        held.push({ agentId, command, options, resolve });
      }),
  };
  const sessions: LocalSessions = {
    session: (id) => (agents.includes(id) ? { sessionId: `s-${id}` } : undefined),
    sessions: () => agents.map((agentId) => ({ agentId, sessionId: `s-${agentId}` })),
  };
  const connectionName = `prfleet-test-${instanceId}`;
  const router = createRedisRouter({
    redisUrl: REDIS_URL,
    redisOptions: { retryStrategy: () => null, connectionName },
    instanceId,
    keyPrefix: prefix,
    presenceTtlMs: 3_000,
    instanceTtlMs: 600,
    syncIntervalMs: 50,
    resultSlackMs: RESULT_SLACK_MS,
    relayMarginMs: RELAY_MARGIN_MS,
    local,
    sessions,
    log,
  });
  onTestFinished(() => router.close());
  /** Cuts this instance's Redis connections for good (a crashed process). */
  const crash = async () => {
    const list = (await admin.client('LIST')) as string;
    for (const line of list.split('\n')) {
      if (!line.includes(`name=${connectionName}`)) continue;
      const id = /(?:^|\s)id=(\d+)/.exec(line)?.[1];
      if (id !== undefined) await admin.client('KILL', 'ID', id);
    }
  };
  return { router, instanceId, held, crash };
}

describe('Redis command router (real Redis, real servers on 127.0.0.1:0)', () => {
  it('forwards a command from instance B to the agent on instance A and brings the result back', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const b = await startInstance(prefix, 'b');
    const agent = await connectScriptedAgent(a.address, 'host-a', () => ({
      status: 0,
      message: 'keys read on A',
    }));
    await expect.poll(() => b.router.ownerOf('host-a')).toBe(a.instanceId);
    const seen: CommandResult[] = [];
    const result = await b.router.dispatch('host-a', readKeys(), {
      timeoutMs: 5_000,
      luId: 'naa.5000e11100000001',
      onResult: (r) => seen.push(r),
    });
    expect(result).toMatchObject({
      outcome: Outcome.OUTCOME_GOOD,
      agentId: 'host-a',
      path: '/dev/sg1',
      message: 'keys read on A',
    });
    expect(result.commandId).toBe(agent.commands[0]?.commandId);
    expect(agent.commands).toHaveLength(1);
    expect(seen).toEqual([result]);
    expect(b.router.inFlight).toBe(0);
  });

  it('takes the caller’s trace context along to the instance holding the agent', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const b = await startInstance(prefix, 'b');
    const agent = await connectScriptedAgent(a.address, 'host-a', () => ({ status: 0 }));
    await expect.poll(() => b.router.ownerOf('host-a')).toBe(a.instanceId);
    // A W3C propagator, a context manager and an active span on B, as a traced RPC handler has them (no SDK).
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    onTestFinished(() => {
      propagation.disable();
      context.disable();
    });
    const caller = trace.wrapSpanContext({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      traceFlags: 1,
    });
    await context.with(trace.setSpan(context.active(), caller), () =>
      b.router.dispatch('host-a', readKeys(), { timeoutMs: 5_000 }),
    );
    expect(agent.commands[0]?.traceparent).toBe(
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    );
    // Untraced callers send none.
    await b.router.dispatch('host-a', readKeys(), { timeoutMs: 5_000 });
    expect(agent.commands[1]?.traceparent).toBe('');
  });

  it('dispatches locally without Redis when the agent is on the same instance', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const agent = await connectScriptedAgent(a.address, 'host-a');
    await expect(
      a.router.dispatch('host-a', readKeys(), { timeoutMs: 5_000 }),
    ).resolves.toMatchObject({ outcome: Outcome.OUTCOME_GOOD });
    expect(agent.commands).toHaveLength(1);
  });

  it('publishes presence with a TTL and withdraws it when the agent’s stream ends', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const b = await startInstance(prefix, 'b');
    const agent = await connectScriptedAgent(a.address, 'host-a');
    await expect.poll(() => admin.get(`${prefix}agent:host-a`)).toBe(a.instanceId);
    const ttl = await admin.pttl(`${prefix}agent:host-a`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(3_000);
    agent.kill();
    await expect.poll(() => b.router.ownerOf('host-a')).toBeUndefined();
    await expect(
      b.router.dispatch('host-a', readKeys(), { timeoutMs: 1_000 }),
    ).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
      details: 'agent host-a is not connected to any server instance; nothing was sent',
    });
  });

  it('lets presence expire when its instance stops refreshing it', async () => {
    const prefix = testPrefix();
    await admin.set(`${prefix}agent:host-gone`, 'instance-that-died', 'PX', 200);
    const b = await startInstance(prefix, 'b');
    expect(await b.router.ownerOf('host-gone')).toBe('instance-that-died');
    await expect.poll(() => b.router.ownerOf('host-gone'), { timeout: 2_000 }).toBeUndefined();
  });

  it('fails fast with UNAVAILABLE when the owning instance is gone, and forgets its claim', async () => {
    const prefix = testPrefix();
    const b = await startInstance(prefix, 'b');
    const dead = bareInstance(prefix, ['host-z']);
    await dead.router.ready;
    await expect.poll(() => b.router.ownerOf('host-z')).toBe(dead.instanceId);
    await dead.crash();
    const started = performance.now();
    await expect(
      b.router.dispatch('host-z', readKeys(), { timeoutMs: 30_000 }),
    ).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
      details: expect.stringContaining(
        `server instance ${dead.instanceId} holding agent host-z is gone`,
      ),
    });
    // Fast: not after the 30 s command timeout (a loaded machine may take a second or two).
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await b.router.ownerOf('host-z')).toBeUndefined();
    expect(dead.held).toHaveLength(0);
  });

  it('turns a command taken by an instance that then dies into outcome UNKNOWN', async () => {
    const prefix = testPrefix();
    const b = await startInstance(prefix, 'b');
    const dying = bareInstance(prefix, ['host-z']);
    await dying.router.ready;
    await expect.poll(() => b.router.ownerOf('host-z')).toBe(dying.instanceId);
    const seen: CommandResult[] = [];
    const pending = b.router.dispatch('host-z', readKeys(), {
      timeoutMs: 30_000,
      onResult: (r) => seen.push(r),
    });
    await expect.poll(() => dying.held.length).toBe(1);
    await dying.crash();
    const result = await pending;
    expect(result).toMatchObject({ outcome: Outcome.OUTCOME_UNKNOWN, agentId: 'host-z' });
    expect(result.message).toContain(
      `server instance ${dying.instanceId} holding agent host-z's stream went away`,
    );
    expect(seen).toEqual([result]);
  });

  it('honours the command timeout: an agent that never answers gives UNKNOWN after timeout + slack', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const b = await startInstance(prefix, 'b');
    await connectScriptedAgent(a.address, 'host-a', () => 'hold');
    await expect.poll(() => b.router.ownerOf('host-a')).toBe(a.instanceId);
    const started = performance.now();
    const result = await b.router.dispatch('host-a', readKeys(), { timeoutMs: 200 });
    const ms = performance.now() - started;
    expect(result.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(ms).toBeGreaterThanOrEqual(200 + RESULT_SLACK_MS - 20);
    expect(ms).toBeLessThan(200 + RESULT_SLACK_MS + RELAY_MARGIN_MS + 1_000);
  });

  it('relays the caller’s cancel to the agent and still reports the late result', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const b = await startInstance(prefix, 'b');
    const agent = await connectScriptedAgent(a.address, 'host-a', () => 'hold');
    await expect.poll(() => b.router.ownerOf('host-a')).toBe(a.instanceId);
    const caller = new AbortController();
    const seen: CommandResult[] = [];
    const pending = b.router.dispatch('host-a', readKeys(), {
      timeoutMs: 5_000,
      signal: caller.signal,
      onResult: (r) => seen.push(r),
    });
    await expect.poll(() => agent.commands.length).toBe(1);
    caller.abort(new Error('caller gave up'));
    await expect(pending).rejects.toThrow('caller gave up');
    const command = agent.commands[0] as Command;
    await expect.poll(() => agent.cancels).toEqual([command.commandId]);
    agent.respond(command, { message: 'ran before the cancel arrived' });
    await expect.poll(() => seen.map((r) => r.message)).toEqual(['ran before the cancel arrived']);
    await expect.poll(() => b.router.inFlight).toBe(0);
  });

  it('follows an agent that re-attached to another instance and ends its stale session', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const b = await startInstance(prefix, 'b');
    const c = await startInstance(prefix, 'c');
    const stale = await connectScriptedAgent(a.address, 'host-a', () => ({ message: 'from A' }));
    await expect.poll(() => c.router.ownerOf('host-a')).toBe(a.instanceId);
    await connectScriptedAgent(b.address, 'host-a', () => ({ message: 'from B' }));
    await expect.poll(() => c.router.ownerOf('host-a')).toBe(b.instanceId);
    await expect.poll(() => a.server.agents.session('host-a')).toBeUndefined();
    await stale.ended;
    await expect(
      c.router.dispatch('host-a', readKeys(), { timeoutMs: 5_000 }),
    ).resolves.toMatchObject({ message: 'from B' });
    await expect(
      a.router.dispatch('host-a', readKeys(), { timeoutMs: 5_000 }),
    ).resolves.toMatchObject({ message: 'from B' });
  });

  it('passes the owner’s refusal back with its reason (agent busy, draining)', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    const b = await startInstance(prefix, 'b');
    await connectScriptedAgent(a.address, 'host-a');
    await expect.poll(() => b.router.ownerOf('host-a')).toBe(a.instanceId);
    a.router.startDraining();
    const error = await b.router
      .dispatch('host-a', readKeys(), { timeoutMs: 1_000 })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: Status.UNAVAILABLE,
      details: 'server is draining: retry on another instance',
    });
    expect((error as { extra: { reason: string }[] }).extra[0]?.reason).toBe('SERVER_DRAINING');
    b.router.startDraining();
    await expect(
      b.router.dispatch('host-a', readKeys(), { timeoutMs: 1_000 }),
    ).rejects.toMatchObject({ code: Status.UNAVAILABLE });
  });

  it('withdraws its presence on close', async () => {
    const prefix = testPrefix();
    const a = await startInstance(prefix, 'a');
    await connectScriptedAgent(a.address, 'host-a');
    await expect.poll(() => admin.get(`${prefix}agent:host-a`)).toBe(a.instanceId);
    await a.router.close();
    expect(await admin.get(`${prefix}agent:host-a`)).toBeNull();
    expect(await admin.exists(`${prefix}instance:${a.instanceId}`)).toBe(0);
  });
});

describe('without Redis', () => {
  it('keeps the in-process router: no factory, the server runs as before', async () => {
    const config = loadRedisRouterConfig({});
    expect(config.redisUrl).toBeUndefined();
    expect(
      redisRouterFactory(config, { log, instanceId: 'x', resultSlackMs: 100 }),
    ).toBeUndefined();
    const single = await startTestServer();
    const agent = await connectScriptedAgent(single.address, 'host-a');
    await expect(
      single.server.router.dispatch('host-a', readKeys(), { timeoutMs: 1_000 }),
    ).resolves.toMatchObject({ outcome: Outcome.OUTCOME_GOOD });
    expect(agent.commands).toHaveLength(1);
    expect('ownerOf' in single.server.router).toBe(false);
  });

  it('names the variable of a bad setting', () => {
    expect(() => loadRedisRouterConfig({ PRFLEET_REDIS_URL: 'localhost:6379' })).toThrow(
      /PRFLEET_REDIS_URL/,
    );
    expect(() =>
      loadRedisRouterConfig({ PRFLEET_REDIS_URL: 'redis://r', PRFLEET_PRESENCE_TTL_MS: '5' }),
    ).toThrow(/PRFLEET_PRESENCE_TTL_MS/);
  });
});

describe('relay messages', () => {
  it('round-trip a request and a result with their protobuf payloads', () => {
    const command = Command.fromPartial({
      commandId: 'c1',
      path: '/dev/sg3',
      kind: { $case: 'prout', value: { reservationKey: 0xffff_ffff_ffff_ffffn } },
    });
    const request = {
      kind: 'request',
      id: 'a/1',
      from: 'a',
      agentId: 'host-a',
      command,
      timeoutMs: 60_000,
      luId: 'naa.1',
    } as const;
    expect(decodeRelayMessage(encodeRelayMessage(request))).toEqual(request);
    const partial: DeepPartial<CommandResult> = {
      commandId: 'c1',
      outcome: Outcome.OUTCOME_RESERVATION_CONFLICT,
      status: 0x18,
    };
    const result = {
      kind: 'result',
      id: 'a/1',
      result: CommandResult.fromPartial(partial),
    } as const;
    expect(decodeRelayMessage(encodeRelayMessage(result))).toEqual(result);
  });

  it('rejects a malformed message, naming the field', () => {
    expect(() => decodeRelayMessage(JSON.stringify({ kind: 'request', id: 'x' }))).toThrow(
      /malformed relay message[\s\S]*from/,
    );
  });
});
