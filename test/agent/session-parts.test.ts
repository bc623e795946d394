// The session's and the agent's parts on their own: result batching, the Welcome's heartbeat interval, the
// reconnect policy, the path inventory and the lifecycle. Sessions and agents as a whole: session.test.ts.
import type { Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { AgentLifecycle } from '../../agent/lifecycle.js';
import { PathInventory } from '../../agent/inventory.js';
import { ReconnectPolicy } from '../../agent/reconnect.js';
import { heartbeatIntervalMs } from '../../agent/session/heartbeat.js';
import { ResultBatcher } from '../../agent/session/result-batcher.js';
import type { SessionEnd } from '../../agent/session.js';
import { msToDuration } from '../../src/common/command.js';
import { Welcome, type ConnectRequest } from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Path, PrinAction } from '../../src/gen/prfleet/v1/scsi.js';
import { prin, silentLog } from './helpers.js';

describe('ResultBatcher', () => {
  const sent: ConnectRequest['message'][] = [];
  const batcherOf = (accepts: boolean, log: Logger = silentLog) => {
    sent.length = 0;
    const batcher = new ResultBatcher((message) => {
      sent.push(message);
      return true;
    }, log);
    batcher.batches = accepts;
    return batcher;
  };
  const result = (commandId: string) => CommandResult.fromPartial({ commandId });
  const read = (commandId: string) =>
    prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS, { commandId });

  it('sends each result at once when the server takes no batches', () => {
    const batcher = batcherOf(false);
    batcher.add(read('a'), result('a'));
    batcher.add(read('b'), result('b'));
    expect(sent.map((m) => m?.$case)).toEqual(['result', 'result']);
  });

  it('gathers the results of one tick into one ResultBatch, in order', async () => {
    const batcher = batcherOf(true);
    batcher.add(read('a'), result('a'));
    batcher.add(read('b'), result('b'));
    expect(sent).toEqual([]);
    await Promise.resolve();
    expect(sent).toEqual([{ $case: 'results', value: { results: [result('a'), result('b')] } }]);
    batcher.add(read('c'), result('c'));
    await Promise.resolve();
    expect(sent[1]).toEqual({ $case: 'result', value: result('c') });
  });

  it('logs every result the closed stream could not take', () => {
    const warned: unknown[] = [];
    const log = { warn: (fields: unknown) => warned.push(fields) } as unknown as Logger;
    const batcher = new ResultBatcher(() => false, log);
    batcher.batches = true;
    batcher.add(read('a'), result('a'));
    batcher.add(read('b'), result('b'));
    batcher.flush();
    expect(warned).toEqual([
      { commandId: 'a', path: '/dev/sg0' },
      { commandId: 'b', path: '/dev/sg0' },
    ]);
  });
});

describe('heartbeatIntervalMs', () => {
  it("takes the Welcome's interval, or the fallback when it sets none", () => {
    const welcome = (ms?: number) =>
      Welcome.fromPartial(ms === undefined ? {} : { heartbeatInterval: msToDuration(ms) });
    expect(heartbeatIntervalMs(welcome(2500), 15_000)).toBe(2500);
    expect(heartbeatIntervalMs(welcome(0), 15_000)).toBe(15_000);
    expect(heartbeatIntervalMs(welcome(), 15_000)).toBe(15_000);
  });
});

describe('ReconnectPolicy', () => {
  const failed: SessionEnd = {
    reason: 'error',
    welcomed: false,
    durationMs: 5,
    error: new Error('x'),
  };
  const policyOf = (fallbackAfter: number) =>
    new ReconnectPolicy({
      backoff: { initialMs: 100, maxMs: 10_000, healthyMs: 1000 },
      fallbackAfter,
      random: () => 0.999,
    });

  it('backs off exponentially and resets after a healthy session or a Reconnect', () => {
    const policy = policyOf(0);
    expect(policy.afterEnd(failed, 'stream')).toEqual({ waitMs: 99, attempt: 1 });
    expect(policy.afterEnd(failed, 'stream')).toEqual({ waitMs: 199, attempt: 2 });
    expect(policy.afterEnd(failed, 'stream')).toEqual({ waitMs: 399, attempt: 3 });
    const healthy: SessionEnd = { reason: 'server-ended', welcomed: true, durationMs: 1000 };
    expect(policy.afterEnd(healthy, 'stream')).toEqual({ waitMs: 99, attempt: 1 });
    expect(policy.afterEnd(failed, 'stream').attempt).toBe(2);
    const reconnect: SessionEnd = { reason: 'reconnect', welcomed: true, durationMs: 5 };
    expect(policy.afterEnd(reconnect, 'stream')).toEqual({ waitMs: 99, attempt: 1 });
  });

  it('calls for the long-poll link after N stream failures in a row before any Welcome', () => {
    const policy = policyOf(3);
    policy.afterEnd(failed, 'stream');
    // A welcomed session in between starts the count again.
    policy.afterEnd({ reason: 'error', welcomed: true, durationMs: 5 }, 'stream');
    policy.afterEnd(failed, 'stream');
    expect(policy.afterEnd(failed, 'stream').fallBackAfter).toBeUndefined();
    expect(policy.afterEnd(failed, 'stream')).toEqual({
      waitMs: 99,
      attempt: 1,
      fallBackAfter: 3,
    });
    expect(policy.afterEnd(failed, 'long-poll').fallBackAfter).toBeUndefined();
  });

  it('never falls back with fallbackAfter 0', () => {
    const policy = policyOf(0);
    for (let i = 0; i < 10; i++)
      expect(policy.afterEnd(failed, 'stream').fallBackAfter).toBeUndefined();
  });
});

describe('PathInventory', () => {
  const path = (name: string, online = true) =>
    Path.fromPartial({ path: name, luId: `lu-${name}`, online });

  it('marks a path offline once and online again once', () => {
    const inventory = new PathInventory();
    inventory.replace([path('/dev/sg0'), path('/dev/sg1')]);
    expect(inventory.markOnline('/dev/sg0')).toBe(false);
    expect(inventory.markOffline('/dev/sg1')).toBe(true);
    expect(inventory.markOffline('/dev/sg1')).toBe(false);
    expect(inventory.markOffline('/dev/sg9')).toBe(false);
    expect(inventory.current.map((p) => p.online)).toEqual([true, false]);
    expect(inventory.markOnline('/dev/sg1')).toBe(true);
    expect(inventory.markOnline('/dev/sg1')).toBe(false);
    expect(inventory.current.map((p) => p.online)).toEqual([true, true]);
  });

  it('counts the offline paths of a new inventory', () => {
    const inventory = new PathInventory();
    inventory.replace([path('/dev/sg0', false)]);
    expect(inventory.markOnline('/dev/sg0')).toBe(true);
  });
});

describe('AgentLifecycle', () => {
  it('resolves a wait when the state is reached and rejects it when the agent stops first', async () => {
    const lifecycle = new AgentLifecycle('a1', silentLog);
    const seen: string[] = [];
    const unsubscribe = lifecycle.onChange((s) => seen.push(s));
    const connected = lifecycle.waitFor('connected');
    lifecycle.set('connected');
    await connected;
    lifecycle.set('connected'); // no change, no event
    const neverDraining = lifecycle.waitFor('connecting');
    lifecycle.set('stopped');
    await expect(neverDraining).rejects.toThrow('agent a1 stopped before reaching connecting');
    unsubscribe();
    lifecycle.set('draining');
    expect(seen).toEqual(['connected', 'stopped']);
  });

  it('rejects a wait when its signal aborts', async () => {
    const lifecycle = new AgentLifecycle('a1', silentLog);
    const controller = new AbortController();
    const waiting = lifecycle.waitFor('connected', controller.signal);
    controller.abort();
    await expect(waiting).rejects.toThrow();
  });
});
