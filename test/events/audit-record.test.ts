/**
 * Recording an audit's findings: a scope whose write fails (a store error, a value the database refuses) is
 * logged and skipped; the audit's other LUs still get their FINDING_RAISED events (the whole audit used to stop
 * at the first failed write, so every later finding was lost to Watch and webhooks).
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/common/logger.js';
import { Finding, FindingKind, Severity } from '../../src/gen/prfleet/v1/fleet.js';
import type { FleetEvent } from '../../src/gen/prfleet/v1/events.js';
import { AgentRegistry } from '../../src/server/agents/index.js';
import { createMemoryEventLog } from '../../src/server/events/memory-log.js';
import { createMemoryObservedStates } from '../../src/server/events/observed.js';
import { LuObserver, OBSERVER_DEFAULTS } from '../../src/server/events/observer.js';
import { createInProcessRouter } from '../../src/server/router.js';

describe('recording an audit', () => {
  it('records every other scope when one write fails, and logs the failed one', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({
      level: 'error',
      destination: { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) },
    });
    const registry = new AgentRegistry({
      heartbeatMs: 10_000,
      missedHeartbeats: 3,
      outboxCapacity: 16,
      log,
    });
    const router = createInProcessRouter({ registry, log, instanceId: 'audit-record' });
    const states = createMemoryObservedStates(createMemoryEventLog());
    const observed = {
      ...states,
      update: (...args: Parameters<typeof states.update>) =>
        args[1].luId === 'lu-2'
          ? Promise.reject(new Error('invalid input syntax for type json'))
          : states.update(...args),
    };
    const delivered: FleetEvent[] = [];
    const observer = new LuObserver({
      registry,
      router,
      observed,
      log,
      settings: OBSERVER_DEFAULTS,
      onEvents: (events) => delivered.push(...events),
    });
    const finding = (luId: string) =>
      Finding.fromPartial({
        kind: FindingKind.FINDING_KIND_UNKNOWN_KEY,
        severity: Severity.SEVERITY_WARNING,
        luId,
        message: `a path of ${luId} holds an unknown key`,
      });
    const units = ['lu-1', 'lu-2', 'lu-3'].map((luId) => ({
      luId,
      loaderId: '',
      findings: [finding(luId)],
    }));

    const recorded = await observer.recordAudit({ units, loaderFindings: [] });

    const lus = (events: readonly FleetEvent[]) => events.map((e) => e.luId).sort();
    expect(lus(recorded)).toEqual(['lu-1', 'lu-3']);
    expect(lus(delivered)).toEqual(['lu-1', 'lu-3']);
    expect((await states.list()).map((o) => o.luId).sort()).toEqual(['lu-1', 'lu-3']);
    expect(lines).toEqual([
      expect.objectContaining({ luId: 'lu-2', msg: 'events: recording an audit finding failed' }),
    ]);
  });
});
