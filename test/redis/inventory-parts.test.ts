// The shared inventory's parts that need no Redis: an agent's record as written and read back, the per-agent
// write order, and instance liveness over a scripted hash.
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { Hello } from '../../src/gen/prfleet/v1/agent.js';
import { AgentSession, type AgentRecord } from '../../src/server/agents/index.js';
import { agentFromHash, openedSessionHash } from '../../src/server/shared-inventory/agent-hash.js';
import { InstanceLiveness } from '../../src/server/shared-inventory/liveness.js';
import { WriteChains } from '../../src/server/shared-inventory/writer.js';
import { fakePath } from '../server/fake-agent.js';

const log = createLogger({ level: 'silent', name: 'inventory-parts' });
const session = () => new AgentSession(Hello.fromPartial({ agentId: 'host-a' }), 8);

describe('an agent’s record in Redis', () => {
  it('reads back what an opened session wrote, as another instance sees it', () => {
    const s = session();
    const paths = [fakePath('/dev/sg1', 'naa.5000e11100000001')];
    const hash = openedSessionHash(s, paths, 'inst-a');
    expect(hash).toMatchObject({ instance: 'inst-a', connected: '1', heartbeatAt: '' });
    const seen = agentFromHash(hash, 'inst-b', () => undefined);
    expect(seen).toMatchObject({
      sessionId: s.sessionId,
      instance: 'inst-a',
      connected: true,
      local: false,
    });
    expect(seen?.record.hello.agentId).toBe('host-a');
    expect(seen?.record.paths.map((p) => [p.path, p.luId])).toEqual([
      ['/dev/sg1', 'naa.5000e11100000001'],
    ]);
    expect(seen?.record.connectedAt.getTime()).toBe(s.connectedAt.getTime());
    expect(seen?.record.lastHeartbeatAt).toBeUndefined();
    expect(seen?.record.link).toBe('stream');
  });

  it('refers to this instance’s own record of the same session instead of decoding a copy', () => {
    const s = session();
    const hash = openedSessionHash(s, [], 'inst-a');
    const own = { lastSessionId: s.sessionId } as AgentRecord;
    expect(agentFromHash(hash, 'inst-a', () => own)).toMatchObject({ local: true, record: own });
    const older = { lastSessionId: 'an-older-session' } as AgentRecord;
    expect(agentFromHash(hash, 'inst-a', () => older)?.local).toBe(false);
  });

  it('is no record without hello or session, and throws on fields that do not decode', () => {
    expect(agentFromHash({ sessionId: 's' }, 'inst-a', () => undefined)).toBeUndefined();
    const bad = { ...openedSessionHash(session(), [], 'inst-a'), paths: '////' };
    expect(() => agentFromHash(bad, 'inst-b', () => undefined)).toThrow();
  });
});

describe('WriteChains', () => {
  it('runs one key’s writes in order, past a failure, and other keys alongside', async () => {
    const chains = new WriteChains(log);
    const order: string[] = [];
    let releaseFirst: () => void = () => {};
    chains.enqueue(
      'a',
      () =>
        new Promise<void>((resolve) => {
          releaseFirst = () => {
            order.push('a1');
            resolve();
          };
        }),
    );
    chains.enqueue('a', () => Promise.reject(new Error('write failed')));
    chains.enqueue('a', () => {
      order.push('a3');
      return Promise.resolve();
    });
    chains.enqueue('b', () => {
      order.push('b1');
      return Promise.resolve();
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(['b1']);
    releaseFirst();
    await chains.flushed();
    expect(order).toEqual(['b1', 'a1', 'a3']);
  });
});

describe('InstanceLiveness', () => {
  function livenessWith(times: Record<string, number>, closed = { value: false }) {
    const hash: Record<string, string> = Object.fromEntries(
      Object.entries(times).map(([k, v]) => [k, String(v)]),
    );
    const pub = {
      hset: (_key: string, id: string, value: string) => {
        hash[id] = value;
        return Promise.resolve(1);
      },
      hgetall: () => Promise.resolve({ ...hash }),
      hdel: (_key: string, id: string) => {
        delete hash[id];
        return Promise.resolve(1);
      },
    };
    const liveness = new InstanceLiveness({
      pub: pub as never,
      keys: { instances: 'x' },
      instanceId: 'me',
      ttlMs: 1_000,
      isClosed: () => closed.value,
    });
    return { liveness, hash };
  }

  it('counts an instance alive within the TTL, forgets one dead for long, and this one until it closes', async () => {
    const now = Date.now();
    const closed = { value: false };
    const { liveness, hash } = livenessWith(
      { fresh: now - 100, stale: now - 5_000, ancient: now - 200_000 },
      closed,
    );
    await liveness.refresh();
    expect(liveness.isAlive('fresh')).toBe(true);
    expect(liveness.isAlive('stale')).toBe(false);
    expect(liveness.isAlive('unknown')).toBe(false);
    expect(liveness.liveInstances().sort()).toEqual(['fresh', 'me']);
    expect(Object.keys(hash).sort()).toEqual(['fresh', 'me', 'stale']);
    closed.value = true;
    expect(liveness.isAlive('me')).toBe(false);
    await liveness.withdraw();
    expect(hash).not.toHaveProperty('me');
  });
});
