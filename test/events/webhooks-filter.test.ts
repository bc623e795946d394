// A webhook's site and loader filter, resolved against the inventory: what it knows is filtered as Watch does;
// what it does not know yet (agents reconnecting after a restart) is delivered rather than skipped for good.
import { describe, expect, it } from 'vitest';
import { EventKind, FleetEvent } from '../../src/gen/prfleet/v1/events.js';
import type { FleetContext } from '../../src/server/events/context.js';
import { webhookFilter } from '../../src/server/webhooks/dispatcher.js';

const context: FleetContext = {
  siteOf: (agentId) => ({ 'host-a': 'dc1', 'host-c': 'dc2' })[agentId] ?? '',
  loaderOf: (luId) => ({ lu1: 'loader1', lu2: 'loader2' })[luId] ?? '',
  sitesOf: (luId) => ({ lu1: ['dc1', 'dc2'], lu2: ['dc1'], disk: ['dc1'] })[luId] ?? [],
};
const filter = (f: { site?: string; loaderIds?: string[] }) =>
  webhookFilter(
    { filter: { kinds: [], site: '', loaderIds: [], luIds: [], agentIds: [], ...f } },
    context,
  ).predicate;
const ev = (e: Partial<FleetEvent>) =>
  FleetEvent.fromPartial({ kind: EventKind.EVENT_KIND_PROUT, ...e });

describe('webhook filters', () => {
  it('filters by loader what the inventory knows, and delivers LUs it does not know yet', () => {
    const loader2 = filter({ loaderIds: ['loader2'] });
    expect(loader2(ev({ luId: 'lu2' }))).toBe(true);
    expect(loader2(ev({ luId: 'lu1' }))).toBe(false);
    expect(loader2(ev({ luId: 'disk' }))).toBe(false); // known, in no loader
    expect(loader2(ev({ luId: '' }))).toBe(false);
    expect(loader2(ev({ luId: 'not-yet-reported' }))).toBe(true);
    expect(loader2(ev({ luId: 'not-yet-reported', loaderId: 'loader1' }))).toBe(false);
  });

  it('filters by site as Watch does, and delivers events of agents and LUs not known yet', () => {
    const dc2 = filter({ site: 'dc2' });
    expect(dc2(ev({ agentId: 'host-c', luId: 'lu2' }))).toBe(true);
    expect(dc2(ev({ agentId: 'host-a', luId: 'lu1' }))).toBe(true); // an LU dc2 sees
    expect(dc2(ev({ agentId: 'host-a', luId: 'lu2' }))).toBe(false);
    const connected = EventKind.EVENT_KIND_AGENT_CONNECTED;
    expect(dc2(ev({ kind: connected, agentId: 'host-a' }))).toBe(false);
    expect(dc2(ev({ kind: connected, agentId: 'host-new' }))).toBe(true);
    expect(dc2(ev({ kind: connected, agentId: 'host-new', site: 'dc1' }))).toBe(false);
    expect(dc2(ev({ agentId: 'host-new', luId: 'unknown-lu' }))).toBe(true);
    expect(dc2(ev({ agentId: 'host-a', luId: 'unknown-lu' }))).toBe(false);
  });
});
