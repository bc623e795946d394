/**
 * The registration reconciler (issue 20, point 2) on the emulated fabric with real agents: it re-registers a
 * host's desired key when the agent reconnects, heals a partial registration, re-registers after a power cycle
 * (unit attention 29h), reacts to a changed nexus identity, never undoes a fence, lists instead of sending in
 * dry-run mode, and is rate-limited. Every PROUT it sends is a REGISTER in the history under its own actor.
 */
import { describe, expect, it } from 'vitest';
import { formatKey } from '../../src/common/key-layout.js';
import { createLogger } from '../../src/common/logger.js';
import { ProutAction, TransportId } from '../../src/gen/prfleet/v1/scsi.js';
import {
  RECONCILER_ACTOR,
  RegistrationReconciler,
  type ReconcilerSettings,
} from '../../src/server/fleet/registration-reconciler.js';
import { tapResults } from '../../src/server/router.js';
import { loadConfig } from '../../src/server/config.js';
import { startFleetHarness, type FleetHarness } from './harness.js';

const REG = ProutAction.PROUT_ACTION_REGISTER;

async function keys(h: FleetHarness, ...agents: string[]): Promise<Record<string, bigint>> {
  const out: Record<string, bigint> = {};
  for (const agentId of agents) {
    const r = await h.client.allocateKey({ site: 'dc1', agentId, purpose: 'backup', owner: 'ops' });
    out[agentId] = r.key?.key ?? 0n;
  }
  return out;
}

/** A harness whose router feeds unit attentions to a reconciler, started after the agents settled. */
async function withReconciler(settings: Partial<ReconcilerSettings> = {}) {
  const holder: { reconciler?: RegistrationReconciler } = {};
  const h = await startFleetHarness({
    wrapRouter: (r) => tapResults(r, (result) => holder.reconciler?.noteResult(result)),
  });
  const k = await keys(h, 'host-a', 'host-b');
  await h.client.setDesiredState({
    scope: { scope: { $case: 'loaderId', value: 'loader1' } },
    state: { registeredAgentIds: ['host-a', 'host-b'] },
    updatedBy: 'test',
  });
  const log = createLogger({ level: 'silent', name: 'reconciler-test' });
  const rec = new RegistrationReconciler(
    { commands: h.commands, devices: h.agents, store: h.store, log, instanceId: 'fleet-test' },
    {
      mode: 'on',
      cooldownMs: 0,
      maxPerMinute: 1000,
      debounceMs: 30,
      timeoutMs: 5_000,
      ...settings,
    },
  );
  holder.reconciler = rec;
  rec.start();
  return { h, k, rec };
}

/** Reconnects `host`'s agent (server side cut; the agent dials again) and waits for the reconciler. */
async function reconnect(h: FleetHarness, rec: RegistrationReconciler, host: string) {
  const inventory = nextInventory(h, host);
  h.cut(host);
  await inventory;
  await new Promise((r) => setTimeout(r, 60)); // the reconciler's debounce
  await rec.idle();
}

/** Resolves at `host`'s next inventory. */
function nextInventory(h: FleetHarness, host: string): Promise<void> {
  return new Promise((resolve) => {
    const off = h.agents.onChange((e) => {
      if (e.kind === 'inventory' && e.session.agentId === host) {
        off();
        resolve();
      }
    });
  });
}

function keysOn(h: FleetHarness, lu: string): string[] {
  return h.fabric
    .logicalUnit(lu)
    .snapshot()
    .registrations.map((r) => r.key)
    .sort();
}

async function reconcilerEntries(h: FleetHarness) {
  return (await h.store.history.list({ limit: 10_000 })).filter(
    (e) => e.actor === RECONCILER_ACTOR,
  );
}

describe('registration reconciler', { timeout: 120_000 }, () => {
  it('re-registers on reconnect, heals a partial registration, and re-registers after a power cycle (UA 29h)', async () => {
    const { h, k, rec } = await withReconciler();
    const A = formatKey(k['host-a'] ?? 0n);
    const B = formatKey(k['host-b'] ?? 0n);
    // host-a registered on one of its two changer paths only: partial.
    await h.prout('host-a', '/dev/sg0', { action: REG, serviceActionKey: k['host-a'] ?? 0n });

    await reconnect(h, rec, 'host-b');
    expect(keysOn(h, 'loader1-changer')).toEqual([A, B].sort());
    expect(keysOn(h, 'loader1-drive')).toEqual([B]);
    expect(keysOn(h, 'loader2-changer')).toEqual([]); // no desired state there: not its business

    await reconnect(h, rec, 'host-a');
    expect(keysOn(h, 'loader1-changer')).toEqual([A, A, B].sort()); // the second path healed
    expect(keysOn(h, 'loader1-drive')).toEqual([A, B].sort());
    const healed = rec.recent().filter((r) => r.agentId === 'host-a' && r.outcome === 'registered');
    expect(healed.map((r) => r.detail).join(' ')).toMatch(/\/dev\/sg1/);
    // (the changer has no READ FULL STATUS: which nexus holds the key is unknown, so REGISTER AND IGNORE EXISTING
    // KEY goes to both paths; the device keeps one registration per nexus)
    expect(healed[0]?.trigger).toBe('agent connected');

    // Power cycle without APTPL: every registration is gone; the next command meets UA 29h/00h.
    h.fabric.logicalUnit('loader1-drive').powerCycle();
    expect(keysOn(h, 'loader1-drive')).toEqual([]);
    await h.client.plan({ selector: { loaderIds: ['loader1'] } }); // reads through every path
    await new Promise((r) => setTimeout(r, 60));
    await rec.idle();
    expect(keysOn(h, 'loader1-drive')).toEqual([A, B].sort());
    expect(rec.recent().some((r) => /^unit attention .*on \/dev\/sg/.test(r.trigger))).toBe(true);

    const entries = await reconcilerEntries(h);
    expect(entries.length).toBeGreaterThanOrEqual(7);
    expect(new Set(entries.map((e) => e.action))).toEqual(
      new Set(['PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY']),
    );
    expect(entries.every((e) => e.outcome === 'OUTCOME_GOOD')).toBe(true);
    expect(entries[0]?.reason).toMatch(/^registration reconciler: agent connected/);
  });

  it('dry-run lists what it would register and sends nothing; a changed nexus identity triggers it', async () => {
    const { h, rec } = await withReconciler({ mode: 'dry-run' });
    const before = h.delivered.length;
    await reconnect(h, rec, 'host-b');
    expect(h.delivered.length).toBe(before);
    expect(keysOn(h, 'loader1-drive')).toEqual([]);
    const would = rec.recent().filter((r) => r.outcome === 'would-register');
    expect(would.map((r) => `${r.agentId} ${r.detail.replace(/0x\w+/, 'K')}`).sort()).toEqual([
      expect.stringMatching(/^host-b K on \/dev\/sg0 \(operation reconcile:/),
      expect.stringMatching(/^host-b K on \/dev\/sg1 \(operation reconcile:/),
    ]);

    // The same path now reports another initiator port (a new ISID / HBA port): a new nexus to register.
    const session = h.agents.session('host-b');
    const paths = h.agents.get('host-b')?.paths ?? [];
    const moved = paths.map((p) =>
      p.path === '/dev/sg1'
        ? {
            ...p,
            initiatorPort: TransportId.fromPartial({
              id: { $case: 'sas', value: { sasAddress: 0x500605b000000b99n } },
            }),
          }
        : p,
    );
    if (session) h.agents.setInventory(session, moved);
    await new Promise((r) => setTimeout(r, 60));
    await rec.idle();
    expect(rec.recent().at(-1)?.trigger).toBe('nexus identity of /dev/sg1 changed');
  });

  it('is rate-limited: at most maxPerMinute (host, LU) pairs a minute, the rest wait', async () => {
    const { h, rec } = await withReconciler({ maxPerMinute: 1 });
    const inventory = nextInventory(h, 'host-b');
    h.cut('host-b');
    await inventory;
    await new Promise((r) => setTimeout(r, 300));
    const done = rec.recent().filter((r) => r.agentId === 'host-b');
    expect(done).toHaveLength(1); // the second LU waits for the next minute
    await rec.stop();
  });
  // Last: its preemption stays in the file's shared history (keys repeat across tests after the registry is emptied).
  it('never undoes a fence: a key preempted by a takeover stays off after its host reconnects', async () => {
    const { h, k, rec } = await withReconciler();
    await reconnect(h, rec, 'host-b');
    expect(keysOn(h, 'loader1-drive')).toEqual([formatKey(k['host-b'] ?? 0n)]);
    for await (const _ of h.client.takeover({
      selector: { loaderIds: ['loader1'] },
      victim: { $case: 'victimAgentId', value: 'host-b' },
      agentId: 'host-a',
      abort: true,
      force: true,
      options: { reason: 'fenced by the cluster' },
    }));
    expect(keysOn(h, 'loader1-drive')).toEqual([formatKey(k['host-a'] ?? 0n)]);
    await reconnect(h, rec, 'host-b');
    expect(keysOn(h, 'loader1-drive')).toEqual([formatKey(k['host-a'] ?? 0n)]);
    const skipped = rec.recent().filter((r) => r.agentId === 'host-b' && r.outcome === 'skipped');
    expect(skipped.map((r) => r.detail)).toContainEqual(
      expect.stringMatching(/was preempted by 0x\w+ \(history #\d+, .*\): a fence is not undone/),
    );
  });
});

describe('reconciler settings', () => {
  it('is off by default; PRFLEET_RECONCILER takes dry-run or on, and refuses anything else', () => {
    expect(loadConfig({}).reconciler).toEqual({
      mode: 'off',
      cooldownMs: 60_000,
      maxPerMinute: 120,
    });
    expect(
      loadConfig({ PRFLEET_RECONCILER: 'dry-run', PRFLEET_RECONCILER_MAX_PER_MINUTE: '10' })
        .reconciler,
    ).toMatchObject({ mode: 'dry-run', maxPerMinute: 10 });
    expect(() => loadConfig({ PRFLEET_RECONCILER: 'yes' })).toThrow(/PRFLEET_RECONCILER/);
  });
});
