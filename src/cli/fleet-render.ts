/**
 * How fleet answers look: CLI JSON of fleet messages (keys as 16 hex digits, enums by name), findings and LU
 * reports as tables, the audit summary, rollout events and takeover verdicts as lines.
 */
import {
  findingKindToJSON,
  keyStatusToJSON,
  reachabilityToJSON,
  registrationStateToJSON,
  RolloutPhase,
  rolloutPhaseToJSON,
  rolloutResultToJSON,
  severityToJSON,
  stepStateToJSON,
  type AuditSummary,
  type Finding,
  type LogicalUnitReport,
  type RolloutEvent,
  type TakeoverVerdict,
} from '../gen/prfleet/v1/fleet.js';
import { formatKey } from '../common/key-layout.js';
import { toCliJson, type Json } from './json.js';
import { plainTable, prTypeShortName, terminalSafe } from './render.js';
import type { CliIo } from './runner.js';

const ENUMS: Readonly<Record<string, (v: number) => string>> = {
  kind: findingKindToJSON,
  severity: severityToJSON,
  reachability: reachabilityToJSON,
  registration: registrationStateToJSON,
  state: stepStateToJSON,
  phase: rolloutPhaseToJSON,
  result: rolloutResultToJSON,
};
const HEX = new Set([
  'holderKey',
  'victimKey',
  'expectedHolderKey',
  'key',
  'keys',
  'reservationKey',
  'serviceActionKey',
]);

/** A fleet message as CLI JSON: keys as 16 hex digits, fleet enums by name, the rest as `toCliJson`. */
export function fleetJson(value: unknown, field = '', parent = ''): Json {
  if (typeof value === 'number' && ENUMS[field] && !(field === 'result' && parent === 'step'))
    return ENUMS[field](value);
  if (typeof value === 'number' && field === 'status' && parent === 'owner')
    return keyStatusToJSON(value);
  if (typeof value === 'bigint' && HEX.has(field)) return formatKey(BigInt.asUintN(64, value));
  if (Array.isArray(value)) return value.map((v) => fleetJson(v, field, parent));
  if (
    value !== null &&
    typeof value === 'object' &&
    !(value instanceof Uint8Array) &&
    !(value instanceof Date)
  ) {
    const o = value as Record<string, unknown>;
    if (typeof o['$case'] === 'string')
      return { [o['$case']]: fleetJson(o['value'], o['$case'], field) };
    if (
      Object.keys(o).length === 2 &&
      typeof o['seconds'] === 'bigint' &&
      typeof o['nanos'] === 'number'
    )
      return toCliJson(value, field);
    const out: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(o)) out[k] = fleetJson(v, k, field);
    return out;
  }
  return toCliJson(value, field);
}

const VERDICT_NAMES = ['unspecified', 'failed', 'greedy', 'unproven'];

/** A takeover verdict for people: the verdict line, then each fact (+ supports the takeover, - does not). */
export function verdictLines(v: TakeoverVerdict): string {
  const state = v.forced ? 'FORCED' : v.allowed ? 'allowed' : 'REFUSED';
  const rule = v.policyRule ? ` (policy rule ${terminalSafe(v.policyRule)})` : '';
  const lines = [`verdict: ${VERDICT_NAMES[v.kind] ?? v.kind}, ${state}${rule}`];
  if (v.forced) lines.push(`  overrides: ${terminalSafe(v.overrides)}`);
  for (const e of v.evidence)
    lines.push(
      `  ${e.holds ? '+' : '-'} ${e.rule}${e.subject ? ` ${terminalSafe(e.subject)}` : ''}: ${terminalSafe(e.detail)}`,
    );
  return `${lines.join('\n')}\n`;
}

const SEVERITY_WORD = ['', 'info', 'WARNING', 'CRITICAL'];

/** Findings as a table. */
export function renderFindings(findings: readonly Finding[]): string {
  if (findings.length === 0) return 'no findings';
  const table = plainTable({
    head: ['severity', 'finding', 'where', 'what', 'suggested action'],
    wordWrap: true,
    colWidths: [10, 24, 28, 50, 40],
  });
  const order = [...findings].sort((a, b) => b.severity - a.severity);
  for (const f of order) {
    const where = [f.loaderId, f.luId, f.agentId && `${f.agentId}${f.path ? `:${f.path}` : ''}`]
      .filter((x) => x)
      .join(' ');
    table.push([
      SEVERITY_WORD[f.severity] ?? '',
      findingKindToJSON(f.kind).replace('FINDING_KIND_', '').toLowerCase(),
      where,
      f.message,
      f.suggestedAction,
    ]);
  }
  return table.toString();
}

/** LU reports as a table. */
export function renderReports(reports: readonly LogicalUnitReport[]): string {
  const table = plainTable({
    head: [
      'loader',
      'lu',
      'type',
      'reach',
      'gen',
      'holder',
      'res type',
      'keys',
      'paths',
      'findings',
    ],
  });
  const sorted = [...reports].sort((a, b) =>
    a.loaderId < b.loaderId ? -1 : a.loaderId > b.loaderId ? 1 : a.luId < b.luId ? -1 : 1,
  );
  for (const r of sorted) {
    table.push([
      r.loaderId,
      r.luId,
      r.peripheralDeviceType === 8
        ? 'changer'
        : r.peripheralDeviceType === 1
          ? 'tape'
          : String(r.peripheralDeviceType),
      reachabilityToJSON(r.reachability).replace('REACHABILITY_', '').toLowerCase(),
      String(r.generation),
      r.reserved ? r.holderAgentId || formatKey(r.holderKey) : '-',
      r.reserved ? prTypeShortName(r.type) : '-',
      r.keys.map((k) => `${formatKey(k.key)}×${k.nexusCount}`).join('\n') || '-',
      `${r.paths.filter((p) => p.reachable).length}/${r.paths.length}`,
      String(r.findings.length),
    ]);
  }
  return table.toString();
}

export function summaryLine(s: AuditSummary): string {
  const ms = Number(s.duration?.seconds ?? 0n) * 1000 + (s.duration?.nanos ?? 0) / 1e6;
  return `${s.logicalUnits} LUs (${s.reachable} reachable, ${s.partial} partly, ${s.unreachable} unreachable), ${s.pathsReachable}/${s.paths} paths, ${s.commandsSent} commands, ${ms.toFixed(0)} ms`;
}

/** One line for a rollout event. */
export function rolloutLine(e: RolloutEvent): string {
  const ev = e.event;
  switch (ev?.$case) {
    case 'started':
      return `rollout ${ev.value.operationId}: ${ev.value.steps} steps on ${ev.value.logicalUnits} LUs${ev.value.blockers.length ? `, ${ev.value.blockers.length} blockers:\n${ev.value.blockers.map((b) => `  ! ${b.luId} ${b.message} → ${b.suggestedAction}`).join('\n')}` : ''}`;
    case 'step': {
      const s = ev.value;
      const phase = s.phase === RolloutPhase.ROLLOUT_PHASE_ROLLBACK ? 'undo ' : '';
      return `${phase}${stepStateToJSON(s.state).replace('STEP_STATE_', '').toLowerCase().padEnd(18)} ${s.step?.luId ?? ''} ${s.step?.description ?? ''}${s.message ? ` — ${s.message}` : ''}`;
    }
    case 'replanned':
      return `re-planned ${ev.value.luId}: ${ev.value.reason} (${ev.value.steps.length} steps)`;
    case 'finished': {
      const f = ev.value;
      return `${rolloutResultToJSON(f.result).replace('ROLLOUT_RESULT_', '').toLowerCase()}: ${f.succeeded} succeeded, ${f.failed} failed, ${f.rolledBack} rolled back, ${f.cancelled} not started, ${f.replans} re-plans${f.message ? ` — ${f.message}` : ''}`;
    }
    case undefined:
      return '';
  }
}

/** Prints `value` as one line of fleet JSON. */
export function printFleetLine(io: CliIo, value: unknown): void {
  io.stdout(`${JSON.stringify(fleetJson(value))}\n`);
}
