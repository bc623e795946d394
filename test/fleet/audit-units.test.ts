/**
 * The pieces of an audit that stand alone (src/server/fleet/audit.ts): the request's limits, and the lanes that
 * bound how many LUs are in flight and wait while the client has a backlog.
 */
import { describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc-common';
import { AuditRequest } from '../../src/gen/prfleet/v1/fleet.js';
import { AsyncQueue } from '../../src/common/async-queue.js';
import { AUDIT_DEFAULTS, auditSettings, runLanes } from '../../src/server/fleet/audit.js';

describe('auditSettings', () => {
  it('fills in the defaults for an empty request', () => {
    expect(auditSettings(AuditRequest.fromPartial({}))).toEqual({
      maxConcurrency: AUDIT_DEFAULTS.maxConcurrency,
      maxPerAgent: AUDIT_DEFAULTS.maxPerAgent,
      timeoutMs: AUDIT_DEFAULTS.timeoutMs,
      progressMs: AUDIT_DEFAULTS.progressMs,
    });
  });

  it('refuses limits over the maximum and a non-positive timeout', () => {
    const over = AuditRequest.fromPartial({ maxConcurrency: 100_001 });
    expect(() => auditSettings(over)).toThrow(/max_concurrency/);
    const perAgent = AuditRequest.fromPartial({ maxPerAgent: 10_001 });
    expect(() => auditSettings(perAgent)).toThrow(/max_per_agent/);
    const timeout = AuditRequest.fromPartial({ commandTimeout: { seconds: -1n, nanos: 0 } });
    expect(() => auditSettings(timeout)).toThrow(
      expect.objectContaining({ code: Status.INVALID_ARGUMENT }),
    );
  });
});

describe('runLanes', () => {
  const signal = new AbortController().signal;

  it('visits every item once, with at most `lanes` in flight', async () => {
    const seen: number[] = [];
    let inFlight = 0;
    let most = 0;
    const items = Array.from({ length: 20 }, (_, i) => i);
    await runLanes(
      items,
      3,
      async (i) => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setImmediate(r));
        seen.push(i);
        inFlight -= 1;
      },
      new AsyncQueue<unknown>(100),
      10,
      signal,
    );
    expect(seen.sort((a, b) => a - b)).toEqual(items);
    expect(most).toBe(3);
  });

  it('stops taking items after the first failure and rejects with it', async () => {
    const seen: number[] = [];
    const run = runLanes(
      [0, 1, 2, 3, 4, 5],
      1,
      async (i) => {
        seen.push(i);
        if (i === 2) throw new Error('boom');
      },
      new AsyncQueue<unknown>(100),
      10,
      signal,
    );
    await expect(run).rejects.toThrow('boom');
    expect(seen).toEqual([0, 1, 2]);
  });

  it('holds lanes back while the queue is over the backlog', async () => {
    const out = new AsyncQueue<unknown>(100);
    const seen: number[] = [];
    const run = runLanes(
      [0, 1, 2, 3],
      2,
      async (i) => {
        seen.push(i);
        out.push(i);
      },
      out,
      1,
      signal,
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([0, 1]); // two queued, over the backlog of 1: both lanes wait
    const reader = setInterval(() => out.take(), 1); // the client reads again
    await run;
    clearInterval(reader);
    expect(seen).toEqual([0, 1, 2, 3]);
  });

  it('rejects with the abort reason once aborted', async () => {
    const ac = new AbortController();
    const run = runLanes(
      [0, 1, 2],
      1,
      async (i) => {
        if (i === 0) ac.abort(new Error('gone'));
      },
      new AsyncQueue<unknown>(100),
      10,
      ac.signal,
    );
    await expect(run).rejects.toThrow('gone');
  });
});
