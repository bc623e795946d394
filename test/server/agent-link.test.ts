// The agent link, registry, liveness and rotation without sockets: what they promise the router and the
// transports, driven by a manual clock instead of waiting for timers.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Command, Hello } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, type CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import { AgentSession } from '../../src/server/agents/link.js';
import { AgentRegistry } from '../../src/server/agents/registry.js';
import { ManualClock } from '../helpers/clock.js';

const log = pino({ level: 'silent' });
const hello = (agentId = 'host-a') =>
  Hello.fromPartial({ agentId, hostname: `${agentId}.example` });
const command = (commandId: string) => Command.fromPartial({ commandId, path: '/dev/sg2' });

function results(): { settled: CommandResult[]; settle: (r: CommandResult) => void } {
  const settled: CommandResult[] = [];
  return { settled, settle: (r) => settled.push(r) };
}

function registry(
  options: Partial<{ heartbeatMs: number; missedHeartbeats: number; clock: ManualClock }> = {},
) {
  return new AgentRegistry({
    heartbeatMs: options.heartbeatMs ?? 1000,
    missedHeartbeats: options.missedHeartbeats ?? 3,
    outboxCapacity: 4,
    log,
    clock: options.clock ?? new ManualClock(),
  });
}

describe('AgentSession (the link to one agent)', () => {
  it('refuses a command once capacity commands are queued or in flight, and after its end', () => {
    const link = new AgentSession(hello(), 2);
    const { settle } = results();
    expect(link.send(command('c1'), 'lu', settle)).toBe(true);
    expect(link.send(command('c2'), 'lu', settle)).toBe(true);
    expect(link.send(command('c3'), 'lu', settle)).toBe(false);
    expect(link.inFlight).toBe(2);
    link.outbox.take();
    link.outbox.take(); // taken by the transport, still in flight: the bound still holds
    expect(link.send(command('c3'), 'lu', settle)).toBe(false);
    link.forget('c1');
    expect(link.send(command('c3'), 'lu', settle)).toBe(true);
    link.end('gone');
    expect(link.send(command('c4'), 'lu', settle)).toBe(false);
    expect(link.pendingCommand('c4')).toBeUndefined();
  });

  it('queues a cancel even when the outbox is full', () => {
    const link = new AgentSession(hello(), 2);
    link.send(command('c1'), 'lu', () => {});
    link.send(command('c2'), 'lu', () => {});
    link.cancel('c2');
    expect(link.queued).toBe(3);
    const messages = [link.outbox.take(), link.outbox.take(), link.outbox.take()];
    expect(messages[2]?.message).toEqual({ $case: 'cancel', value: { commandId: 'c2' } });
  });

  it('settles every command in flight as UNKNOWN exactly once when it ends, and closes the outbox', () => {
    const link = new AgentSession(hello(), 8);
    const { settled, settle } = results();
    link.send(command('c1'), 'lu', settle);
    link.send(command('c2'), 'lu', settle);
    link.end('agent stream ended');
    link.end('again');
    expect(settled.map((r) => [r.commandId, r.outcome])).toEqual([
      ['c1', Outcome.OUTCOME_UNKNOWN],
      ['c2', Outcome.OUTCOME_UNKNOWN],
    ]);
    expect(settled[0]?.message).toContain('agent stream ended');
    expect(link.endReason).toBe('agent stream ended');
    expect(link.inFlight).toBe(0);
    expect(link.outbox.isClosed).toBe(true);
  });

  it('sends the rotation Reconnect once nothing is in flight, and only once', () => {
    const link = new AgentSession(hello(), 8);
    link.send(command('c1'), 'lu', () => {});
    link.outbox.take();
    link.startRotation();
    expect(link.rotating).toBe(true);
    expect(link.reconnectSent).toBe(false);
    link.forget('c1');
    expect(link.reconnectSent).toBe(true);
    link.sendReconnect();
    expect(link.outbox.take()?.message?.$case).toBe('reconnect');
    expect(link.outbox.take()).toBeUndefined();
    link.askToReconnect('server shutting down'); // the server's own reasons go out every time
    expect(link.outbox.take()?.message).toEqual({
      $case: 'reconnect',
      value: { reason: 'server shutting down' },
    });
  });

  it('calls a callback reader once when the outbox gets a message or closes, and keeps nothing when it need not wait', () => {
    const link = new AgentSession(hello(), 8);
    let woken = 0;
    const wake = () => (woken += 1);
    link.askToReconnect('first');
    expect(link.outbox.callWhenReadable(wake)).toBe(false); // a message is queued: read it now
    link.outbox.take();
    expect(link.outbox.callWhenReadable(wake)).toBe(true);
    expect(woken).toBe(0);
    link.send(command('c1'), 'lu', () => {});
    link.send(command('c2'), 'lu', () => {});
    expect(woken).toBe(1); // once: the second message finds no reader waiting
    link.outbox.take();
    link.outbox.take();
    expect(link.outbox.callWhenReadable(wake)).toBe(true);
    link.end('gone');
    expect(woken).toBe(2);
    expect(link.outbox.callWhenReadable(wake)).toBe(false); // closed: nothing left to wait for
  });
});

describe('AgentRegistry (lookup, events, liveness, rotation)', () => {
  it('replaces an agent’s session with a newer one, ending the old one, and tells listeners', () => {
    const agents = registry();
    const events: string[] = [];
    agents.onChange((e) => events.push(`${e.kind}:${e.session.sessionId.slice(0, 4)}`));
    const first = agents.open(hello());
    const { settled, settle } = results();
    first.send(command('c1'), 'lu', settle);
    const second = agents.open(hello());
    expect(first.isEnded).toBe(true);
    expect(settled[0]?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(agents.session('host-a')).toBe(second);
    agents.close(first, 'late close'); // already ended: no event, the agent stays connected
    expect(agents.session('host-a')).toBe(second);
    agents.close(second, 'agent closed its stream');
    expect(agents.session('host-a')).toBeUndefined();
    expect(agents.get('host-a')?.lastSessionId).toBe(second.sessionId);
    expect(events.map((e) => e.split(':')[0])).toEqual(['opened', 'opened', 'closed']);
  });

  it('drops a session silent for more than heartbeat × missed heartbeats', async () => {
    const clock = new ManualClock();
    const agents = registry({ heartbeatMs: 1000, missedHeartbeats: 3, clock });
    const session = agents.open(hello());
    await clock.advance(10_000);
    session.touch();
    await clock.advance(3_000);
    expect(agents.checkLiveness()).toBe(0);
    await clock.advance(1);
    expect(agents.checkLiveness()).toBe(1);
    expect(session.isEnded).toBe(true);
    expect(session.endReason).toBe('agent sent nothing for 3001 ms');
  });

  it('runs the liveness check on the clock’s timers every half heartbeat once started, and not after stop', async () => {
    const clock = new ManualClock();
    const agents = registry({ heartbeatMs: 1000, missedHeartbeats: 3, clock });
    const quiet = agents.open(hello('host-a'));
    const talking = agents.open(hello('host-b'));
    agents.startLivenessChecks();
    for (let i = 0; i < 6; i++) {
      await clock.advance(500);
      talking.touch();
    }
    expect(quiet.isEnded).toBe(false); // silent exactly 3000 ms: not more than the limit
    await clock.advance(500); // the next check finds it silent 3500 ms
    expect(quiet.isEnded).toBe(true);
    expect(quiet.endReason).toBe('agent sent nothing for 3500 ms');
    expect(talking.isEnded).toBe(false);
    agents.stopLivenessChecks();
    expect(clock.pending).toBe(0);
    await clock.advance(10_000);
    expect(talking.isEnded).toBe(false);
  });

  it('rotates a stream past its maximum age, then closes it past the grace; the agent counts as coming back', async () => {
    const clock = new ManualClock();
    const agents = new AgentRegistry({
      heartbeatMs: 1000,
      missedHeartbeats: 3,
      outboxCapacity: 4,
      log,
      maxStreamAgeMs: 1000,
      rotationGraceMs: 400,
      rotationWaitMs: 60_000,
      clock,
    });
    const session = agents.open(hello());
    expect(session.connectedAt.getTime()).toBe(clock.now());
    expect(session.maxAgeMs).toBeGreaterThanOrEqual(900);
    expect(session.maxAgeMs).toBeLessThanOrEqual(1000);
    await clock.advance(500);
    expect(agents.checkStreamAge()).toBe(0);
    session.send(command('c1'), 'lu', () => {});
    await clock.advance(500);
    expect(agents.checkStreamAge()).toBe(1);
    expect(agents.isRotating('host-a')).toBe(true);
    expect(session.reconnectSent).toBe(false); // a command is in flight
    await clock.advance(200);
    agents.checkStreamAge();
    expect(session.reconnectSent).toBe(false); // not past half the grace yet
    await clock.advance(1);
    agents.checkStreamAge(); // past half the grace: Reconnect anyway
    expect(session.reconnectSent).toBe(true);
    await clock.advance(200);
    agents.checkStreamAge();
    expect(session.isEnded).toBe(true);
    expect(agents.isRotating('host-a')).toBe(true); // expected back for rotationWaitMs
    agents.open(hello());
    expect(agents.isRotating('host-a')).toBe(false);
  });

  it('counts a rotated-away agent as coming back for rotationWaitMs, and no longer after it', async () => {
    const clock = new ManualClock();
    const agents = new AgentRegistry({
      heartbeatMs: 1000,
      missedHeartbeats: 3,
      outboxCapacity: 4,
      log,
      rotationWaitMs: 5_000,
      clock,
    });
    const session = agents.open(hello());
    session.startRotation();
    agents.close(session, 'rotated');
    await clock.advance(5_000);
    expect(agents.isRotating('host-a')).toBe(true);
    await clock.advance(1);
    expect(agents.isRotating('host-a')).toBe(false);
  });

  it('holds a command while the agent rotates: until it is back, or at most the wait, polling on the clock', async () => {
    const clock = new ManualClock();
    const agents = registry({ clock });
    const session = agents.open(hello());
    session.startRotation();
    let back = false;
    const waiting = agents
      .waitWhileRotating('host-a', { timeoutMs: 1_000 })
      .then(() => (back = true));
    await clock.advance(500);
    expect(back).toBe(false);
    agents.open(hello()); // the next session: the wait ends at the next poll
    await clock.advance(20);
    expect(back).toBe(true);
    await waiting;

    agents.session('host-a')?.startRotation();
    let gaveUp = false;
    const bounded = agents
      .waitWhileRotating('host-a', { timeoutMs: 1_000 })
      .then(() => (gaveUp = true));
    await clock.advance(990);
    expect(gaveUp).toBe(false);
    await clock.advance(20);
    expect(gaveUp).toBe(true);
    expect(agents.isRotating('host-a')).toBe(true);
    await bounded;
  });
});
