/**
 * Holds other than a persistent reservation (docs/fleet.md): an SPC-2 reservation, inferred from RESERVATION
 * CONFLICT where a persistent reservation never causes one (PERSISTENT RESERVE IN; TEST UNIT READY through a
 * nexus holding no persistent reservation), and medium-removal prevention, where a device reported MEDIUM
 * REMOVAL PREVENTED (53h/02h) on some command. Each comes with who holds it, when that can be known, and the
 * safe way out.
 */
import { Finding, FindingKind, Severity } from '../../gen/prfleet/v1/fleet.js';
import type { CommandResult } from '../../gen/prfleet/v1/scsi.js';
import type { LuObservation, ReadContext } from './observe.js';
import { pathOnline, sendRead } from './observe.js';
import { suggest } from './suggest.js';

const RC = 'OUTCOME_RESERVATION_CONFLICT';

/** What TEST UNIT READY said through each online path of an LU that answered PRIN with RESERVATION CONFLICT. */
export interface Spc2Probe {
  /** Paths whose PRIN conflicted ("agent:path"). */
  readonly prinConflicts: readonly string[];
  /** Paths whose TEST UNIT READY conflicted. */
  readonly blocked: readonly { agentId: string; path: string }[];
  /** Paths TEST UNIT READY passed on (GOOD, or a CHECK CONDITION such as NOT READY: not a conflict). */
  readonly passing: readonly { agentId: string; path: string }[];
  /** The holder, when exactly one fleet path passes while others conflict. */
  readonly holder?: { agentId: string; path: string };
}

/**
 * Probes an LU whose PRIN conflicted on some path: TEST UNIT READY through every online path (it changes nothing
 * and a persistent reservation lets it through for everyone, scsi-pr.md §6.2). Undefined when no PRIN
 * conflicted, or TEST UNIT READY conflicted nowhere (no SPC-2 reservation to name).
 */
export async function probeSpc2(
  obs: LuObservation,
  ctx: ReadContext,
): Promise<Spc2Probe | undefined> {
  const prinConflicts = obs.paths
    .filter((p) => p.error.startsWith(RC))
    .map((p) => `${p.fleetPath.agent.hello.agentId}:${p.fleetPath.path.path}`);
  if (prinConflicts.length === 0) return undefined;
  const blocked: { agentId: string; path: string }[] = [];
  const passing: { agentId: string; path: string }[] = [];
  await Promise.all(
    obs.paths
      .filter((p) => pathOnline(p.fleetPath))
      .map(async (p) => {
        const at = { agentId: p.fleetPath.agent.hello.agentId, path: p.fleetPath.path.path };
        const tur = await sendRead(
          p.fleetPath,
          { $case: 'testUnitReady', value: {} },
          ctx,
          obs.unit.luId,
        );
        if (tur.error === undefined || /^OUTCOME_(CHECK_CONDITION|UNIT_ATTENTION)/.test(tur.error))
          passing.push(at);
        else if (tur.error.startsWith(RC)) blocked.push(at);
      }),
  );
  if (blocked.length === 0) return undefined;
  const holder = passing.length === 1 ? passing[0] : undefined;
  return { prinConflicts, blocked, passing, ...(holder === undefined ? {} : { holder }) };
}

/** The audit finding of an SPC-2 reservation: who holds it (when a fleet path does) and the safe way out. */
export function spc2Finding(obs: LuObservation, probe: Spc2Probe): Finding {
  const lu = obs.unit.luId;
  const h = probe.holder;
  const who =
    h !== undefined
      ? `held by ${h.agentId} through ${h.path} (the only path TEST UNIT READY passes on)`
      : probe.passing.length === 0
        ? 'held by a nexus outside the fleet or on an offline path (TEST UNIT READY conflicts on every fleet path)'
        : `held by one of ${probe.passing.map((p) => `${p.agentId}:${p.path}`).join(', ')}`;
  const out =
    h !== undefined
      ? `have ${h.agentId} release it (RELEASE(6) through ${h.path}: stop or unload the application that reserved it); if ${h.agentId} has failed: ${suggest.resetLu(lu, h.agentId)}`
      : `find and stop the host that reserved it (RELEASE(6) from it); if it has failed: ${suggest.resetLu(lu)}`;
  return Finding.fromPartial({
    kind: FindingKind.FINDING_KIND_SPC2_RESERVATION,
    severity: Severity.SEVERITY_CRITICAL,
    luId: lu,
    loaderId: obs.unit.loaderId,
    agentId: h?.agentId ?? '',
    path: h?.path ?? '',
    message: `SPC-2 reservation (RESERVE(6)/(10)) on ${lu}, ${who}: PERSISTENT RESERVE IN conflicts on ${probe.prinConflicts.join(', ')} (a persistent reservation never blocks it) and TEST UNIT READY on ${probe.blocked.map((p) => `${p.agentId}:${p.path}`).join(', ')}`,
    suggestedAction: out,
  });
}

/** A MEDIUM REMOVAL PREVENTED report: where and when the device said it. */
export interface PreventionReport {
  readonly agentId: string;
  readonly path: string;
  readonly at: Date;
}

/** How long a 53h/02h report counts as current. */
const PREVENTION_FRESH_MS = 3_600_000;

/** Remembers, per LU, the latest MEDIUM REMOVAL PREVENTED (53h/02h) any command's result reported. */
export class HoldMemory {
  private readonly prevented = new Map<string, PreventionReport>();

  /** Looks at one result (the router tap calls this for every result). */
  note(result: CommandResult): void {
    const s = result.sense;
    if (s === undefined || s.asc !== 0x53 || s.ascq !== 0x02 || result.luId === '') return;
    this.prevented.set(result.luId, { agentId: result.agentId, path: result.path, at: new Date() });
  }

  /** Forgets `luId`'s report (after a reset ended the prevention). */
  clear(luId: string): void {
    this.prevented.delete(luId);
  }

  /** The current report for `luId`, if any. */
  prevention(luId: string, now = Date.now()): PreventionReport | undefined {
    const r = this.prevented.get(luId);
    return r !== undefined && now - r.at.getTime() < PREVENTION_FRESH_MS ? r : undefined;
  }
}

/** The audit finding of a medium-removal prevention the device reported. */
export function preventionFinding(obs: LuObservation, r: PreventionReport): Finding {
  const lu = obs.unit.luId;
  return Finding.fromPartial({
    kind: FindingKind.FINDING_KIND_MEDIUM_REMOVAL_PREVENTED,
    severity: Severity.SEVERITY_WARNING,
    luId: lu,
    loaderId: obs.unit.loaderId,
    agentId: r.agentId,
    path: r.path,
    message: `medium removal prevented on ${lu}: the device answered MEDIUM REMOVAL PREVENTED (53h/02h) to ${r.agentId}:${r.path} at ${r.at.toISOString()}; the nexus that sent PREVENT ALLOW MEDIUM REMOVAL cannot be read from the device (usually the host whose backup application has the medium loaded)`,
    suggestedAction: `have that host allow removal (its application unloads, or PREVENT ALLOW MEDIUM REMOVAL with PREVENT 0, e.g. mt -f <tape> unlock); if it has failed: ${suggest.resetLu(lu)}`,
  });
}
