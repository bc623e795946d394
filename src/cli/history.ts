/**
 * `prfleet history list|verify`: the server's hash-chained PROUT history (ListHistory, VerifyHistory). Wire it
 * into the program with {@link registerHistoryCommands}.
 */
import { Option } from '@commander-js/extra-typings';
import {
  historyProblemToJSON,
  type HistoryEntry,
  type ListHistoryRequest,
  type VerifyHistoryResponse,
} from '../gen/prfleet/v1/control.js';
import { formatKey } from '../scsi/keys.js';
import type { CliControlClient } from './client.js';
import { stringifyJson } from './json.js';
import type { Cli } from './runner.js';
import { parseUint32 } from './parse.js';
import { outcomeWords, plainTable, prTypeShortName } from './render.js';

/** Exit code of `history verify` when the chain is broken: prfleet's own (42/43 are the fleet commands'). */
export const HISTORY_BROKEN_EXIT_CODE = 44;

/** Deadline of one ListHistory page. */
const PAGE_DEADLINE_MS = 30_000;
/** Deadline of VerifyHistory: it reads the whole chain (about 1 s per 10,000 entries on PGlite). */
const VERIFY_DEADLINE_MS = 300_000;
/** Entries per ListHistory call (the server's maximum). */
const PAGE_SIZE = 1000;

function registerList(cli: Cli, history: ReturnType<Cli['program']['command']>): void {
  history
    .command('list')
    .description('list PROUTs sent, oldest first: who, where, keys, outcome, reason')
    .option('--lu <id>', 'only this logical unit')
    .option('--agent <id>', 'only PROUTs sent through this agent')
    .addOption(
      new Option('--limit <n>', 'at most this many entries (the newest are left out)')
        .argParser(parseUint32)
        .default(100),
    )
    .option('--after <seq>', 'only entries after this position (continue a listing)', parseUint32)
    .action(async (opts: { lu?: string; agent?: string; limit: number; after?: number }) => {
      await cli.control(async (client, output) => {
        const entries = await listHistory(client, {
          luId: opts.lu ?? '',
          agentId: opts.agent ?? '',
          limit: opts.limit,
          afterSeq: opts.after ?? 0,
        });
        cli.io.stdout(
          `${output === 'json' ? stringifyJson({ entries: entries.map(historyEntryJson) }) : renderHistory(entries)}\n`,
        );
        return 0;
      });
    });
}

function registerVerify(cli: Cli, history: ReturnType<Cli['program']['command']>): void {
  history
    .command('verify')
    .description(
      `check the hash chain end to end; exit ${HISTORY_BROKEN_EXIT_CODE} and name the first bad entry when it was altered`,
    )
    .action(async () => {
      await cli.control(async (client, output) => {
        const verdict = await client.verifyHistory({}, { deadline: VERIFY_DEADLINE_MS });
        cli.io.stdout(
          `${output === 'json' ? stringifyJson(verificationJson(verdict)) : renderVerification(verdict)}\n`,
        );
        return verdict.ok ? 0 : HISTORY_BROKEN_EXIT_CODE;
      });
    });
}

/** Adds `history list` and `history verify`: exit 0, 44 for a broken chain, or the RPC error's code. */
export function registerHistoryCommands(cli: Cli): void {
  const history = cli.program
    .command('history')
    .description(
      'the tamper-evident history of every PROUT the server sent (needs a server with a durable store)',
    );
  registerList(cli, history);
  registerVerify(cli, history);
}

/** Reads up to `limit` entries, page by page. */
export async function listHistory(
  client: CliControlClient,
  filter: { luId: string; agentId: string; limit: number; afterSeq: number },
): Promise<HistoryEntry[]> {
  const entries: HistoryEntry[] = [];
  let pageToken = filter.afterSeq > 0 ? String(filter.afterSeq) : '';
  while (entries.length < filter.limit) {
    const request: ListHistoryRequest = {
      luId: filter.luId,
      agentId: filter.agentId,
      pageSize: Math.min(PAGE_SIZE, filter.limit - entries.length),
      pageToken,
    };
    const page = await client.listHistory(request, { deadline: PAGE_DEADLINE_MS });
    entries.push(...page.entries);
    pageToken = page.nextPageToken;
    if (pageToken === '') break;
  }
  return entries;
}

/** One entry in the CLI's JSON conventions (keys as 16 hex digits, names for enums). */
export function historyEntryJson(entry: HistoryEntry): Record<string, unknown> {
  const { action: _action, actionName, ...rest } = entry;
  return { ...rest, action: actionName };
}

function verificationJson(verdict: VerifyHistoryResponse): Record<string, unknown> {
  return {
    ok: verdict.ok,
    checked: verdict.checked,
    ...(verdict.ok ? { headHash: verdict.headHash } : {}),
    ...(verdict.fault === undefined
      ? {}
      : {
          fault: {
            problem: historyProblemToJSON(verdict.fault.problem),
            seq: verdict.fault.seq,
            message: verdict.fault.message,
          },
        }),
  };
}

/** Short words for a PROUT service action name, e.g. "register", "preempt-and-abort". */
function actionWords(name: string): string {
  return name
    .replace(/^PROUT_ACTION_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

/** Table of history entries. */
export function renderHistory(entries: readonly HistoryEntry[]): string {
  if (entries.length === 0) return 'No PROUT in the history (for this filter).';
  const table = plainTable({
    head: [
      '#',
      'time',
      'who',
      'initiator',
      'lu',
      'action',
      'key',
      'sa key',
      'type',
      'outcome',
      'reason',
    ],
  });
  for (const e of entries) {
    table.push([
      e.seq.toString(),
      e.time?.toISOString() ?? '-',
      e.actor,
      `${e.agentId}:${e.path}`,
      e.luId,
      actionWords(e.actionName),
      formatKey(e.reservationKey),
      formatKey(e.serviceActionKey),
      e.type === undefined ? '-' : prTypeShortName(e.type),
      outcomeWords(e.outcome),
      e.reason === '' ? '-' : e.reason,
    ]);
  }
  return table.toString();
}

/** Words for a verdict. */
export function renderVerification(verdict: VerifyHistoryResponse): string {
  if (verdict.ok)
    return `History intact: ${verdict.checked} entries, every hash and link checks out. Head ${verdict.headHash}.`;
  const fault = verdict.fault;
  return [
    `History BROKEN at entry ${fault?.seq ?? '?'} (${
      fault === undefined
        ? 'unknown'
        : historyProblemToJSON(fault.problem)
            .replace(/^HISTORY_PROBLEM_/, '')
            .toLowerCase()
    }): ${fault?.message ?? ''}`,
    `${verdict.checked} entries before it check out. Someone with database access changed the history; keep a copy of the database for investigation.`,
  ].join('\n');
}
