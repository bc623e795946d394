import { describe, expect, it } from 'vitest';
import { onAbort } from '../../src/common/abort-listeners.js';
import { Semaphore } from '../../src/common/semaphore.js';

describe('onAbort', () => {
  it('calls every listener still registered once, in order, and none that unregistered', () => {
    const controller = new AbortController();
    const calls: number[] = [];
    const offs = Array.from({ length: 5 }, (_, i) =>
      onAbort(controller.signal, () => calls.push(i)),
    );
    offs[1]?.();
    offs[3]?.();
    controller.abort();
    controller.abort();
    expect(calls).toEqual([0, 2, 4]);
  });

  it('never calls a listener added after the abort, and one that throws does not stop the others', async () => {
    const controller = new AbortController();
    const calls: string[] = [];
    const thrown: unknown[] = [];
    const onError = (e: unknown) => thrown.push(e);
    process.on('uncaughtException', onError);
    try {
      onAbort(controller.signal, () => {
        throw new Error('listener failed');
      });
      onAbort(controller.signal, () => calls.push('second'));
      controller.abort();
      onAbort(controller.signal, () => calls.push('late'));
      await new Promise((r) => setTimeout(r, 10));
    } finally {
      process.off('uncaughtException', onError);
    }
    expect(calls).toEqual(['second']);
    expect(thrown).toHaveLength(1);
  });

  it('adds and removes 50,000 listeners on one signal in linear time', () => {
    const controller = new AbortController();
    const started = performance.now();
    const offs = Array.from({ length: 50_000 }, () => onAbort(controller.signal, () => {}));
    for (const off of offs.reverse()) off();
    // EventTarget needs seconds for this (it scans its list per add); a Set needs a few ms even under load.
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe('Semaphore', () => {
  it('serves waiters in order, skips aborted ones, and frees their slots', async () => {
    const gate = new Semaphore(1);
    await gate.acquire();
    const order: string[] = [];
    const a = gate.acquire().then(() => order.push('a'));
    const controller = new AbortController();
    const b = gate.acquire(controller.signal).then(
      () => order.push('b'),
      (e: unknown) => order.push(`b aborted: ${String(e)}`),
    );
    const c = gate.acquire().then(() => order.push('c'));
    controller.abort('stop');
    await b;
    gate.release(); // → a
    await a;
    gate.release(); // → c (b was aborted)
    await c;
    gate.release();
    expect(order).toEqual(['b aborted: stop', 'a', 'c']);
    // All slots free again: limit acquires succeed at once.
    await gate.acquire();
  });

  it('tryAcquire takes a free slot at once and never one a waiter is queued for', async () => {
    const gate = new Semaphore(2);
    expect(gate.tryAcquire()).toBe(true);
    expect(gate.tryAcquire()).toBe(true);
    expect(gate.tryAcquire()).toBe(false);
    let waited = false;
    const waiter = gate.acquire().then(() => (waited = true));
    gate.release(); // → the waiter, not a later tryAcquire
    expect(gate.tryAcquire()).toBe(false);
    await waiter;
    expect(waited).toBe(true);
    gate.release();
    expect(gate.tryAcquire()).toBe(true);
  });

  it('keeps FIFO order across queue compaction with thousands of waiters', async () => {
    const gate = new Semaphore(1);
    await gate.acquire();
    const order: number[] = [];
    const all = Array.from({ length: 5_000 }, (_, i) => gate.acquire().then(() => order.push(i)));
    for (let i = 0; i < 5_000; i++) {
      gate.release();
      await Promise.resolve();
    }
    await Promise.all(all);
    expect(order).toEqual(Array.from({ length: 5_000 }, (_, i) => i));
  });
});
