/** `prfleet keys | reservation | caps | status`: the PERSISTENT RESERVE IN commands through one nexus or LU. */
import { parseUint32 } from './parse.js';
import {
  commandOptions,
  printResult,
  targetOf,
  timing,
  withTargetOptions,
} from './device-flags.js';
import type { Cli } from './runner.js';

/** The PRIN commands: name, what the result says it was, the ControlService call, help. */
const PRIN = [
  { name: 'keys', action: 'READ KEYS', call: 'readKeys', about: 'PRIN READ KEYS: registered keys' },
  {
    name: 'reservation',
    action: 'READ RESERVATION',
    call: 'readReservation',
    about: 'PRIN READ RESERVATION: holder and type',
  },
  {
    name: 'caps',
    action: 'REPORT CAPABILITIES',
    call: 'reportCapabilities',
    about: 'PRIN REPORT CAPABILITIES',
  },
  {
    name: 'status',
    action: 'READ FULL STATUS',
    call: 'readFullStatus',
    about: 'PRIN READ FULL STATUS: every registered nexus',
  },
] as const;

function registerPrin(cli: Cli, spec: (typeof PRIN)[number]): void {
  withTargetOptions(cli.program.command(spec.name).description(spec.about))
    .option('--allocation-length <bytes>', 'ALLOCATION LENGTH (default 8192)', parseUint32)
    .action(async (compact, opts) => {
      const target = targetOf(cli, compact, opts, false);
      const { timeoutMs, deadlineMs } = timing(opts);
      await cli.control(
        async (client, output) => {
          const request = {
            target,
            options: commandOptions(timeoutMs),
            allocationLength: opts.allocationLength ?? 0,
          };
          const response = await client[spec.call](request, { deadline: deadlineMs });
          return printResult(cli, spec.action, response.result, output);
        },
        { target, deadlineMs },
      );
    });
}

/** Adds the PRIN commands. */
export function registerPrinCommands(cli: Cli): void {
  for (const spec of PRIN) registerPrin(cli, spec);
}
