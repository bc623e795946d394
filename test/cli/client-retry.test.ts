// The clients' retry middleware on a manual clock: which calls it retries, and that it waits out the backoff on
// the clock it was given (the test moves time; nothing waits for a real timer).
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { isAbortError } from 'abort-controller-x';
import { ClientError, Status, type ClientMiddlewareCall } from 'nice-grpc-common';
import type { RetryOptions } from 'nice-grpc-client-middleware-retry';
import { retryMiddleware } from '../../src/common/retry.js';
import { ManualClock } from '../helpers/clock.js';

type Level = 'NO_SIDE_EFFECTS' | 'IDEMPOTENT' | undefined;

/** A unary call whose attempts answer `answers` in turn (a Status fails the attempt with it). */
function unaryCall(level: Level, answers: (Status | string)[]) {
  const attempts: number[] = [];
  const path = '/prfleet.v1.ControlService/ReadKeys';
  const call = {
    method: {
      path,
      requestStream: false,
      responseStream: false,
      options: { idempotencyLevel: level },
    },
    requestStream: false,
    responseStream: false,
    request: {},
    // A unary answer is the generator's return value: it yields nothing.
    next: async function* () {
      attempts.push(attempts.length);
      const answer = answers[attempts.length - 1];
      if (typeof answer === 'string') return answer;
      throw new ClientError(path, answer ?? Status.INTERNAL, 'failed');
    },
  } as unknown as ClientMiddlewareCall<object, string>;
  return { call, attempts };
}

/** Runs `call` through the retry middleware on `clock`; resolves with the answer or rejects with the error. */
async function run(
  clock: ManualClock,
  call: ClientMiddlewareCall<object, string>,
  options: RetryOptions & { signal?: AbortSignal } = {},
) {
  const generator = retryMiddleware(clock)(call, options);
  const step = await generator.next();
  return step.value as string;
}

/** Settles `promise` into a record the test can inspect while it is still pending. */
function watch<T>(promise: Promise<T>) {
  const state: { done: boolean; value?: T; error?: unknown } = { done: false };
  promise.then(
    (value) => Object.assign(state, { done: true, value }),
    (error: unknown) => Object.assign(state, { done: true, error }),
  );
  return state;
}

describe('retryMiddleware', () => {
  it('retries a NO_SIDE_EFFECTS call once after the backoff on its clock, not before', async () => {
    const clock = new ManualClock();
    const { call, attempts } = unaryCall('NO_SIDE_EFFECTS', [Status.UNAVAILABLE, 'keys']);
    const delays: number[] = [];
    const state = watch(
      run(clock, call, {
        retryBaseDelayMs: 1000,
        onRetryableError: (_e, _a, ms) => delays.push(ms),
      }),
    );
    await clock.advance(0);
    expect(attempts).toHaveLength(1);
    const [delayMs = 0] = delays;
    expect(delayMs).toBeGreaterThanOrEqual(500); // equal jitter: half the backoff, plus up to another half
    expect(delayMs).toBeLessThanOrEqual(1000);
    await clock.advance(delayMs - 1);
    expect(attempts).toHaveLength(1);
    expect(state.done).toBe(false);
    await clock.advance(1);
    expect(attempts).toHaveLength(2);
    expect(state).toEqual({ done: true, value: 'keys' });
  });

  it('doubles the backoff up to its cap and gives up after retryMaxAttempts retries', async () => {
    const clock = new ManualClock();
    const { call, attempts } = unaryCall('IDEMPOTENT', [
      Status.UNAVAILABLE,
      Status.UNAVAILABLE,
      Status.UNAVAILABLE,
      Status.UNAVAILABLE,
    ]);
    const random = vi.spyOn(Math, 'random').mockReturnValue(1); // the jitter's top: each wait is the whole backoff
    onTestFinished(() => {
      random.mockRestore();
    });
    const delays: number[] = [];
    const state = watch(
      run(clock, call, {
        retryMaxAttempts: 3,
        retryBaseDelayMs: 100,
        retryMaxDelayMs: 300,
        onRetryableError: (_e, _attempt, ms) => delays.push(ms),
      }),
    );
    await clock.advance(0);
    for (const [i, ms] of [100, 200, 300].entries()) {
      await clock.advance(ms - 1);
      expect(attempts).toHaveLength(i + 1);
      await clock.advance(1);
      expect(attempts).toHaveLength(i + 2);
    }
    expect(delays).toEqual([100, 200, 300]);
    expect(state.done).toBe(true);
    expect(state.error).toBeInstanceOf(ClientError);
    expect((state.error as ClientError).code).toBe(Status.UNAVAILABLE);
  });

  it('does not retry a method that may have side effects, nor a status that is not retryable', async () => {
    const clock = new ManualClock();
    const prout = unaryCall(undefined, [Status.UNAVAILABLE, 'again']);
    await expect(run(clock, prout.call)).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    expect(prout.attempts).toHaveLength(1);
    const refused = unaryCall('NO_SIDE_EFFECTS', [Status.FAILED_PRECONDITION, 'again']);
    await expect(run(clock, refused.call)).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
    });
    expect(refused.attempts).toHaveLength(1);
    expect(clock.pending).toBe(0);
  });

  it('ends the backoff with an AbortError when the caller aborts, without another attempt', async () => {
    const clock = new ManualClock();
    const { call, attempts } = unaryCall('NO_SIDE_EFFECTS', [Status.UNAVAILABLE, 'keys']);
    const caller = new AbortController();
    const state = watch(run(clock, call, { signal: caller.signal }));
    await clock.advance(100);
    caller.abort();
    await clock.advance(0);
    expect(state.done).toBe(true);
    expect(isAbortError(state.error)).toBe(true);
    expect(attempts).toHaveLength(1);
    expect(clock.pending).toBe(0);
  });
});
