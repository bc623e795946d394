import { describe, expect, it } from 'vitest';
import { createLuSerializer } from '../../src/server/lu-serializer.js';

function deferred() {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('LuSerializer', () => {
  it('runs work for one LU in arrival order, one at a time, and other LUs meanwhile', async () => {
    const lus = createLuSerializer();
    const log: string[] = [];
    const first = deferred();
    const a1 = lus.run('lu-a', async () => {
      log.push('a1 start');
      await first.promise;
      log.push('a1 end');
      return 1;
    });
    const a2 = lus.run('lu-a', async () => {
      log.push('a2');
      return 2;
    });
    const b1 = lus.run('lu-b', async () => {
      log.push('b1');
      return 3;
    });
    await b1;
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(['a1 start', 'b1']); // a2 waits for a1; b1 does not
    first.resolve();
    expect(await Promise.all([a1, a2])).toEqual([1, 2]);
    expect(log).toEqual(['a1 start', 'b1', 'a1 end', 'a2']);
  });

  it('passes a failure to its caller only; the next work still runs', async () => {
    const lus = createLuSerializer();
    const failing = lus.run('lu', () => Promise.reject(new Error('device gone')));
    const next = lus.run('lu', () => Promise.resolve('ran'));
    await expect(failing).rejects.toThrow('device gone');
    await expect(next).resolves.toBe('ran');
  });
});
