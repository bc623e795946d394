// The executor's parts on their own: the idempotency memory, admission, the per-path queues and the in-flight
// count, the watchdog and the device cache. The executor as a whole is covered by executor.test.ts.
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { CommandAdmission } from '../../agent/executor/admission.js';
import { DeviceCache } from '../../agent/executor/devices.js';
import { IdempotencyMemory } from '../../agent/executor/idempotency.js';
import { InFlightCount } from '../../agent/executor/in-flight.js';
import { PathQueues, type QueuedTask } from '../../agent/executor/path-queues.js';
import { Watchdog } from '../../agent/executor/watchdog.js';
import type { ScsiDevice, ScsiTransport } from '../../agent/transport/transport.js';
import { Command } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, PrinAction, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import { prin, prout } from './helpers.js';

const register = (key: string, commandId: string) =>
  prout(
    '/dev/sg0',
    { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: 1n },
    { idempotencyKey: key, commandId },
  );

describe('IdempotencyMemory', () => {
  it('holds a PROUT key while it runs, then keeps its outcome', () => {
    const memory = new IdempotencyMemory(10);
    const first = register('k', 'c1');
    expect(memory.refusal(first)).toBeUndefined();
    memory.begin(first);
    expect(memory.refusal(register('k', 'c2'))).toBe(
      'duplicate idempotency key "k": already running as command c1',
    );
    memory.settle(first, Outcome.OUTCOME_GOOD);
    expect(memory.refusal(register('k', 'c3'))).toBe(
      'duplicate idempotency key "k": already ran as command c1 with outcome OUTCOME_GOOD',
    );
  });

  it('releases the key when nothing reached the device (REFUSED, OS_ERROR)', () => {
    const memory = new IdempotencyMemory(10);
    for (const outcome of [Outcome.OUTCOME_REFUSED, Outcome.OUTCOME_OS_ERROR]) {
      const command = register('k', `c-${outcome}`);
      memory.begin(command);
      memory.settle(command, outcome);
      expect(memory.refusal(register('k', 'again'))).toBeUndefined();
      expect(memory.size).toBe(0);
    }
  });

  it('lets only the command holding the key settle it', () => {
    const memory = new IdempotencyMemory(10);
    memory.begin(register('k', 'holder'));
    memory.settle(register('k', 'other'), Outcome.OUTCOME_REFUSED);
    expect(memory.refusal(register('k', 'again'))).toMatch(/already running as command holder/);
  });

  it('ignores commands without a key and non-PROUT commands', () => {
    const memory = new IdempotencyMemory(10);
    const read = prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS, { idempotencyKey: 'k' });
    memory.begin(read);
    memory.begin(register('', 'c1'));
    expect(memory.size).toBe(0);
    expect(memory.refusal(read)).toBeUndefined();
  });

  it('forgets the least recently used key beyond its capacity', () => {
    const memory = new IdempotencyMemory(2);
    memory.begin(register('a', 'c1'));
    memory.begin(register('b', 'c2'));
    memory.begin(register('c', 'c3'));
    expect(memory.size).toBe(2);
    expect(memory.refusal(register('a', 'x'))).toBeUndefined();
    expect(memory.refusal(register('b', 'x'))).toBeDefined();
    expect(memory.refusal(register('c', 'x'))).toBeDefined();
  });
});

describe('CommandAdmission', () => {
  const admissionOf = (inFlight = 1, tasks = new Map<string, unknown>()) => {
    const idempotency = new IdempotencyMemory(10);
    const admission = new CommandAdmission({
      queueCapacity: 4,
      defaultTimeoutMs: 1234,
      idempotency,
      tasks,
      inFlight: () => inFlight,
    });
    admission.setPaths([{ path: '/dev/sg0', luId: 'lu-0' }]);
    return { admission, idempotency };
  };

  it('admits a valid command on a known path with its request and LU', () => {
    const admitted = admissionOf().admission.check(
      prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS),
    );
    expect(admitted.refusal).toBeUndefined();
    expect(admitted.luId).toBe('lu-0');
    if (admitted.refusal === undefined) {
      expect(admitted.request.cdb[0]).toBe(0x5e);
      expect(admitted.request.timeoutMs).toBe(1234);
    }
  });

  it('refuses, in order: unknown path, id in flight, invalid command, duplicate key, full queue', () => {
    const { admission, idempotency } = admissionOf();
    expect(admission.check(prin('/dev/sg9', PrinAction.PRIN_ACTION_READ_KEYS))).toEqual({
      refusal: 'path "/dev/sg9" is not in this agent\'s inventory',
      luId: '',
    });
    const inFlight = admissionOf(1, new Map([['busy', {}]])).admission;
    expect(
      inFlight.check(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS, { commandId: 'busy' })),
    ).toEqual({ refusal: 'command id busy is already in flight', luId: 'lu-0' });
    expect(
      admission.check(Command.fromPartial({ commandId: 'empty', path: '/dev/sg0' })).refusal,
    ).toMatch(/^invalid command: kind/);
    idempotency.begin(register('k', 'c1'));
    expect(admission.check(register('k', 'c2')).refusal).toMatch(/duplicate idempotency key/);
    expect(
      admissionOf(5).admission.check(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS)),
    ).toEqual({ refusal: 'agent queue full (4 commands)', luId: 'lu-0' });
  });

  it('forgets paths that setPaths no longer lists', () => {
    const { admission } = admissionOf();
    admission.setPaths([{ path: '/dev/sg1', luId: 'lu-1' }]);
    expect(admission.check(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS)).refusal).toMatch(
      /not in this agent's inventory/,
    );
  });
});

interface TestTask extends QueuedTask {
  readonly name: string;
  state: QueuedTask['state'];
  deadline: number;
}

/** A queue whose runs finish when the test says so; records what started and what expired. */
function controlledQueues(concurrency: number) {
  const started: string[] = [];
  const expired: string[] = [];
  const finishers = new Map<string, () => void>();
  let onStart: (() => void) | undefined;
  const queues = new PathQueues<TestTask>(concurrency, {
    run: (task) =>
      new Promise<void>((resolve) => {
        started.push(task.name);
        finishers.set(task.name, resolve);
        onStart?.();
      }),
    expire: (task) => expired.push(task.name),
  });
  const task = (name: string, deadline = Date.now() + 60_000): TestTask => ({
    name,
    state: 'queued',
    deadline,
  });
  /** Waits until `count` tasks have started (their run was called). */
  const startedCount = (count: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (started.length >= count) resolve();
      };
      onStart = check;
      check();
    });
  const finish = (name: string) => finishers.get(name)?.();
  return { queues, started, expired, task, startedCount, finish };
}

describe('PathQueues', () => {
  it('runs one task per path in order, paths in parallel up to the concurrency', async () => {
    const q = controlledQueues(2);
    q.queues.push('A', q.task('a1'));
    q.queues.push('A', q.task('a2'));
    q.queues.push('B', q.task('b1'));
    q.queues.push('C', q.task('c1'));
    await q.startedCount(2);
    expect(q.started).toEqual(['a1', 'b1']);
    q.finish('a1');
    await q.startedCount(3);
    // c1 took the freed slot first: it waited for the semaphore before a2 did.
    expect(q.started).toEqual(['a1', 'b1', 'c1']);
    q.finish('b1');
    await q.startedCount(4);
    expect(q.started).toEqual(['a1', 'b1', 'c1', 'a2']);
    q.finish('c1');
    q.finish('a2');
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(q.queues.size).toBe(0);
  });

  it('skips a task cancelled while queued and expires one whose deadline passed', async () => {
    const q = controlledQueues(1);
    q.queues.push('A', q.task('a1'));
    const cancelled = q.task('a2');
    q.queues.push('A', cancelled);
    q.queues.push('A', q.task('late', Date.now() - 1));
    q.queues.push('A', q.task('a3'));
    await q.startedCount(1);
    cancelled.state = 'done';
    q.finish('a1');
    await q.startedCount(2);
    expect(q.started).toEqual(['a1', 'a3']);
    expect(q.expired).toEqual(['late']);
    q.finish('a3');
  });
});

describe('InFlightCount', () => {
  it('wakes idle() waiters when the count returns to zero', async () => {
    const count = new InFlightCount();
    await count.idle(); // nothing in flight: at once
    count.add();
    count.add();
    let idle = false;
    const waiting = count.idle().then(() => (idle = true));
    count.remove();
    await Promise.resolve();
    expect(idle).toBe(false);
    count.remove();
    await waiting;
    expect(idle).toBe(true);
    expect(count.value).toBe(0);
  });
});

describe('Watchdog', () => {
  it('expires each watched command when it is due, an earlier one first, and never one unwatched', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const watchdog = new Watchdog();
    const expired: string[] = [];
    const late = watchdog.watch(100, () => expired.push('late'));
    // Due before the timer armed for `late`: the timer moves to it.
    watchdog.watch(30, () => expired.push('early'));
    const answered = watchdog.watch(50, () => expired.push('answered'));
    watchdog.unwatch(answered);
    await vi.advanceTimersByTimeAsync(40);
    expect(expired).toEqual(['early']);
    await vi.advanceTimersByTimeAsync(60);
    expect(expired).toEqual(['early', 'late']);
    expect(watchdog.size).toBe(0);
    watchdog.unwatch(late); // already expired: nothing happens
    watchdog.watch(10, () => expired.push('next'));
    await vi.advanceTimersByTimeAsync(10);
    expect(expired).toEqual(['early', 'late', 'next']);
  });

  it('counts on the monotonic clock: a wall-clock step expires nothing early', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const watchdog = new Watchdog();
    const expired: string[] = [];
    watchdog.watch(100, () => expired.push('short'));
    watchdog.watch(1_000, () => expired.push('long'));
    vi.setSystemTime(Date.now() + 3_600_000); // NTP steps the wall clock an hour forward
    await vi.advanceTimersByTimeAsync(100);
    expect(expired).toEqual(['short']);
    await vi.advanceTimersByTimeAsync(900);
    expect(expired).toEqual(['short', 'long']);
  });
});

describe('DeviceCache', () => {
  const device = (path: string): ScsiDevice => ({
    path,
    execute: () => Promise.reject(new Error('not used')),
    close: async () => undefined,
  });

  it('hands out a device without a promise once its open succeeded, until it is dropped', async () => {
    const opens: string[] = [];
    const transport: ScsiTransport = {
      kind: 'emulated',
      open: async (path) => {
        opens.push(path);
        if (path === '/dev/sg9') throw new Error('ENODEV');
        return device(path);
      },
    };
    const cache = new DeviceCache(transport);
    const task = { abort: undefined };
    const opening = cache.open('/dev/sg0', task);
    expect(cache.opened('/dev/sg0')).toBeUndefined();
    const dev = await opening;
    expect(cache.opened('/dev/sg0')).toBe(dev);
    expect(await cache.open('/dev/sg0', task)).toBe(dev);
    await cache.drop('/dev/sg0');
    expect(cache.opened('/dev/sg0')).toBeUndefined();
    await expect(cache.open('/dev/sg9', task)).rejects.toThrow('ENODEV');
    expect(cache.opened('/dev/sg9')).toBeUndefined();
    await cache.open('/dev/sg0', task);
    expect(opens).toEqual(['/dev/sg0', '/dev/sg9', '/dev/sg0']);
  });

  it('does not keep a device whose open settles after the path was dropped', async () => {
    let release!: (d: ScsiDevice) => void;
    const transport: ScsiTransport = {
      kind: 'emulated',
      open: () => new Promise((r) => (release = r)),
    };
    const cache = new DeviceCache(transport);
    const opening = cache.open('/dev/sg0', { abort: undefined });
    const dropped = cache.drop('/dev/sg0'); // closes the device once its open settles
    release(device('/dev/sg0'));
    await opening;
    await dropped;
    expect(cache.opened('/dev/sg0')).toBeUndefined();
  });
});
