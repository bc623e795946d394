/**
 * `prfleet loaders` and `prfleet who-holds`: the loader as a whole (FleetService.ListLoaders): each drive with the
 * cartridge loaded and who holds it, the changer's holder, slot occupancy, and the one-line answer to "who holds
 * drive 1 of loader 3, and what tape is in it?".
 */
import {
  type ListLoadersRequest,
  type Loader,
  type LoaderDrive,
  type LoaderHold,
} from '../gen/prfleet/v1/fleet.js';
import { listAllLoaders } from '../common/pages.js';
import { formatKey } from '../scsi/keys.js';
import { ExitCode } from './exit-codes.js';
import { collect } from './fleet-flags.js';
import { printFleetLine } from './fleet-render.js';
import { plainTable, prTypeShortName, terminalSafe } from './render.js';
import type { Cli } from './runner.js';

/** Names the host of a key the server could not attribute (the demo knows its hosts' keys). */
export type KeyNamer = (key: bigint) => string | undefined;

/** "host-c:/dev/sg1 0x000000000000cccc EA", "unreserved", or why it is not known. */
export function holdWords(hold: LoaderHold | undefined, nameKey?: KeyNamer): string {
  if (hold === undefined) return 'unknown';
  if (hold.error !== '') return `unknown (${terminalSafe(hold.error)})`;
  if (!hold.reserved) return 'unreserved';
  const host = hold.agentId || nameKey?.(hold.key) || '';
  const who = host === '' ? 'unknown host' : `${host}${hold.path ? `:${hold.path}` : ''}`;
  const offline = hold.agentId !== '' && !hold.holderOnline ? ' (offline)' : '';
  return `${who}${offline} ${formatKey(hold.key)} ${prTypeShortName(hold.type)}`;
}

function cartridgeWords(drive: LoaderDrive): string {
  if (!drive.full) return 'empty';
  const tag = drive.barcode === '' ? 'a cartridge' : terminalSafe(drive.barcode);
  return drive.sourceSlot > 0 ? `${tag} (from slot ${drive.sourceSlot})` : tag;
}

/** The loaders as tables: one row per changer and drive, then slot occupancy. */
export function renderLoaders(loaders: readonly Loader[], nameKey?: KeyNamer): string {
  if (loaders.length === 0) return 'no loaders (no agent reports a medium changer)';
  const table = plainTable({ head: ['loader', 'element', 'lu', 'cartridge', 'held by', 'slots'] });
  for (const l of loaders) {
    const full = l.slots.filter((s) => s.full && !s.mail).length;
    const storage = l.slots.filter((s) => !s.mail).length;
    const mail = l.slots.filter((s) => s.mail);
    const slots =
      l.error !== ''
        ? `unknown: ${terminalSafe(l.error)}`
        : `${full}/${storage} full${mail.length ? `, mail ${mail.some((s) => s.full) ? 'full' : 'empty'}` : ''}`;
    table.push([
      terminalSafe(l.loaderId),
      'changer',
      l.changerLuId,
      '',
      holdWords(l.changerHold, nameKey),
      slots,
    ]);
    for (const d of l.drives)
      table.push([
        '',
        `drive ${d.index}`,
        d.luId || terminalSafe(d.identifier) || '?',
        cartridgeWords(d),
        holdWords(d.hold, nameKey),
        '',
      ]);
  }
  return table.toString();
}

/** One line for `who`: a drive LU id, `<loader>:<drive index>`, or a barcode; undefined when nothing matches. */
export function whoHolds(loaders: readonly Loader[], who: string): string | undefined {
  for (const l of loaders) {
    for (const d of l.drives) {
      const names = [d.luId, `${l.loaderId}:${d.index}`, d.full ? d.barcode : ''].filter(
        (n) => n !== '',
      );
      if (!names.includes(who)) continue;
      return `${d.luId || `drive ${d.index}`} (drive ${d.index} of ${terminalSafe(l.loaderId)}): held by ${holdWords(d.hold)}; cartridge ${cartridgeWords(d)}`;
    }
    if (l.changerLuId === who || l.loaderId === who)
      return `${l.changerLuId} (changer of ${terminalSafe(l.loaderId)}): held by ${holdWords(l.changerHold)}`;
    const slot = l.slots.find((s) => s.full && s.barcode === who);
    if (slot)
      return `${terminalSafe(who)} is in ${slot.mail ? 'the mail slot' : `slot ${slot.number}`} of ${terminalSafe(l.loaderId)} (no drive holds it)`;
  }
  return undefined;
}

function requestOf(opts: {
  loader?: string[];
  site?: string;
  refresh?: boolean;
}): Partial<ListLoadersRequest> {
  return {
    selector: { loaderIds: opts.loader ?? [], luIds: [], site: opts.site ?? '', labels: [] },
    maxAge: undefined,
    refresh: opts.refresh === true,
    commandTimeout: undefined,
  };
}

function registerLoaders(cli: Cli): void {
  cli.program
    .command('loaders')
    .description(
      'each loader: drives with the cartridge loaded and who holds them, the changer, slots',
    )
    .option('--loader <id>', 'only this loader (repeatable)', collect)
    .option('--site <site>', 'only paths of agents of this site')
    .option('--refresh', 'read every changer now (else a view up to 60 s old is reused)')
    .action(async (opts: { loader?: string[]; site?: string; refresh?: true }) => {
      await cli.fleet(async (client, output) => {
        const loaders = await listAllLoaders(client, requestOf(opts));
        if (output === 'json') loaders.forEach((l) => printFleetLine(cli.io, l));
        else cli.io.stdout(`${renderLoaders(loaders)}\n`);
        return ExitCode.OK;
      });
    });
}

function registerWhoHolds(cli: Cli): void {
  cli.program
    .command('who-holds')
    .description(
      'who holds a drive (LU id, or <loader>:<drive index>) or a cartridge (barcode), in one line',
    )
    .argument('<drive-or-barcode>')
    .option('--refresh', 'read every changer now')
    .action(async (who: string, opts: { refresh?: true }) => {
      await cli.fleet(async (client, output) => {
        const loaders = await listAllLoaders(client, requestOf(opts));
        const answer = whoHolds(loaders, who);
        if (output === 'json') printFleetLine(cli.io, { query: who, answer: answer ?? null });
        else
          cli.io.stdout(
            `${answer ?? `nothing named ${JSON.stringify(terminalSafe(who))} in any loader`}\n`,
          );
        // Nothing by that name: the exit code of a NOT_FOUND answer.
        return answer === undefined ? ExitCode.RPC_NOT_FOUND : ExitCode.OK;
      });
    });
}

/** Adds `loaders` and `who-holds`. */
export function registerLoaderCommands(cli: Cli): void {
  registerLoaders(cli);
  registerWhoHolds(cli);
}
