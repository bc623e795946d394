/**
 * `prfleet audit | plan | apply | takeover | keys | desired`: the CLI side of FleetService. `registerFleetCommands`
 * adds the subcommands to the main program (H5's program wires it in); they share its `--server` and `-o`.
 * Tables for people (audit shows a progress bar on stderr while it runs); `-o json` streams one JSON object per
 * line as events arrive.
 */
import { createRequire } from 'node:module';
import { Option, type Command, type OptionValues } from '@commander-js/extra-typings';
import { registerWatchCommand } from './watch.js';
import { registerWebhookCommands } from './webhooks.js';
import { registerLoaderCommands } from './loaders.js';
import { connectFleet } from './client.js';
import {
  resolveConnection,
  transportContextOf,
  transportFlagsOf,
  type ConnectionSettings,
} from './connection.js';
import {
  findingKindToJSON,
  keyStatusToJSON,
  reachabilityToJSON,
  registrationStateToJSON,
  rolloutPhaseToJSON,
  rolloutResultToJSON,
  RolloutResult,
  severityToJSON,
  stepStateToJSON,
  type AuditSummary,
  type DesiredReservation,
  type FleetSelector,
  type FleetServiceClient,
  type Finding,
  type KeyRecord,
  type LogicalUnitReport,
  type RolloutEvent,
  type RolloutOptions,
  type TakeoverVerdict,
} from '../gen/prfleet/v1/fleet.js';
import type { PrType } from '../gen/prfleet/v1/scsi.js';
import { msToDuration } from '../common/command.js';
import { formatKey } from '../common/key-layout.js';
import { describeRpcError, writeError } from './errors.js';
import { ExitCode, exitCodeForResult } from './exit-codes.js';
import { toCliJson, type Json } from './json.js';
import {
  collectLabel,
  parseDurationMs,
  parseKeyOption,
  parsePrType,
  parseUint32,
} from './parse.js';
import { plainTable, prTypeShortName, terminalSafe } from './render.js';

/** Where fleet commands write, and how they report their exit code (the main program's io and state). */
export interface FleetCliIo {
  /** Standard output. */
  readonly stdout: (text: string) => void;
  /** Standard error (the progress bar goes here). */
  readonly stderr: (text: string) => void;
  /** Opens a FleetService client. @default {@link connectFleet} */
  readonly connect?: (
    address: string,
    settings: ConnectionSettings,
  ) => { client: FleetServiceClient; close(): void };
  /** Environment for the connection settings (PRFLEET_TLS_CA, PRFLEET_TOKEN, …). @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Show the progress bar. @default true when stderr is a TTY */
  readonly progress?: boolean;
}

/** Exit code of a rollout that did not succeed (partial, aborted, cancelled): prfleet's own. */
export const ROLLOUT_FAILED_EXIT_CODE = 42;
/** Exit code of an audit with critical findings: prfleet's own. */
export const AUDIT_CRITICAL_EXIT_CODE = 43;

/** FleetService client: the shared client factory's, with the same middleware as the ControlService one. */
export { connectFleet } from './client.js';

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

/** The selector flags every fleet command accepts. */
function withSelector<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  command: Command<A, O, G>,
) {
  return command
    .option('--loader <id>', 'only LUs of this loader (repeatable)', collect)
    .option('--lu <id>', 'only this LU (repeatable)', collect)
    .option('--site <site>', 'only LUs (and paths) of agents of this site')
    .option('--label <key=value>', 'only agents carrying this label (repeatable)', collectLabel);
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function selectorOf(opts: {
  loader?: string[];
  lu?: string[];
  site?: string;
  label?: string[];
}): FleetSelector {
  return {
    loaderIds: opts.loader ?? [],
    luIds: opts.lu ?? [],
    site: opts.site ?? '',
    labels: opts.label ?? [],
  };
}

function withGuardRails<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  command: Command<A, O, G>,
) {
  return command
    .option('--max-concurrency <n>', 'LUs worked on at once (default 4)', parseUint32)
    .option('--error-threshold <n>', 'failed steps that stop the rollout (default 1)', parseUint32)
    .addOption(new Option('--no-rollback', 'keep completed steps when the rollout stops'))
    .option('--timeout <duration>', 'device command timeout (e.g. 30s)', parseDurationMs)
    .option('--operation-id <id>', 'rollout id; repeating it never re-sends journaled steps')
    .option('--reason <text>', 'why (recorded with every PROUT)')
    .option('--dry-run', 'plan and report, send nothing');
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

function rolloutOptions(opts: {
  maxConcurrency?: number;
  errorThreshold?: number;
  rollback?: boolean;
  timeout?: number;
  operationId?: string;
  reason?: string;
  dryRun?: boolean;
}): RolloutOptions {
  return {
    maxConcurrency: opts.maxConcurrency ?? 0,
    errorThreshold: opts.errorThreshold ?? 0,
    rollbackOnAbort: opts.rollback !== false,
    commandTimeout:
      opts.timeout === undefined
        ? undefined
        : { seconds: BigInt(Math.floor(opts.timeout / 1000)), nanos: (opts.timeout % 1000) * 1e6 },
    maxReplans: 0,
    operationId: opts.operationId ?? '',
    reason: opts.reason ?? '',
    dryRun: opts.dryRun === true,
  };
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

function summaryLine(s: AuditSummary): string {
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
      const phase = s.phase === 2 ? 'undo ' : '';
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

interface ProgressBar {
  start(total: number, value: number, payload?: Record<string, unknown>): void;
  update(value: number, payload?: Record<string, unknown>): void;
  setTotal(total: number): void;
  stop(): void;
}

function progressBar(io: FleetCliIo): ProgressBar | undefined {
  if (io.progress === false || (io.progress === undefined && !process.stderr.isTTY))
    return undefined;
  // cli-progress ships no types; its constructor is used as documented (README: SingleBar(options, preset)).
  const require = createRequire(import.meta.url);
  const cliProgress = require('cli-progress') as {
    SingleBar: new (options: object, preset: object) => ProgressBar;
    Presets: { shades_classic: object };
  };
  return new cliProgress.SingleBar(
    {
      format: 'audit [{bar}] {value}/{total} LUs | {commands} commands | {findings} findings',
      stream: {
        write: (t: string) => io.stderr(t),
        isTTY: process.stderr.isTTY === true,
        cursorTo: () => true,
        clearLine: () => true,
        moveCursor: () => true,
        columns: process.stderr.columns ?? 80,
      },
      noTTYOutput: io.progress === true && !process.stderr.isTTY,
      notTTYSchedule: 250,
      // Hiding the cursor is an escape sequence: not with NO_COLOR (https://no-color.org asks for plain output).
      hideCursor: !(io.env ?? process.env)['NO_COLOR'],
    },
    cliProgress.Presets.shades_classic,
  );
}

/**
 * Adds `audit`, `plan`, `apply`, `takeover`, `keys` and `desired` to `program` (which must define `--server`
 * and `-o, --output`). Each action sets `state.exitCode`.
 */
export function registerFleetCommands<
  A extends unknown[],
  O extends OptionValues,
  G extends OptionValues,
>(program: Command<A, O, G>, io: FleetCliIo, state: { exitCode: number }): void {
  const globals = () => {
    const o = program.opts() as unknown as { server: string; output: 'table' | 'json' } & Record<
      string,
      unknown
    >;
    return { server: o.server, output: o.output, flags: transportFlagsOf(o) };
  };
  const run = async (
    body: (client: FleetServiceClient, output: 'table' | 'json') => Promise<number>,
  ) => {
    const { server, output, flags } = globals();
    let settings: ConnectionSettings | undefined;
    let connection: { client: FleetServiceClient; close(): void } | undefined;
    try {
      settings = resolveConnection(server, flags, io.env ?? process.env);
      for (const warning of settings.warnings) io.stderr(`prfleet: warning: ${warning}\n`);
      connection = (io.connect ?? connectFleet)(server, settings);
      state.exitCode = await body(connection.client, output);
    } catch (error) {
      const d = describeRpcError(error, {
        server,
        ...(settings === undefined ? {} : { transport: transportContextOf(settings) }),
      });
      writeError(io, output, d);
      state.exitCode = d.exitCode;
    } finally {
      connection?.close();
    }
  };
  const line = (v: unknown) => io.stdout(`${JSON.stringify(fleetJson(v))}\n`);
  registerLoaderCommands(program, { run, line, stdout: io.stdout });
  registerWatchCommand(program, { run, stdout: io.stdout, stderr: io.stderr });
  registerWebhookCommands(program, {
    run,
    stdout: io.stdout,
    stderr: io.stderr,
    ...(io.env === undefined ? {} : { env: io.env }),
  });

  withSelector(
    program
      .command('audit')
      .description('read every LU through every path; report keys, owners, holders and findings'),
  )
    .option('--max-concurrency <n>', 'commands in flight overall (default 256)', parseUint32)
    .option('--max-per-agent <n>', 'commands in flight per agent (default 8)', parseUint32)
    .option('--findings-only', 'print only the findings table')
    .action(async (opts) => {
      await run(async (client, output) => {
        const bar = output === 'table' ? progressBar(io) : undefined;
        const reports: LogicalUnitReport[] = [];
        let summary: AuditSummary | undefined;
        let started = false;
        // batch_reports: reports completed together come in one message; shown one by one as before.
        const request = {
          selector: selectorOf(opts),
          maxConcurrency: opts.maxConcurrency ?? 0,
          maxPerAgent: opts.maxPerAgent ?? 0,
          batchReports: true,
        };
        for await (const e of client.audit(request)) {
          if (e.event?.$case === 'reports') {
            for (const report of e.event.value.reports) {
              if (output === 'json') line({ $case: 'report', value: report });
              reports.push(report);
            }
            continue;
          }
          if (output === 'json') line(e.event);
          const ev = e.event;
          if (ev?.$case === 'progress') {
            const payload = { commands: ev.value.commandsSent, findings: ev.value.findings };
            if (!started)
              bar?.start(ev.value.logicalUnitsTotal, ev.value.logicalUnitsDone, payload);
            else bar?.update(ev.value.logicalUnitsDone, payload);
            started = true;
          } else if (ev?.$case === 'report') reports.push(ev.value);
          else if (ev?.$case === 'summary') summary = ev.value;
        }
        bar?.stop();
        const findings = [
          ...reports.flatMap((r) => r.findings),
          ...(summary?.loaderFindings ?? []),
        ];
        if (output === 'table') {
          if (!opts.findingsOnly) io.stdout(`${renderReports(reports)}\n`);
          io.stdout(`${renderFindings(findings)}\n`);
          if (summary) io.stdout(`${summaryLine(summary)}\n`);
        }
        return findings.some((f) => f.severity === 3) ? AUDIT_CRITICAL_EXIT_CODE : ExitCode.OK;
      });
    });

  withSelector(
    program
      .command('plan')
      .description('dry run: the PROUT steps (with preconditions) that reach the desired state'),
  ).action(async (opts) => {
    await run(async (client, output) => {
      const plan = await client.plan({ selector: selectorOf(opts) });
      if (output === 'json') {
        line(plan);
        return ExitCode.OK;
      }
      const table = plainTable({
        head: ['#', 'lu', 'step', 'expects gen', 'expects holder', 'undo'],
      });
      plan.steps.forEach((s, i) =>
        table.push([
          String(i + 1),
          s.luId,
          s.description,
          String(s.precondition?.expectedGeneration ?? '-'),
          s.precondition?.expectedHolderKey === undefined
            ? '-'
            : s.precondition.expectedHolderKey === 0n
              ? 'none'
              : formatKey(s.precondition.expectedHolderKey),
          s.reversible ? 'yes' : 'no',
        ]),
      );
      io.stdout(`${plan.steps.length ? table.toString() : 'nothing to do'}\n`);
      if (plan.blockers.length) io.stdout(`${renderFindings(plan.blockers)}\n`);
      io.stdout(
        `${plan.logicalUnits} LUs, ${plan.inDesiredState} already in their desired state\n`,
      );
      return ExitCode.OK;
    });
  });

  const streamRollout = async (
    events: AsyncIterable<{
      event?: RolloutEvent | undefined;
      verdict?: TakeoverVerdict | undefined;
    }>,
    output: 'table' | 'json',
  ) => {
    let result: RolloutResult = RolloutResult.ROLLOUT_RESULT_UNSPECIFIED;
    for await (const r of events) {
      if (r.verdict) {
        if (output === 'json') line({ verdict: r.verdict });
        else io.stdout(verdictLines(r.verdict));
      }
      if (!r.event) continue;
      if (output === 'json') line(r.event.event);
      else io.stdout(`${rolloutLine(r.event)}\n`);
      if (r.event.event?.$case === 'finished') result = r.event.event.value.result;
    }
    return result === RolloutResult.ROLLOUT_RESULT_SUCCEEDED ||
      result === RolloutResult.ROLLOUT_RESULT_DRY_RUN
      ? ExitCode.OK
      : ROLLOUT_FAILED_EXIT_CODE;
  };

  withGuardRails(
    withSelector(
      program
        .command('apply')
        .description('run the plan: guarded PROUTs, error threshold, rollback'),
    ),
  ).action(async (opts) => {
    await run(async (client, output) =>
      streamRollout(
        client.apply({ selector: selectorOf(opts), options: rolloutOptions(opts), steps: [] }),
        output,
      ),
    );
  });

  withGuardRails(
    withSelector(
      program
        .command('takeover')
        .description('preempt a failed or greedy initiator (by key or host) on loaders'),
    ),
  )
    .requiredOption('--by <agent>', 'host that takes over')
    .option('--victim-key <key>', 'key to preempt', parseKeyOption)
    .option('--victim-agent <agent>', 'host whose registry keys are preempted')
    .option('--key <key>', "the taker's key (default: its newest backup key)", parseKeyOption)
    .option(
      '--type <type>',
      'reservation type to hold where the victim held (default: keep)',
      parsePrType,
    )
    .option('--abort', 'PREEMPT AND ABORT')
    .option(
      '--force',
      'take over although no rule proves the victim failed or greedy (admin; needs --reason)',
    )
    .action(async (opts) => {
      if (opts.force === true && (opts.reason ?? '').trim() === '')
        program.error('error: --force needs --reason', { exitCode: ExitCode.USAGE });
      if ((opts.victimKey === undefined) === (opts.victimAgent === undefined))
        program.error('error: give exactly one of --victim-key and --victim-agent', {
          exitCode: ExitCode.USAGE,
        });
      await run(async (client, output) =>
        streamRollout(
          client.takeover({
            selector: selectorOf(opts),
            victim:
              opts.victimKey !== undefined
                ? { $case: 'victimKey', value: opts.victimKey }
                : { $case: 'victimAgentId', value: opts.victimAgent ?? '' },
            agentId: opts.by,
            key: opts.key ?? 0n,
            keyPurpose: '',
            type: opts.type ?? 0,
            abort: opts.abort === true,
            options: rolloutOptions(opts),
            force: opts.force === true,
          }),
          output,
        ),
      );
    });

  program
    .command('reset-lu')
    .description(
      'break an SPC-2 reservation or medium-removal prevention with a logical unit reset (admin; refused while persistent reservations exist)',
    )
    .requiredOption('--lu <id>', 'the logical unit')
    .requiredOption('--reason <text>', 'why (recorded in the history)')
    .option('--agent <agent>', 'agent whose path sends the reset (default: the holder, else any)')
    .option('--path <path>', 'path on that agent')
    .option('--timeout <duration>', 'device command timeout (e.g. 30s)', parseDurationMs)
    .option('--dry-run', 'check and report, send nothing')
    .action(async (opts) => {
      await run(async (client, output) => {
        const r = await client.resetLogicalUnit({
          luId: opts.lu,
          agentId: opts.agent ?? '',
          path: opts.path ?? '',
          reason: opts.reason,
          dryRun: opts.dryRun === true,
          ...(opts.timeout === undefined ? {} : { commandTimeout: msToDuration(opts.timeout) }),
        });
        if (output === 'json') line(r);
        else {
          if (r.holds.length) io.stdout(`${renderFindings(r.holds)}\n`);
          io.stdout(`${terminalSafe(r.message)}\n`);
        }
        if (opts.dryRun === true) return ExitCode.OK;
        return r.result !== undefined && r.result.outcome !== 1
          ? exitCodeForResult(r.result)
          : ExitCode.OK;
      });
    });

  const keys = program
    .command('registry')
    .description('the reservation-key registry (allocate, list, revoke, decode keys)');
  const printKeys = (records: readonly KeyRecord[], output: 'table' | 'json') => {
    if (output === 'json') return line({ keys: records });
    const table = plainTable({
      head: ['key', 'agent', 'site', 'purpose', 'owner', 'origin', 'revoked'],
    });
    for (const k of records)
      table.push([
        formatKey(k.key),
        k.agentId,
        k.site,
        k.purpose,
        k.owner,
        k.origin,
        k.revokedAt ? `${k.revokedAt.toISOString()} by ${k.revokedBy}` : '-',
      ]);
    io.stdout(`${table.toString()}\n`);
  };
  keys
    .command('list')
    .option('--agent <id>')
    .option('--site <site>')
    .option('--purpose <purpose>')
    .option('--all', 'include revoked keys')
    .action(async (opts) => {
      await run(async (client, output) => {
        const r = await client.listKeys({
          agentId: opts.agent ?? '',
          site: opts.site ?? '',
          purpose: opts.purpose ?? '',
          includeRevoked: opts.all === true,
        });
        printKeys(r.keys, output);
        return ExitCode.OK;
      });
    });
  keys
    .command('allocate')
    .requiredOption('--agent <id>', 'host the key is for')
    .requiredOption('--site <site>')
    .requiredOption('--owner <who>', 'person, team or application answerable for it')
    .option('--purpose <purpose>', 'backup, restore, admin, maintenance or test', 'backup')
    .option('--note <text>')
    .action(async (opts) => {
      await run(async (client, output) => {
        const r = await client.allocateKey({
          agentId: opts.agent,
          site: opts.site,
          owner: opts.owner,
          purpose: opts.purpose,
          note: opts.note ?? '',
        });
        printKeys(r.key ? [r.key] : [], output);
        return ExitCode.OK;
      });
    });
  keys
    .command('revoke')
    .argument('<key>', 'the key', parseKeyOption)
    .requiredOption('--by <who>')
    .option('--reason <text>')
    .action(async (key, opts) => {
      await run(async (client, output) => {
        const r = await client.revokeKey({ key, revokedBy: opts.by, reason: opts.reason ?? '' });
        printKeys(r.key ? [r.key] : [], output);
        return ExitCode.OK;
      });
    });
  keys
    .command('decode')
    .argument('<key>', 'any 8-byte key', parseKeyOption)
    .action(async (key) => {
      await run(async (client, output) => {
        const r = await client.decodeKey({ key });
        if (output === 'json') line({ key, ...r });
        else
          io.stdout(
            `${formatKey(key)}: ${r.owner?.summary ?? ''} (${r.layout}, ${r.confidence})\n`,
          );
        return ExitCode.OK;
      });
    });

  const desired = program.command('desired').description('desired state per loader or group');
  desired
    .command('get')
    .option('--loader <id>')
    .option('--group <name>')
    .action(async (opts) => {
      await run(async (client, output) => {
        const scope = opts.loader
          ? { scope: { $case: 'loaderId' as const, value: opts.loader } }
          : opts.group
            ? { scope: { $case: 'group' as const, value: opts.group } }
            : undefined;
        const r = await client.getDesiredState(scope ? { scope } : {});
        if (output === 'json') line(r);
        else for (const rec of r.records) io.stdout(`${JSON.stringify(fleetJson(rec), null, 2)}\n`);
        return ExitCode.OK;
      });
    });
  const reservation = (
    holder: string | undefined,
    type: PrType | undefined,
    leaseMs?: number,
  ): DesiredReservation | undefined =>
    holder === undefined
      ? undefined
      : {
          holderAgentId: holder === 'none' ? '' : holder,
          type: (type ?? 0) as PrType,
          lease: leaseMs === undefined ? undefined : msToDuration(leaseMs),
        };
  desired
    .command('set')
    .option('--loader <id>')
    .option('--group <name>')
    .option('--register <agent>', 'host registered on every path (repeatable)', collect)
    .option('--changer-holder <agent>', "host that holds the changer ('none' for no reservation)")
    .option('--changer-type <type>', 'changer reservation type', parsePrType)
    .option('--drives-holder <agent>', "host that holds the drives ('none' for no reservation)")
    .option('--drives-type <type>', 'drive reservation type', parsePrType)
    .option(
      '--changer-lease <duration>',
      'longest the changer holder may hold it before takeover calls it greedy (e.g. 480m)',
      parseDurationMs,
    )
    .option(
      '--drives-lease <duration>',
      'longest a drive holder may hold it before takeover calls it greedy',
      parseDurationMs,
    )
    .option('--purpose <purpose>', 'key purpose (default backup)')
    .option('--remove-others', 'remove registrations of keys of unlisted hosts')
    .option('--group-site <site>', 'group: agents of this site')
    .option('--group-label <key=value>', 'group: agents with this label (repeatable)', collectLabel)
    .option(
      '--expected-version <n>',
      'only if the stored version is this (0: only if absent)',
      parseUint32,
    )
    .requiredOption('--by <who>')
    .action(async (opts) => {
      if ((opts.loader === undefined) === (opts.group === undefined))
        program.error('error: give exactly one of --loader and --group', {
          exitCode: ExitCode.USAGE,
        });
      await run(async (client, output) => {
        const changer = reservation(opts.changerHolder, opts.changerType, opts.changerLease);
        const drives = reservation(opts.drivesHolder, opts.drivesType, opts.drivesLease);
        const r = await client.setDesiredState({
          scope: {
            scope:
              opts.loader !== undefined
                ? { $case: 'loaderId', value: opts.loader }
                : { $case: 'group', value: opts.group ?? '' },
          },
          state: {
            registeredAgentIds: opts.register ?? [],
            ...(changer ? { changer } : {}),
            ...(drives ? { drives } : {}),
            keyPurpose: opts.purpose ?? '',
            removeOthers: opts.removeOthers === true,
            groupSite: opts.groupSite ?? '',
            groupLabels: opts.groupLabel ?? [],
          },
          ...(opts.expectedVersion === undefined ? {} : { expectedVersion: opts.expectedVersion }),
          updatedBy: opts.by,
        });
        if (output === 'json') line(r);
        else {
          io.stdout(`stored version ${r.record?.version ?? 0}\n`);
          if (r.warnings.length) io.stdout(`${renderFindings(r.warnings)}\n`);
        }
        return ExitCode.OK;
      });
    });
}
