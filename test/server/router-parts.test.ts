// The in-process router's parts that need no agent: the in-flight count behind drain, the command as sent, the
// result stamped from the server's own record, and the 'command done' line.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Command } from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome, PrinAction, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import { durationToMs } from '../../src/common/command.js';
import {
  commandToSend,
  InFlightCount,
  logCommandResult,
  stampResult,
} from '../../src/server/router.js';
import { captureLog } from '../helpers/log-capture.js';

const readKeys = Command.fromPartial({
  path: '/dev/sg1',
  kind: { $case: 'prin', value: { action: PrinAction.PRIN_ACTION_READ_KEYS } },
});
const register = Command.fromPartial({
  commandId: 'c-1',
  path: '/dev/sg2',
  idempotencyKey: 'idem-1',
  kind: {
    $case: 'prout',
    value: { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: 0xa1n },
  },
});

afterEach(() => {
  vi.useRealTimers();
});

describe('InFlightCount', () => {
  it('is idle at once with nothing in flight, and wakes its waiters when the last command settles', async () => {
    const count = new InFlightCount();
    await expect(count.whenIdle(1_000)).resolves.toBe(true);
    count.add();
    count.add();
    const idle = count.whenIdle(60_000);
    count.done();
    expect(count.value).toBe(1);
    count.done();
    await expect(idle).resolves.toBe(true);
    expect(count.value).toBe(0);
  });

  it('answers false when the time runs out first', async () => {
    vi.useFakeTimers();
    const count = new InFlightCount();
    count.add();
    const idle = count.whenIdle(500);
    vi.advanceTimersByTime(500);
    await expect(idle).resolves.toBe(false);
  });
});

describe('commandToSend', () => {
  it('keeps the caller’s kind (shared, not copied) and its trace context, with the id and timeout given', () => {
    const traced = { ...register, traceparent: '00-abc-def-01', tracestate: 'x=1' };
    const sent = commandToSend(traced, 'srv-7', 1_500);
    expect(sent.kind).toBe(traced.kind);
    expect(sent).toMatchObject({
      commandId: 'srv-7',
      path: '/dev/sg2',
      idempotencyKey: 'idem-1',
      traceparent: '00-abc-def-01',
      tracestate: 'x=1',
    });
    expect(durationToMs(sent.timeout!)).toBe(1_500);
  });
});

describe('stampResult', () => {
  it('overwrites what the agent says about the command with what the server sent', () => {
    const fromAgent = CommandResult.fromPartial({
      commandId: 'forged',
      agentId: 'someone-else',
      path: '/dev/other',
      luId: 'lu-other',
      idempotencyKey: 'other-key',
      outcome: Outcome.OUTCOME_GOOD,
    });
    const result = stampResult(fromAgent, register, 'host-a', 'lu-1');
    expect(result).toBe(fromAgent); // in place
    expect(result).toMatchObject({
      commandId: 'c-1',
      agentId: 'host-a',
      path: '/dev/sg2',
      luId: 'lu-1',
      idempotencyKey: 'idem-1',
      outcome: Outcome.OUTCOME_GOOD,
    });
  });
});

describe('logCommandResult', () => {
  const good = (command: Command) =>
    stampResult(
      CommandResult.fromPartial({ outcome: Outcome.OUTCOME_GOOD }),
      command,
      'host-a',
      'lu-1',
    );

  it('logs a PROUT at info with its keys and the actor, and a read at debug only', () => {
    const capture = captureLog('info');
    logCommandResult(capture.log, register, good(register), 12.4, false, 'ada');
    logCommandResult(capture.log, readKeys, good(readKeys), 3, false, undefined);
    const lines = capture.withMessage('command done');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      commandId: 'c-1',
      actor: 'ada',
      agentId: 'host-a',
      ms: 12,
      outcome: 'OUTCOME_GOOD',
      serviceActionKey: expect.stringMatching(/a1$/) as unknown,
      idempotencyKey: 'idem-1',
    });
    expect(lines[0]).not.toHaveProperty('abandoned');
  });

  it('logs an UNKNOWN read at info, marked abandoned when the caller gave up', () => {
    const capture = captureLog('info');
    const unknown = stampResult(
      CommandResult.fromPartial({ outcome: Outcome.OUTCOME_UNKNOWN, message: 'no answer' }),
      readKeys,
      'host-a',
      '',
    );
    logCommandResult(capture.log, readKeys, unknown, 1, true, undefined);
    expect(capture.withMessage('command done')[0]).toMatchObject({
      outcome: 'OUTCOME_UNKNOWN',
      abandoned: true,
      detail: 'no answer',
    });
  });
});
