/**
 * `prfleet watch`: the fleet's events as they happen (FleetService.Watch), one line each, in words or as JSON
 * lines; resumes by itself after a dropped connection from the last cursor it printed.
 */
import { InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { Status } from 'nice-grpc-common';
import { ErrorInfo, RichClientError } from 'nice-grpc-error-details';
import {
  EventKind,
  eventKindFromJSON,
  eventKindToJSON,
  type FleetEvent,
  type WatchRequest,
  type WatchSnapshot,
} from '../gen/prfleet/v1/events.js';
import { delay } from '../common/delay.js';
import { eventToJson, snapshotToJson } from '../common/event-json.js';
import { formatKey } from '../common/key-layout.js';
import type { CliFleetClient } from './client.js';
import { collect } from './fleet-flags.js';
import { parseUint32 } from './parse.js';
import type { Cli, CliIo, OutputFormat } from './runner.js';

/** Backoff between reconnects, ms. */
const BACKOFF = { initialMs: 500, maxMs: 15_000 };

/** `--kind` values: the EventKind names without the prefix, in lower case with dashes. */
export const KIND_NAMES = Object.values(EventKind)
  .filter((v): v is EventKind => typeof v === 'number' && Number(v) > 0)
  .map((k) => kindName(k));

function kindName(kind: EventKind): string {
  return eventKindToJSON(kind)
    .replace(/^EVENT_KIND_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

function parseKind(value: string, previous: EventKind[] = []): EventKind[] {
  const kind = eventKindFromJSON(`EVENT_KIND_${value.toUpperCase().replace(/-/g, '_')}`);
  if (kind === EventKind.UNRECOGNIZED || kind === EventKind.EVENT_KIND_UNSPECIFIED)
    throw new InvalidArgumentError(`unknown event kind (one of ${KIND_NAMES.join(', ')})`);
  return [...previous, kind];
}

function parseCursor(value: string): bigint {
  if (!/^\d{1,19}$/.test(value)) throw new InvalidArgumentError('not a cursor (a number)');
  return BigInt(value);
}

/** One event in words: time, site, loader, LU, what happened, who. */
export function renderEvent(e: FleetEvent): string {
  const where = [e.site || '-', e.loaderId || '-', e.luId || '-'].join('  ');
  const nexus = e.agentId === '' ? '' : `${e.agentId}${e.path === '' ? '' : `:${e.path}`}`;
  const who =
    e.actor === '' || e.actor === e.agentId
      ? nexus
      : nexus === ''
        ? e.actor
        : `${e.actor} via ${nexus}`;
  return `${e.time?.toISOString() ?? '-'}  ${where}  ${kindName(e.kind).toUpperCase()}: ${e.summary}${who === '' ? '' : `  (${who})`}`;
}

/** A snapshot in words: one line per agent and per LU. */
export function renderSnapshot(s: WatchSnapshot): string {
  const lines = [
    `snapshot at cursor ${s.cursor}: ${s.agents.length} agents, ${s.logicalUnits.length} logical units`,
  ];
  for (const a of s.agents)
    lines.push(
      `  agent ${a.agentId} (${a.site || 'no site'}): ${a.connected ? 'connected' : 'offline'}, ${a.paths} paths`,
    );
  for (const u of s.logicalUnits) {
    const st = u.state;
    const holder =
      st === undefined
        ? 'never observed'
        : st.reserved
          ? `held by ${formatKey(st.holderKey)}`
          : 'not reserved';
    const keys =
      st === undefined ? '' : `, ${st.keys.length} registrations, PRgeneration ${st.generation}`;
    const findings = u.findings.length === 0 ? '' : `, ${u.findings.length} findings`;
    lines.push(`  ${u.loaderId || '-'}  ${u.luId}: ${holder}${keys}${findings}`);
  }
  return lines.join('\n');
}

/** ErrorInfo.reason of an RPC error, if any. */
function reasonOf(error: unknown): string | undefined {
  if (!(error instanceof RichClientError)) return undefined;
  const info = error.extra.find((d) => d.$type === ErrorInfo.$type);
  return info?.$type === ErrorInfo.$type ? info.reason : undefined;
}

/** Errors after which watching again may work: the connection or the server went away, or we were too slow. */
function resumable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return (
    code === Status.UNAVAILABLE ||
    code === Status.INTERNAL ||
    code === Status.UNKNOWN ||
    code === Status.CANCELLED ||
    code === Status.DEADLINE_EXCEEDED ||
    (code === Status.RESOURCE_EXHAUSTED && reasonOf(error) === 'WATCHER_TOO_SLOW')
  );
}

interface WatchLoop {
  readonly request: Omit<WatchRequest, 'afterCursor' | 'snapshot'>;
  after: bigint | undefined;
  snapshot: boolean;
  readonly maxEvents: number | undefined;
  printed: number;
}

/** Streams until the limit, printing each message; returns when done, throws what ended the stream. */
async function streamOnce(
  client: CliFleetClient,
  loop: WatchLoop,
  print: (line: string) => void,
  output: OutputFormat,
): Promise<'done' | 'ended'> {
  const ac = new AbortController();
  const request: WatchRequest = {
    ...loop.request,
    ...(loop.after === undefined ? {} : { afterCursor: loop.after }),
    snapshot: loop.snapshot,
  };
  try {
    for await (const message of client.watch(request, { signal: ac.signal })) {
      if (message.message?.$case === 'snapshot') {
        const s = message.message.value;
        print(
          output === 'json' ? JSON.stringify({ snapshot: snapshotToJson(s) }) : renderSnapshot(s),
        );
        loop.snapshot = false;
        loop.after = s.cursor;
      } else if (message.message?.$case === 'event') {
        const e = message.message.value;
        print(output === 'json' ? JSON.stringify(eventToJson(e)) : renderEvent(e));
        loop.after = e.cursor;
        loop.printed += 1;
        if (loop.maxEvents !== undefined && loop.printed >= loop.maxEvents) {
          ac.abort();
          return 'done';
        }
      }
    }
    return 'ended';
  } catch (error) {
    if (ac.signal.aborted) return 'done';
    throw error;
  }
}

/**
 * Watches until the limit or an error that resuming cannot fix: a dropped connection, a restarting server and a
 * watch ended for falling behind are resumed after the last cursor, with exponential backoff and jitter; a
 * cursor gone from the retention is resumed from a fresh snapshot, saying so.
 */
async function watchLoop(
  io: CliIo,
  client: CliFleetClient,
  loop: WatchLoop,
  output: OutputFormat,
): Promise<number> {
  const backoff = BACKOFF;
  let backoffMs = backoff.initialMs;
  const print = (line: string) => io.stdout(`${line}\n`);
  for (;;) {
    const before = loop.printed;
    try {
      if ((await streamOnce(client, loop, print, output)) === 'done') return 0;
      io.stderr('prfleet: the server ended the watch; resuming\n');
    } catch (error) {
      if (reasonOf(error) === 'CURSOR_EXPIRED' || reasonOf(error) === 'CURSOR_AHEAD') {
        io.stderr(
          `prfleet: events after cursor ${loop.after ?? '?'} are no longer in the server's log (${(error as Error).message}); starting again from a snapshot\n`,
        );
        loop.after = undefined;
        loop.snapshot = true;
        continue;
      }
      if (!resumable(error)) throw error;
      if (loop.printed > before) backoffMs = backoff.initialMs;
      const wait = Math.round(backoffMs * (0.5 + Math.random() / 2));
      io.stderr(
        `prfleet: watch interrupted (${(error as Error).message}); resuming after cursor ${loop.after ?? 'now'} in ${wait} ms\n`,
      );
      await delay(wait);
      backoffMs = Math.min(backoffMs * 2, backoff.maxMs);
    }
  }
}

/** Adds `prfleet watch` to `program`. */
export function registerWatchCommand(cli: Cli): void {
  cli.program
    .command('watch')
    .description(
      'print fleet events as they happen: agents, paths, PROUTs, unit attentions, reservation changes, findings (resumes by itself)',
    )
    .option('--site <site>', 'only events of agents of this site, or of LUs they see')
    .option('--loader <id>', 'only events of LUs of this loader (repeatable)', collect)
    .option('--lu <id>', 'only events of this LU (repeatable)', collect)
    .option('--agent <id>', 'only events of this agent (repeatable)', collect)
    .addOption(
      new Option(
        '--kind <kind>',
        `only this kind of event (repeatable): ${KIND_NAMES.join(', ')}`,
      ).argParser(parseKind),
    )
    .option(
      '--after <cursor>',
      'start after this cursor (0: every event the server still keeps)',
      parseCursor,
    )
    .option('--snapshot', 'start with the current state of the selected LUs and agents')
    .option('--max-events <n>', 'exit after this many events', parseUint32)
    .action(async (opts) => {
      await cli.fleet(async (client, output) => {
        const loop: WatchLoop = {
          request: {
            site: opts.site ?? '',
            loaderIds: opts.loader ?? [],
            luIds: opts.lu ?? [],
            agentIds: opts.agent ?? [],
            kinds: opts.kind ?? [],
          },
          after: opts.after,
          snapshot: opts.snapshot === true,
          maxEvents: opts.maxEvents,
          printed: 0,
        };
        return watchLoop(cli.io, client, loop, output);
      });
    });
}
