// The agent link, registry, liveness and rotation without sockets: what they promise the router and the
// transports, driven with explicit times instead of waiting for timers.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Command, Hello } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, type CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import { AgentSession } from '../../src/server/agents/link.js';
import { AgentRegistry } from '../../src/server/agents/registry.js';

const log = pino({ level: 'silent' });
const hello = (agentId = 'host-a') =>
  Hello.fromPartial({ agentId, hostname: `${agentId}.example` });
const command = (commandId: string) => Command.fromPartial({ commandId, path: '/dev/sg2' });

function results(): { settled: CommandResult[]; settle: (r: CommandResult) => void } {
  const settled: CommandResult[] = [];
  return { settled, settle: (r) => settled.push(r) };
}

function registry(options: Partial<{ heartbeatMs: number; missedHeartbeats: number }> = {}) {
  return new AgentRegistry({
    heartbeatMs: options.heartbeatMs ?? 1000,
    missedHeartbeats: options.missedHeartbeats ?? 3,
    outboxCapacity: 4,
    log,
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

  it('drops a session silent for more than heartbeat × missed heartbeats', () => {
    const agents = registry({ heartbeatMs: 1000, missedHeartbeats: 3 });
    const session = agents.open(hello());
    session.touch(10_000);
    expect(agents.checkLiveness(13_000)).toBe(0);
    expect(agents.checkLiveness(13_001)).toBe(1);
    expect(session.isEnded).toBe(true);
    expect(session.endReason).toBe('agent sent nothing for 3001 ms');
  });

  it('rotates a stream past its maximum age, then closes it past the grace; the agent counts as coming back', () => {
    const agents = new AgentRegistry({
      heartbeatMs: 1000,
      missedHeartbeats: 3,
      outboxCapacity: 4,
      log,
      maxStreamAgeMs: 1000,
      rotationGraceMs: 400,
      rotationWaitMs: 60_000,
    });
    const session = agents.open(hello());
    const t0 = session.connectedAt.getTime();
    expect(session.maxAgeMs).toBeGreaterThanOrEqual(900);
    expect(session.maxAgeMs).toBeLessThanOrEqual(1000);
    expect(agents.checkStreamAge(t0 + 500)).toBe(0);
    session.send(command('c1'), 'lu', () => {});
    expect(agents.checkStreamAge(t0 + 1000)).toBe(1);
    expect(agents.isRotating('host-a')).toBe(true);
    expect(session.reconnectSent).toBe(false); // a command is in flight
    agents.checkStreamAge(t0 + 1000 + 201); // past half the grace: Reconnect anyway
    expect(session.reconnectSent).toBe(true);
    agents.checkStreamAge(t0 + 1000 + 401);
    expect(session.isEnded).toBe(true);
    expect(agents.isRotating('host-a')).toBe(true); // expected back for rotationWaitMs
    agents.open(hello());
    expect(agents.isRotating('host-a')).toBe(false);
  });
});
