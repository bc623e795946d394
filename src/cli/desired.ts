/** `prfleet desired get | set`: the desired state per loader or group (FleetService desired state). */
import { msToDuration } from '../common/command.js';
import type {
  DesiredReservation,
  DesiredState,
  SetDesiredStateRequest,
} from '../gen/prfleet/v1/fleet.js';
import type { PrType } from '../gen/prfleet/v1/scsi.js';
import { ExitCode } from './exit-codes.js';
import { collect } from './fleet-flags.js';
import { fleetJson, printFleetLine, renderFindings } from './fleet-render.js';
import { collectLabel, parseDurationMs, parsePrType, parseUint32 } from './parse.js';
import type { Cli } from './runner.js';

type Group = ReturnType<Cli['program']['command']>;

function registerGet(cli: Cli, desired: Group): void {
  desired
    .command('get')
    .option('--loader <id>')
    .option('--group <name>')
    .action(async (opts: { loader?: string; group?: string }) => {
      await cli.fleet(async (client, output) => {
        const scope = opts.loader
          ? { scope: { $case: 'loaderId' as const, value: opts.loader } }
          : opts.group
            ? { scope: { $case: 'group' as const, value: opts.group } }
            : undefined;
        const r = await client.getDesiredState(scope ? { scope } : {});
        if (output === 'json') printFleetLine(cli.io, r);
        else
          for (const rec of r.records)
            cli.io.stdout(`${JSON.stringify(fleetJson(rec), null, 2)}\n`);
        return ExitCode.OK;
      });
    });
}

/** The `desired set` flags, as parsed. */
interface SetFlags {
  loader?: string;
  group?: string;
  register?: string[];
  changerHolder?: string;
  changerType?: PrType;
  drivesHolder?: string;
  drivesType?: PrType;
  changerLease?: number;
  drivesLease?: number;
  purpose?: string;
  removeOthers?: true;
  groupSite?: string;
  groupLabel?: string[];
  expectedVersion?: number;
  by: string;
}

/** A desired reservation from `--*-holder` ('none': no reservation), `--*-type` and `--*-lease`. */
function reservation(
  holder: string | undefined,
  type: PrType | undefined,
  leaseMs?: number,
): DesiredReservation | undefined {
  if (holder === undefined) return undefined;
  return {
    holderAgentId: holder === 'none' ? '' : holder,
    type: (type ?? 0) as PrType,
    lease: leaseMs === undefined ? undefined : msToDuration(leaseMs),
  };
}

function desiredStateOf(opts: SetFlags): DesiredState {
  return {
    registeredAgentIds: opts.register ?? [],
    // Absent (undefined) when not given: not sent.
    changer: reservation(opts.changerHolder, opts.changerType, opts.changerLease),
    drives: reservation(opts.drivesHolder, opts.drivesType, opts.drivesLease),
    keyPurpose: opts.purpose ?? '',
    removeOthers: opts.removeOthers === true,
    groupSite: opts.groupSite ?? '',
    groupLabels: opts.groupLabel ?? [],
  };
}

function setRequest(opts: SetFlags): SetDesiredStateRequest {
  return {
    scope: {
      scope:
        opts.loader !== undefined
          ? { $case: 'loaderId', value: opts.loader }
          : { $case: 'group', value: opts.group ?? '' },
    },
    state: desiredStateOf(opts),
    ...(opts.expectedVersion === undefined ? {} : { expectedVersion: opts.expectedVersion }),
    updatedBy: opts.by,
  };
}

function registerSet(cli: Cli, desired: Group): void {
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
    .action(async (opts: SetFlags) => {
      if ((opts.loader === undefined) === (opts.group === undefined))
        cli.usage('give exactly one of --loader and --group');
      await cli.fleet(async (client, output) => {
        const r = await client.setDesiredState(setRequest(opts));
        if (output === 'json') printFleetLine(cli.io, r);
        else {
          cli.io.stdout(`stored version ${r.record?.version ?? 0}\n`);
          if (r.warnings.length) cli.io.stdout(`${renderFindings(r.warnings)}\n`);
        }
        return ExitCode.OK;
      });
    });
}

/** Adds `desired get` and `desired set`. */
export function registerDesiredCommands(cli: Cli): void {
  const desired = cli.program.command('desired').description('desired state per loader or group');
  registerGet(cli, desired);
  registerSet(cli, desired);
}
