import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ProutAction, PrType, Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import {
  FindingKind,
  KeyStatus,
  Reachability,
  RegistrationState,
  Severity,
  type AuditResponse,
  type AuditSummary,
  type LogicalUnitReport,
} from '../../src/gen/prfleet/v1/fleet.js';
import { startFleetHarness, type FleetHarness } from './harness.js';
import { createMetrics } from '../../src/server/metrics.js';
import { transportIdToProto } from '../../src/common/command.js';

const REG = ProutAction.PROUT_ACTION_REGISTER;
const RESERVE = ProutAction.PROUT_ACTION_RESERVE;
const PREEMPT = ProutAction.PROUT_ACTION_PREEMPT;
const EA = PrType.PR_TYPE_EXCLUSIVE_ACCESS;
const WE = PrType.PR_TYPE_WRITE_EXCLUSIVE;
/** One LIO LU reached by two hosts (test/fleet/fabric-lio.yaml). */
const LIO_FABRIC = fileURLToPath(new URL('./fabric-lio.yaml', import.meta.url));
/** A hand-chosen key nobody registered with the registry (as sg_persist examples use). */
const STRAY = 0x1234n;

async function audit(h: FleetHarness, selector = {}) {
  const events: AuditResponse[] = [];
  for await (const e of h.client.audit({ selector, maxPerAgent: 2, maxConcurrency: 8 }))
    events.push(e);
  const reports = events.flatMap((e) => (e.event?.$case === 'report' ? [e.event.value] : []));
  const summary = events.flatMap((e) =>
    e.event?.$case === 'summary' ? [e.event.value] : [],
  )[0] as AuditSummary;
  const progress = events.filter((e) => e.event?.$case === 'progress');
  return { reports, summary, progress };
}

function byLu(
  reports: readonly LogicalUnitReport[],
  fabricLu: string,
  h: FleetHarness,
): LogicalUnitReport {
  const serial = h.fabric.spec.loaders
    .flatMap((l) => [l.changer, ...l.drives])
    .find((lu) => lu.id === fabricLu)?.serial;
  const report = reports.find((r) => r.serial === serial);
  if (!report) throw new Error(`no report for ${fabricLu}`);
  return report;
}

async function good(p: Promise<{ outcome: Outcome; message: string }>) {
  const r = await p;
  expect(r.outcome, r.message).toBe(Outcome.OUTCOME_GOOD);
}

describe('fleet audit', { timeout: 120_000 }, () => {
  it('reports every LU through every path with keys, owners, holder and generation, and finds nothing on a clean fabric', async () => {
    const h = await startFleetHarness();
    const a = await h.client.allocateKey({
      site: 'dc1',
      agentId: 'host-a',
      purpose: 'backup',
      owner: 'backup-team',
    });
    const key = a.key?.key ?? 0n;
    await good(h.prout('host-b', '/dev/sg3', { action: REG, serviceActionKey: 0n })); // no-op: nothing registered
    await good(h.prout('host-a', '/dev/sg2', { action: REG, serviceActionKey: key }));
    await good(h.prout('host-a', '/dev/sg2', { action: RESERVE, reservationKey: key, type: WE }));
    const { reports, summary, progress } = await audit(h);
    expect(reports).toHaveLength(4);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    const drive = byLu(reports, 'loader1-drive', h);
    expect(drive.reachability).toBe(Reachability.REACHABILITY_REACHABLE);
    expect(drive.fullStatus).toBe(true);
    expect(drive.generation).toBe(1);
    expect(drive.reserved).toBe(true);
    expect(drive.holderKey).toBe(key);
    expect(drive.type).toBe(WE);
    expect(drive.holderAgentId).toBe('host-a');
    expect(drive.holder?.status).toBe(KeyStatus.KEY_STATUS_VALID);
    expect(drive.holder?.owner).toBe('backup-team');
    expect(drive.keys).toEqual([expect.objectContaining({ key, nexusCount: 1 })]);
    expect(drive.paths.map((p) => `${p.agentId}:${p.path}:${p.registration}:${p.holder}`)).toEqual([
      `host-a:/dev/sg2:${RegistrationState.REGISTRATION_STATE_REGISTERED}:true`,
      `host-b:/dev/sg1:${RegistrationState.REGISTRATION_STATE_NOT_REGISTERED}:false`,
      `host-c:/dev/sg1:${RegistrationState.REGISTRATION_STATE_NOT_REGISTERED}:false`,
    ]);
    expect(drive.findings).toEqual([]);
    expect(summary.logicalUnits).toBe(4);
    expect(summary.reachable).toBe(4);
    expect(summary.paths).toBe(13);
    expect(summary.pathsReachable).toBe(13);
    expect(summary.findingCounts).toEqual([]);
    expect(summary.commandsSent).toBeGreaterThanOrEqual(13);
  });

  it('produces every finding kind from real emulated situations', async () => {
    const metrics = createMetrics();
    const h = await startFleetHarness({
      onAuditFindings: (counts) => metrics.setAuditFindings(counts),
    });
    const keyOf = async (agentId: string, purpose = 'backup') =>
      (await h.client.allocateKey({ site: 'dc1', agentId, purpose, owner: 'ops' })).key?.key ?? 0n;
    const A = await keyOf('host-a');
    const B = await keyOf('host-b');
    const Bold = await keyOf('host-b', 'restore');

    // loader1: host-a registered on ONE of its two changer paths and holds the changer; host-c (stray key) holds
    // the drive → partial registration, unknown key, deadlock.
    await good(h.prout('host-a', '/dev/sg0', { action: REG, serviceActionKey: A }));
    await good(h.prout('host-a', '/dev/sg0', { action: RESERVE, reservationKey: A, type: EA }));
    await good(h.prout('host-c', '/dev/sg1', { action: REG, serviceActionKey: STRAY }));
    await good(h.prout('host-c', '/dev/sg1', { action: RESERVE, reservationKey: STRAY, type: EA }));
    // loader2: host-b holds the drive and left a since-revoked key on the changer; host-a's drive registration
    // is preempted by host-c (unit attention pending on host-a's nexus); then host-b's agent dies.
    await good(h.prout('host-b', '/dev/sg3', { action: REG, serviceActionKey: B }));
    await good(h.prout('host-b', '/dev/sg3', { action: RESERVE, reservationKey: B, type: WE }));
    await good(h.prout('host-b', '/dev/sg2', { action: REG, serviceActionKey: Bold }));
    await h.client.revokeKey({ key: Bold, revokedBy: 'ops', reason: 'restore host retired' });
    await good(h.prout('host-a', '/dev/sg4', { action: REG, serviceActionKey: A }));
    await good(h.prout('host-c', '/dev/sg3', { action: REG, serviceActionKey: STRAY }));
    await good(
      h.prout('host-c', '/dev/sg3', {
        action: PREEMPT,
        reservationKey: STRAY,
        serviceActionKey: A,
        type: WE,
      }),
    );
    await h.stopAgent('host-b');
    // Desired states: loader1 wants host-a everywhere (drift); loader2 wants a type the changer lacks and a host
    // without a key.
    await h.client.setDesiredState({
      scope: { scope: { $case: 'loaderId', value: 'loader1' } },
      state: {
        registeredAgentIds: ['host-a'],
        changer: { holderAgentId: 'host-a', type: EA },
        drives: { holderAgentId: 'host-a', type: EA },
      },
      updatedBy: 'test',
    });
    await h.client.setDesiredState({
      scope: { scope: { $case: 'loaderId', value: 'loader2' } },
      state: {
        registeredAgentIds: ['host-c'],
        changer: { holderAgentId: 'host-b', type: PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS },
      },
      updatedBy: 'test',
    });

    const { reports, summary } = await audit(h);
    const kinds = new Set(summary.findingCounts.map((c) => c.kind));
    for (const kind of [
      FindingKind.FINDING_KIND_UNKNOWN_KEY,
      FindingKind.FINDING_KIND_REVOKED_KEY,
      FindingKind.FINDING_KIND_HOLDER_OFFLINE,
      FindingKind.FINDING_KIND_LOADER_DEADLOCK,
      FindingKind.FINDING_KIND_PARTIAL_REGISTRATION,
      FindingKind.FINDING_KIND_DRIFT,
      FindingKind.FINDING_KIND_UNSUPPORTED_BY_PROFILE,
      FindingKind.FINDING_KIND_UNREACHABLE,
      FindingKind.FINDING_KIND_UNIT_ATTENTION,
      FindingKind.FINDING_KIND_MISSING_KEY,
    ]) {
      expect(kinds, FindingKind[kind]).toContain(kind);
    }

    const l1c = byLu(reports, 'loader1-changer', h);
    const partial = l1c.findings.find(
      (f) => f.kind === FindingKind.FINDING_KIND_PARTIAL_REGISTRATION,
    );
    expect(partial?.agentId).toBe('host-a');
    expect(partial?.message).toContain('1 of its 2 paths');
    expect(l1c.fullStatus).toBe(false); // the SuperLoader changer has no READ FULL STATUS: counted from READ KEYS
    expect(l1c.findings.some((f) => f.kind === FindingKind.FINDING_KIND_DRIFT)).toBe(true);

    const l1d = byLu(reports, 'loader1-drive', h);
    expect(l1d.holderAgentId).toBe('host-c');
    expect(l1d.holder?.status).toBe(KeyStatus.KEY_STATUS_UNKNOWN);
    const unknown = l1d.findings.find((f) => f.kind === FindingKind.FINDING_KIND_UNKNOWN_KEY);
    expect(unknown?.severity).toBe(Severity.SEVERITY_CRITICAL); // it holds the reservation
    expect(unknown?.key).toBe(STRAY);

    const deadlock = summary.loaderFindings.find(
      (f) => f.kind === FindingKind.FINDING_KIND_LOADER_DEADLOCK,
    );
    expect(deadlock?.loaderId).toBe('loader1');
    expect(deadlock?.message).toContain('host-a');
    expect(deadlock?.message).toContain('host-c');
    expect(summary.loaderFindings.filter((f) => f.loaderId === 'loader2')).toEqual([]);

    const l2d = byLu(reports, 'loader2-drive', h);
    expect(l2d.reachability).toBe(Reachability.REACHABILITY_PARTIAL); // host-b's path is reported, not dropped
    const offline = l2d.findings.find((f) => f.kind === FindingKind.FINDING_KIND_HOLDER_OFFLINE);
    expect(offline?.agentId).toBe('host-b');
    expect(offline?.suggestedAction).toContain('takeover');
    const hostB = l2d.paths.find((p) => p.agentId === 'host-b');
    expect(hostB).toMatchObject({
      reachable: false,
      agentConnected: false,
      error: 'agent offline',
    });
    const ua = l2d.findings.find((f) => f.kind === FindingKind.FINDING_KIND_UNIT_ATTENTION);
    expect(ua?.agentId).toBe('host-a');
    expect(ua?.message.toLowerCase()).toContain('registrations preempted');

    const l2c = byLu(reports, 'loader2-changer', h);
    const revoked = l2c.findings.find((f) => f.kind === FindingKind.FINDING_KIND_REVOKED_KEY);
    expect(revoked?.key).toBe(Bold);
    expect(
      l2c.findings.some((f) => f.kind === FindingKind.FINDING_KIND_UNSUPPORTED_BY_PROFILE),
    ).toBe(true);
    expect(l2c.findings.find((f) => f.kind === FindingKind.FINDING_KIND_MISSING_KEY)?.agentId).toBe(
      'host-c',
    );
    expect(summary.unreachable).toBe(0);
    expect(summary.partial).toBeGreaterThanOrEqual(2);

    // The Prometheus gauge holds the same counts, by kind name.
    const exposed = await metrics.registry.metrics();
    for (const { kind, count } of summary.findingCounts) {
      const name = FindingKind[kind].replace(/^FINDING_KIND_/, '').toLowerCase();
      expect(exposed).toContain(`prfleet_audit_findings{kind="${name}"} ${count}`);
    }
  });

  it('reports an LU whose every agent is offline as unreachable, never dropping it', async () => {
    const h = await startFleetHarness();
    await Promise.all(['host-a', 'host-b', 'host-c'].map((id) => h.stopAgent(id)));
    const { reports, summary } = await audit(h, { loaderIds: ['loader2'] });
    expect(reports).toHaveLength(2);
    for (const r of reports) {
      expect(r.reachability).toBe(Reachability.REACHABILITY_UNREACHABLE);
      expect(r.error).toContain('no online path');
      expect(
        r.findings.filter((f) => f.kind === FindingKind.FINDING_KIND_UNREACHABLE),
      ).toHaveLength(r.paths.length);
    }
    expect(summary.unreachable).toBe(2);
    expect(summary.commandsSent).toBe(0);
  });

  it('sends the same reports in `reports` messages to a client that set batch_reports, progress and summary in place', async () => {
    const h = await startFleetHarness();
    await good(h.prout('host-a', '/dev/sg2', { action: REG, serviceActionKey: STRAY }));
    const single = await audit(h);
    const events: AuditResponse[] = [];
    for await (const e of h.client.audit({ maxPerAgent: 8, maxConcurrency: 8, batchReports: true }))
      events.push(e);
    expect(events.some((e) => e.event?.$case === 'reports')).toBe(true);
    expect(events[0]?.event?.$case).toBe('progress');
    expect(events.at(-1)?.event?.$case).toBe('summary');
    const batched = events.flatMap((e) =>
      e.event?.$case === 'report'
        ? [e.event.value]
        : e.event?.$case === 'reports'
          ? e.event.value.reports
          : [],
    );
    const key = (r: LogicalUnitReport) => r.luId;
    expect([...batched].sort((a, b) => key(a).localeCompare(key(b)))).toEqual(
      [...single.reports].sort((a, b) => key(a).localeCompare(key(b))),
    );
  });

  it('refuses a malformed selector before sending anything', async () => {
    const h = await startFleetHarness();
    const run = async () => {
      for await (const _ of h.client.audit({ selector: { labels: ['role'] } })) void _;
    };
    await expect(run()).rejects.toThrow(/selector.labels\[0\]/);
  });

  it('names a duplicate registration: LIO 6.1 registers the sender of a SPEC_I_PT REGISTER naming itself twice', async () => {
    const h = await startFleetHarness({ fabricFile: LIO_FABRIC });
    const key = 0x5ca1ab1en;
    const own = transportIdToProto({ protocol: 'sas', sasAddress: 0x500605b000000a01n });
    await good(
      h.prout('host-a', '/dev/sg0', {
        action: REG,
        serviceActionKey: key,
        specIPtTransportIds: [own],
      }),
    );
    const { reports, summary } = await audit(h);
    const report = reports.find((r) => r.serial === 'LIO0000000001');
    expect(report?.fullStatus).toBe(true);
    expect(report?.keys).toEqual([expect.objectContaining({ key, nexusCount: 2 })]);
    const dup = report?.findings.filter(
      (f) => f.kind === FindingKind.FINDING_KIND_DUPLICATE_REGISTRATION,
    );
    expect(dup).toHaveLength(1);
    expect(dup?.[0]).toMatchObject({ agentId: 'host-a', path: '/dev/sg0', key });
    expect(dup?.[0]?.message).toContain('registered 2 times');
    expect(dup?.[0]?.suggestedAction).toBe(
      'prfleet register host-a:/dev/sg0 --key 0x000000005ca1ab1e --new-key 0',
    );
    expect(
      summary.findingCounts.find((c) => c.kind === FindingKind.FINDING_KIND_DUPLICATE_REGISTRATION)
        ?.count,
    ).toBe(1);

    // One unregister removes one copy: the finding goes, the host stays registered once.
    await good(
      h.prout('host-a', '/dev/sg0', { action: REG, reservationKey: key, serviceActionKey: 0n }),
    );
    const after = (await audit(h)).reports.find((r) => r.serial === 'LIO0000000001');
    expect(after?.keys).toEqual([expect.objectContaining({ key, nexusCount: 1 })]);
    expect(
      after?.findings.some((f) => f.kind === FindingKind.FINDING_KIND_DUPLICATE_REGISTRATION),
    ).toBe(false);
  });
});
