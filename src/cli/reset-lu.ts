/**
 * `prfleet reset-lu`: breaks an SPC-2 reservation or medium-removal prevention with a logical unit reset
 * (FleetService.ResetLogicalUnit; admin), refused while persistent reservations exist.
 */
import { msToDuration } from '../common/command.js';
import type { ResetLogicalUnitResponse } from '../gen/prfleet/v1/fleet.js';
import { Outcome } from '../gen/prfleet/v1/scsi.js';
import { ExitCode, exitCodeForResult } from './exit-codes.js';
import { printFleetLine, renderFindings } from './fleet-render.js';
import { parseDurationMs } from './parse.js';
import { terminalSafe } from './render.js';
import type { Cli } from './runner.js';

/** 0 for a dry run or a reset the device took; else the exit code of the device's answer. */
function exitCodeOf(r: ResetLogicalUnitResponse, dryRun: boolean): number {
  if (dryRun) return ExitCode.OK;
  return r.result !== undefined && r.result.outcome !== Outcome.OUTCOME_GOOD
    ? exitCodeForResult(r.result)
    : ExitCode.OK;
}

/** Adds `reset-lu`. */
export function registerResetLuCommand(cli: Cli): void {
  cli.program
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
      await cli.fleet(async (client, output) => {
        const r = await client.resetLogicalUnit({
          luId: opts.lu,
          agentId: opts.agent ?? '',
          path: opts.path ?? '',
          reason: opts.reason,
          dryRun: opts.dryRun === true,
          ...(opts.timeout === undefined ? {} : { commandTimeout: msToDuration(opts.timeout) }),
        });
        if (output === 'json') printFleetLine(cli.io, r);
        else {
          if (r.holds.length) cli.io.stdout(`${renderFindings(r.holds)}\n`);
          cli.io.stdout(`${terminalSafe(r.message)}\n`);
        }
        return exitCodeOf(r, opts.dryRun === true);
      });
    });
}
