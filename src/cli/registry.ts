/** `prfleet registry list | allocate | revoke | decode`: the reservation-key registry (FleetService keys). */
import type { KeyRecord } from '../gen/prfleet/v1/fleet.js';
import { formatKey } from '../common/key-layout.js';
import { listAllKeys } from '../common/pages.js';
import { ExitCode } from './exit-codes.js';
import { printFleetLine } from './fleet-render.js';
import { parseKeyOption } from './parse.js';
import { plainTable } from './render.js';
import type { Cli, OutputFormat } from './runner.js';

/** Key records as a table, or one JSON line. */
function printKeys(cli: Cli, records: readonly KeyRecord[], output: OutputFormat): void {
  if (output === 'json') return printFleetLine(cli.io, { keys: records });
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
  cli.io.stdout(`${table.toString()}\n`);
}

type Group = ReturnType<Cli['program']['command']>;

function registerList(cli: Cli, keys: Group): void {
  keys
    .command('list')
    .option('--agent <id>')
    .option('--site <site>')
    .option('--purpose <purpose>')
    .option('--all', 'include revoked keys')
    .action(async (opts: { agent?: string; site?: string; purpose?: string; all?: true }) => {
      await cli.fleet(async (client, output) => {
        const keys = await listAllKeys(client, {
          agentId: opts.agent ?? '',
          site: opts.site ?? '',
          purpose: opts.purpose ?? '',
          includeRevoked: opts.all === true,
        });
        printKeys(cli, keys, output);
        return ExitCode.OK;
      });
    });
}

function registerAllocate(cli: Cli, keys: Group): void {
  keys
    .command('allocate')
    .requiredOption('--agent <id>', 'host the key is for')
    .requiredOption('--site <site>')
    .requiredOption('--owner <who>', 'person, team or application answerable for it')
    .option('--purpose <purpose>', 'backup, restore, admin, maintenance or test', 'backup')
    .option('--note <text>')
    .action(
      async (opts: {
        agent: string;
        site: string;
        owner: string;
        purpose: string;
        note?: string;
      }) => {
        await cli.fleet(async (client, output) => {
          const r = await client.allocateKey({
            agentId: opts.agent,
            site: opts.site,
            owner: opts.owner,
            purpose: opts.purpose,
            note: opts.note ?? '',
          });
          printKeys(cli, r.key ? [r.key] : [], output);
          return ExitCode.OK;
        });
      },
    );
}

function registerRevoke(cli: Cli, keys: Group): void {
  keys
    .command('revoke')
    .argument('<key>', 'the key', parseKeyOption)
    .requiredOption('--by <who>')
    .option('--reason <text>')
    .action(async (key: bigint, opts: { by: string; reason?: string }) => {
      await cli.fleet(async (client, output) => {
        const r = await client.revokeKey({ key, revokedBy: opts.by, reason: opts.reason ?? '' });
        printKeys(cli, r.key ? [r.key] : [], output);
        return ExitCode.OK;
      });
    });
}

function registerDecode(cli: Cli, keys: Group): void {
  keys
    .command('decode')
    .argument('<key>', 'any 8-byte key', parseKeyOption)
    .action(async (key: bigint) => {
      await cli.fleet(async (client, output) => {
        const r = await client.decodeKey({ key });
        if (output === 'json') printFleetLine(cli.io, { key, ...r });
        else
          cli.io.stdout(
            `${formatKey(key)}: ${r.owner?.summary ?? ''} (${r.layout}, ${r.confidence})\n`,
          );
        return ExitCode.OK;
      });
    });
}

/** Adds `registry` and its subcommands. */
export function registerRegistryCommands(cli: Cli): void {
  const keys = cli.program
    .command('registry')
    .description('the reservation-key registry (allocate, list, revoke, decode keys)');
  registerList(cli, keys);
  registerAllocate(cli, keys);
  registerRevoke(cli, keys);
  registerDecode(cli, keys);
}
