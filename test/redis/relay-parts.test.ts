// The Redis router's parts that need no Redis: the pending-command table, duplicate-request memory, the owner
// side (RelayServer) over a scripted local router, and the caller side (Forwarder) over a scripted presence.
import { Status } from 'nice-grpc-common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { ErrorReason, resourceExhausted } from '../../src/common/errors.js';
import { Command } from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome, PrinAction } from '../../src/gen/prfleet/v1/scsi.js';
import type { CommandRouter, DispatchOptions } from '../../src/server/router.js';
import type { RelayMessage } from '../../src/server/redis-router/protocol.js';
import { Forwarder } from '../../src/server/redis-router/forwarder.js';
import {
  PendingForwards,
  type PendingForward,
} from '../../src/server/redis-router/pending-forwards.js';
import type { Presence } from '../../src/server/redis-router/presence.js';
import { RecentIds, RelayServer } from '../../src/server/redis-router/relay-server.js';

const log = createLogger({ level: 'silent', name: 'relay-parts' });
const readKeys = Command.fromPartial({
  path: '/dev/sg1',
  kind: { $case: 'prin', value: { action: PrinAction.PRIN_ACTION_READ_KEYS } },
});
const good = () => CommandResult.fromPartial({ outcome: Outcome.OUTCOME_GOOD });
const background = (task: () => Promise<unknown>) => void task();

afterEach(() => {
  vi.useRealTimers();
});

function entry(
  owner: string,
  options: Partial<DispatchOptions> = {},
): PendingForward & { settled: Promise<CommandResult> } {
  let resolve: (r: CommandResult) => void = () => {};
  let reject: (e: unknown) => void = () => {};
  const settled = new Promise<CommandResult>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    agentId: 'host-a',
    command: readKeys,
    options: { timeoutMs: 1_000, ...options },
    owner,
    rerouted: false,
    abandoned: false,
    timer: undefined,
    resolve,
    reject,
    settled,
  };
}

describe('PendingForwards', () => {
  it('settles each command once, tells onResult, and wakes drain when the last one goes', async () => {
    const table = new PendingForwards(log);
    const seen: CommandResult[] = [];
    const a = entry('b', { onResult: (r) => seen.push(r) });
    table.add('x/1', a);
    const idle = table.whenIdle(60_000);
    table.settle('x/1', a, good());
    table.settle('x/1', a, CommandResult.fromPartial({ outcome: Outcome.OUTCOME_UNKNOWN }));
    table.fail('x/1', a, new Error('late'));
    await expect(a.settled).resolves.toMatchObject({ outcome: Outcome.OUTCOME_GOOD });
    expect(seen).toHaveLength(1);
    await expect(idle).resolves.toBe(true);
    expect(table.size).toBe(0);
  });

  it('settles only the commands of a dead owner as UNKNOWN, saying why', async () => {
    const table = new PendingForwards(log);
    const onB = entry('b');
    const onC = entry('c');
    table.add('x/1', onB);
    table.add('x/2', onC);
    expect(table.owners()).toEqual(new Set(['b', 'c']));
    table.settleAllUnknown((e) => `instance ${e.owner} went away`, 'b');
    const result = await onB.settled;
    expect(result.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result.message).toContain('instance b went away; the command may or may not have run');
    expect(table.get('x/2')).toBe(onC);
  });

  it('keeps going when onResult throws', async () => {
    const table = new PendingForwards(log);
    const a = entry('b', {
      onResult: () => {
        throw new Error('hook');
      },
    });
    table.add('x/1', a);
    table.settle('x/1', a, good());
    await expect(a.settled).resolves.toMatchObject({ outcome: Outcome.OUTCOME_GOOD });
  });

  it('answers drain false when the time runs out first', async () => {
    vi.useFakeTimers();
    const table = new PendingForwards(log);
    table.add('x/1', entry('b'));
    const idle = table.whenIdle(100);
    vi.advanceTimersByTime(100);
    await expect(idle).resolves.toBe(false);
  });
});

describe('RecentIds', () => {
  it('says first time once per id and forgets the oldest beyond its capacity', () => {
    const ids = new RecentIds(2);
    expect(ids.firstTime('a')).toBe(true);
    expect(ids.firstTime('a')).toBe(false);
    expect(ids.firstTime('b')).toBe(true);
    expect(ids.firstTime('c')).toBe(true); // 'a' forgotten
    expect(ids.firstTime('b')).toBe(false);
    expect(ids.firstTime('a')).toBe(true);
  });
});

describe('RelayServer (owner side)', () => {
  function serverWith(dispatch: CommandRouter['dispatch']) {
    const sent: { target: string; message: RelayMessage }[] = [];
    const local = { dispatch } as unknown as CommandRouter;
    const server = new RelayServer({
      local,
      publish: (target, message) => {
        sent.push({ target, message });
        return Promise.resolve(1);
      },
      background,
      log,
    });
    return { server, sent };
  }
  const request = (id: string): Extract<RelayMessage, { kind: 'request' }> => ({
    kind: 'request',
    id,
    from: 'caller',
    agentId: 'host-a',
    command: readKeys,
    timeoutMs: 1_000,
  });

  it('runs a request delivered twice once and replies once, to the caller', async () => {
    const dispatch = vi.fn((_a: string, _c: Command, o: DispatchOptions) => {
      const result = good();
      o.onResult?.(result);
      return Promise.resolve(result);
    });
    const { server, sent } = serverWith(dispatch);
    server.onRequest(request('caller/1'));
    server.onRequest(request('caller/1'));
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    await new Promise((r) => setTimeout(r, 10));
    expect(dispatch).toHaveBeenCalledTimes(1);
    expect(sent.map((s) => [s.target, s.message.kind])).toEqual([['caller', 'result']]);
  });

  it('passes a refusal back with its reason, and anything else as INTERNAL', async () => {
    const { server, sent } = serverWith((agentId) =>
      agentId === 'host-a'
        ? Promise.reject(resourceExhausted(ErrorReason.AGENT_BUSY, 'busy', { agent_id: agentId }))
        : Promise.reject(new Error('bug')),
    );
    server.onRequest(request('caller/1'));
    server.onRequest({ ...request('caller/2'), agentId: 'host-b' });
    await vi.waitFor(() => expect(sent).toHaveLength(2));
    expect(sent.map((s) => s.message)).toEqual([
      expect.objectContaining({
        kind: 'error',
        code: Status.RESOURCE_EXHAUSTED,
        reason: ErrorReason.AGENT_BUSY,
      }),
      expect.objectContaining({ kind: 'error', code: Status.INTERNAL }),
    ]);
  });
});

describe('Forwarder (caller side)', () => {
  function forwarderWith(owners: (string | null)[], receivers: number[]) {
    const sent: { target: string; message: RelayMessage }[] = [];
    const released: string[] = [];
    const presence = {
      owner: () => Promise.resolve(owners.length > 1 ? owners.shift()! : owners[0]!),
      releaseClaim: (_agentId: string, owner: string) => {
        released.push(owner);
        return Promise.resolve();
      },
    } as unknown as Presence;
    const pending = new PendingForwards(log);
    const forwarder = new Forwarder({
      instanceId: 'me',
      presence,
      pending,
      publish: (target, message) => {
        sent.push({ target, message });
        return Promise.resolve(receivers.length > 1 ? receivers.shift()! : receivers[0]!);
      },
      background,
      waitExtraMs: 50,
    });
    return { forwarder, pending, sent, released };
  }

  it('publishes the request to the owner and resolves with the reply', async () => {
    const { forwarder, pending, sent } = forwarderWith(['b'], [1]);
    const call = forwarder.forward('host-a', readKeys, { timeoutMs: 1_000, luId: 'lu-1' });
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]).toMatchObject({
      target: 'b',
      message: { kind: 'request', id: 'me/1', from: 'me', agentId: 'host-a', luId: 'lu-1' },
    });
    forwarder.onReply({ kind: 'result', id: 'me/1', result: good() });
    await expect(call).resolves.toMatchObject({ outcome: Outcome.OUTCOME_GOOD });
    expect(pending.size).toBe(0);
  });

  it('refuses with AGENT_OFFLINE, nothing sent, when the owner is gone and the agent is nowhere else', async () => {
    const { forwarder, released } = forwarderWith(['b'], [0]);
    await expect(forwarder.forward('host-a', readKeys, { timeoutMs: 1_000 })).rejects.toMatchObject(
      { code: Status.UNAVAILABLE, details: expect.stringContaining('is gone') as unknown },
    );
    expect(released).toEqual(['b']);
  });

  it('follows the agent once to where it re-attached when the owner says it lost it', async () => {
    const { forwarder, sent } = forwarderWith(['b', 'c'], [1]);
    const call = forwarder.forward('host-a', readKeys, { timeoutMs: 1_000 });
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    forwarder.onReply({
      kind: 'error',
      id: 'me/1',
      code: Status.UNAVAILABLE,
      details: 'not connected',
      reason: ErrorReason.AGENT_OFFLINE,
      domain: 'prfleet',
    });
    await vi.waitFor(() => expect(sent).toHaveLength(2));
    expect(sent[1]?.target).toBe('c');
    forwarder.onReply({ kind: 'result', id: 'me/1', result: good() });
    await expect(call).resolves.toMatchObject({ outcome: Outcome.OUTCOME_GOOD });
  });

  it('turns an unanswered request into UNKNOWN after timeout + the relay’s wait', async () => {
    const { forwarder, sent } = forwarderWith(['b'], [1]);
    const call = forwarder.forward('host-a', readKeys, { timeoutMs: 20 });
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    const result = await call;
    expect(result.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result.message).toContain('no reply from server instance b within 70 ms');
  });

  it('rejects an aborted caller at once and relays the cancel to the owner', async () => {
    const { forwarder, sent } = forwarderWith(['b'], [1]);
    const controller = new AbortController();
    const call = forwarder.forward('host-a', readKeys, {
      timeoutMs: 1_000,
      signal: controller.signal,
    });
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    controller.abort(new Error('caller left'));
    await expect(call).rejects.toThrow('caller left');
    await vi.waitFor(() => expect(sent).toHaveLength(2));
    expect(sent[1]).toEqual({
      target: 'b',
      message: { kind: 'cancel', id: 'me/1', from: 'me' },
    });
  });
});
