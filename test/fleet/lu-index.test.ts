import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { Hello } from '../../src/gen/prfleet/v1/agent.js';
import { AgentRegistry } from '../../src/server/agents/index.js';
import { listLogicalUnits, pathsByLu } from '../../src/server/devices.js';
import { fakePath } from '../server/fake-agent.js';

const log = createLogger({ level: 'silent', name: 'lu-index-test' });

function registry() {
  return new AgentRegistry({ heartbeatMs: 60_000, missedHeartbeats: 5, outboxCapacity: 16, log });
}

const listAll = (r: AgentRegistry) =>
  listLogicalUnits(r, { site: '', labels: [], loaderId: '' }).map((u) => [
    u.luId,
    u.paths.map((p) => `${p.agentId}:${p.path?.path ?? ''}`),
  ]);

describe('the LU index behind ListDevices, GetDevice, lu_id targets and audits', () => {
  it('is reused while no inventory changes, and follows every change of the agent set or of an inventory', () => {
    const r = registry();
    const a = r.open(Hello.fromPartial({ agentId: 'a' }));
    const b = r.open(Hello.fromPartial({ agentId: 'b' }));
    r.setInventory(a, [fakePath('/dev/sg1', 'lu-1'), fakePath('/dev/sg0', 'lu-0')]);
    r.setInventory(b, [fakePath('/dev/sg0', 'lu-1')]);
    const first = pathsByLu(r);
    expect(pathsByLu(r)).toBe(first); // nothing changed: not regrouped
    expect(listAll(r)).toEqual([
      ['lu-0', ['a:/dev/sg0']],
      ['lu-1', ['a:/dev/sg1', 'b:/dev/sg0']],
    ]);

    // A new inventory replaces the agent's paths.
    r.setInventory(b, [fakePath('/dev/sg0', 'lu-2')]);
    expect(pathsByLu(r)).not.toBe(first);
    expect(listAll(r)).toEqual([
      ['lu-0', ['a:/dev/sg0']],
      ['lu-1', ['a:/dev/sg1']],
      ['lu-2', ['b:/dev/sg0']],
    ]);

    // A new agent (even before its inventory) and then its inventory.
    const c = r.open(Hello.fromPartial({ agentId: 'c' }));
    expect(listAll(r)).toHaveLength(3);
    r.setInventory(c, [fakePath('/dev/sg9', 'lu-0')]);
    expect(
      pathsByLu(r)
        .get('lu-0')
        ?.map((p) => p.agent.hello.agentId),
    ).toEqual(['a', 'c']);

    // A disconnected agent's paths stay listed (offline), with its connection state read live.
    r.close(c, 'test');
    const lu0 = listLogicalUnits(r, { site: '', labels: [], loaderId: '' }).find(
      (u) => u.luId === 'lu-0',
    );
    expect(lu0?.paths.map((p) => [p.agentId, p.agentConnected])).toEqual([
      ['a', true],
      ['c', false],
    ]);
  });
});
