/** `prfleet agents` and `prfleet devices`: what the server knows (ListAgents, ListDevices, every page). */
import { listAllAgents, listAllDevices } from '../common/pages.js';
import { ExitCode } from './exit-codes.js';
import { stringifyJson } from './json.js';
import { collectLabel, parseDeviceType } from './parse.js';
import { renderAgents, renderDevices } from './render.js';
import type { Cli } from './runner.js';

/** Deadline of calls that do not reach a device (ListAgents, ListDevices). */
const LIST_DEADLINE_MS = 15_000;

function registerAgents(cli: Cli): void {
  cli.program
    .command('agents')
    .description('list agents known to the server')
    .option('--site <site>', 'only agents of this site')
    .action(async (opts: { site?: string }) => {
      await cli.control(async (client, output) => {
        const agents = await listAllAgents(
          client,
          { site: opts.site ?? '' },
          { deadline: LIST_DEADLINE_MS },
        );
        cli.io.stdout(`${output === 'json' ? stringifyJson({ agents }) : renderAgents(agents)}\n`);
        return ExitCode.OK;
      });
    });
}

function registerDevices(cli: Cli): void {
  cli.program
    .command('devices')
    .description('list logical units (changers, drives) with every path to them')
    .option('--site <site>', 'only LUs seen by agents of this site')
    .option(
      '--label <key=value>',
      'only LUs seen by agents with this label (repeatable)',
      collectLabel,
    )
    .option(
      '--type <type>',
      'only LUs of this type: changer, tape, disk or a number',
      parseDeviceType,
    )
    .option('--loader <id>', 'only LUs of this loader')
    .action(async (opts: { site?: string; label?: string[]; type?: number; loader?: string }) => {
      await cli.control(async (client, output) => {
        const logicalUnits = await listAllDevices(
          client,
          {
            site: opts.site ?? '',
            labels: opts.label ?? [],
            ...(opts.type !== undefined ? { peripheralDeviceType: opts.type } : {}),
            loaderId: opts.loader ?? '',
          },
          { deadline: LIST_DEADLINE_MS },
        );
        cli.io.stdout(
          `${output === 'json' ? stringifyJson({ logicalUnits }) : renderDevices(logicalUnits)}\n`,
        );
        return ExitCode.OK;
      });
    });
}

/** Adds `agents` and `devices`. */
export function registerListingCommands(cli: Cli): void {
  registerAgents(cli);
  registerDevices(cli);
}
