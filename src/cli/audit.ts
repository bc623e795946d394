/**
 * `prfleet audit`: reads every selected LU through every path (FleetService.Audit) and reports keys, owners,
 * holders and findings: tables for people (with a progress bar on stderr while it runs), or one JSON line per
 * event as it arrives. Exit 43 when any finding is critical.
 */
import { createRequire } from 'node:module';
import {
  Severity,
  type AuditResponse,
  type AuditSummary,
  type LogicalUnitReport,
} from '../gen/prfleet/v1/fleet.js';
import { ExitCode } from './exit-codes.js';
import { selectorOf, withSelector } from './fleet-flags.js';
import { printFleetLine, renderFindings, renderReports, summaryLine } from './fleet-render.js';
import { parseUint32 } from './parse.js';
import type { Cli, CliIo, OutputFormat } from './runner.js';

interface ProgressBar {
  start(total: number, value: number, payload?: Record<string, unknown>): void;
  update(value: number, payload?: Record<string, unknown>): void;
  setTotal(total: number): void;
  stop(): void;
}

function progressBar(io: CliIo): ProgressBar | undefined {
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

/** What the audit stream has said so far. */
interface AuditTally {
  readonly reports: LogicalUnitReport[];
  summary: AuditSummary | undefined;
  started: boolean;
}

/** Takes in one audit message: JSON line, progress bar, reports, summary. */
function takeIn(
  cli: Cli,
  e: AuditResponse,
  tally: AuditTally,
  output: OutputFormat,
  bar: ProgressBar | undefined,
): void {
  const ev = e.event;
  // batch_reports: reports completed together come in one message; shown one by one.
  if (ev?.$case === 'reports') {
    for (const report of ev.value.reports) {
      if (output === 'json') printFleetLine(cli.io, { $case: 'report', value: report });
      tally.reports.push(report);
    }
    return;
  }
  if (output === 'json') printFleetLine(cli.io, ev);
  if (ev?.$case === 'progress') {
    const payload = { commands: ev.value.commandsSent, findings: ev.value.findings };
    if (!tally.started) bar?.start(ev.value.logicalUnitsTotal, ev.value.logicalUnitsDone, payload);
    else bar?.update(ev.value.logicalUnitsDone, payload);
    tally.started = true;
  } else if (ev?.$case === 'report') tally.reports.push(ev.value);
  else if (ev?.$case === 'summary') tally.summary = ev.value;
}

/** Adds `audit`. */
export function registerAuditCommand(cli: Cli): void {
  withSelector(
    cli.program
      .command('audit')
      .description('read every LU through every path; report keys, owners, holders and findings'),
  )
    .option('--max-concurrency <n>', 'commands in flight overall (default 256)', parseUint32)
    .option('--max-per-agent <n>', 'commands in flight per agent (default 8)', parseUint32)
    .option('--findings-only', 'print only the findings table')
    .action(async (opts) => {
      await cli.fleet(async (client, output) => {
        const bar = output === 'table' ? progressBar(cli.io) : undefined;
        const tally: AuditTally = { reports: [], summary: undefined, started: false };
        const request = {
          selector: selectorOf(opts),
          maxConcurrency: opts.maxConcurrency ?? 0,
          maxPerAgent: opts.maxPerAgent ?? 0,
          batchReports: true,
        };
        for await (const e of client.audit(request)) takeIn(cli, e, tally, output, bar);
        bar?.stop();
        const findings = [
          ...tally.reports.flatMap((r) => r.findings),
          ...(tally.summary?.loaderFindings ?? []),
        ];
        if (output === 'table') {
          if (!opts.findingsOnly) cli.io.stdout(`${renderReports(tally.reports)}\n`);
          cli.io.stdout(`${renderFindings(findings)}\n`);
          if (tally.summary) cli.io.stdout(`${summaryLine(tally.summary)}\n`);
        }
        return findings.some((f) => f.severity === Severity.SEVERITY_CRITICAL)
          ? ExitCode.AUDIT_CRITICAL
          : ExitCode.OK;
      });
    });
}
