/**
 * What every act of the demo scenario shares: the narration (numbered steps), the counters of the final summary,
 * the outcome checks that make `make demo` fail when the system does something else, and the demo fabric's hosts,
 * keys and LUs.
 */
import Table from 'cli-table3';
import type { CliControlClient } from '../cli/client.js';
import { senseWords } from '../cli/render.js';
import type { LogicalUnit, Target } from '../gen/prfleet/v1/control.js';
import { Outcome, outcomeToJSON, type CommandResult } from '../gen/prfleet/v1/scsi.js';
import { formatKey } from '../scsi/keys.js';

/** The scenario did not go as told (a bug in prfleet, or in the demo). */
export class DemoError extends Error {
  override readonly name = 'DemoError';
}

/** Where the demo writes. */
export interface DemoOutput {
  /** Writes text (already ends with a newline). */
  readonly write: (text: string) => void;
}

/** Counters shown in the final summary. */
export interface DemoSummary {
  /** Commands sent to devices (PRIN + PROUT). */
  commands: number;
  /** RESERVATION CONFLICT results seen. */
  conflicts: number;
  /** Unit attentions consumed and reported. */
  unitAttentions: number;
  /** Commands refused up front with FAILED_PRECONDITION. */
  refusedUpFront: number;
}

/** Deadline per demo RPC: generous for a loaded laptop, short enough that a hang ends the demo. */
export const RPC_DEADLINE_MS = 20_000;
/** Device command timeout sent with each command. */
export const COMMAND_TIMEOUT = { seconds: 10n, nanos: 0 };

/** The three hosts of examples/fabric-demo.yaml and the keys the demo registers for them. */
export const HOSTS = [
  { id: 'host-a', role: 'backup server A', key: 0xaaaan },
  { id: 'host-b', role: 'backup server B', key: 0xbbbbn },
  { id: 'host-c', role: '"greedy" host C', key: 0xccccn },
] as const;

export type HostId = (typeof HOSTS)[number]['id'];

export function hostOfKey(key: bigint): string {
  return HOSTS.find((h) => h.key === key)?.id ?? 'unknown';
}

export function keyOf(host: HostId): bigint {
  const found = HOSTS.find((h) => h.id === host);
  if (!found) throw new DemoError(`no key for ${host}`);
  return found.key;
}

export function table(head: string[]): Table.Table {
  return new Table({ head, style: { head: [], border: [] } });
}

/** The narration, the RPC client and the summary's counters. */
export interface Story {
  readonly client: CliControlClient;
  /** Call options of every demo RPC. */
  readonly call: { readonly deadline: number };
  readonly summary: DemoSummary;
  /** Starts the next numbered step. */
  say(title: string, sentence: string): void;
  /** Writes `text` and a newline. */
  show(text: string): void;
  /** Counts a result, checks its outcome, and notes conflicts and unit attentions. */
  expectOutcome(result: CommandResult | undefined, expected: Outcome, what: string): CommandResult;
}

/** A story told to `out` through `client`, at step 0 with every counter at 0. */
export function createStory(client: CliControlClient, out: DemoOutput): Story {
  const summary: DemoSummary = { commands: 0, conflicts: 0, unitAttentions: 0, refusedUpFront: 0 };
  let step = 0;
  return {
    client,
    call: { deadline: RPC_DEADLINE_MS },
    summary,
    say: (title, sentence) => out.write(`\n── Step ${++step}: ${title}\n${sentence}\n`),
    show: (text) => out.write(`${text}\n`),
    expectOutcome(result, expected, what) {
      if (!result) throw new DemoError(`${what}: the server returned no result`);
      summary.commands++;
      if (result.outcome === Outcome.OUTCOME_RESERVATION_CONFLICT) summary.conflicts++;
      summary.unitAttentions += result.unitAttentions.length;
      if (result.outcome !== expected) {
        throw new DemoError(
          `${what}: expected ${outcomeToJSON(expected)}, got ${outcomeToJSON(result.outcome)}` +
            (result.sense ? ` (${senseWords(result.sense)})` : '') +
            (result.message ? `: ${result.message}` : ''),
        );
      }
      return result;
    },
  };
}

/** The loader the story plays on: its changer and its drive. */
export interface Stage {
  readonly changer: LogicalUnit;
  readonly drive: LogicalUnit;
}

/** Every path `host` has to `lu`. */
export function pathsOf(lu: LogicalUnit, host: HostId): Target[] {
  return lu.paths
    .filter((p) => p.agentId === host && p.path)
    .map((p) => ({ luId: lu.luId, agentId: host, path: p.path?.path ?? '' }));
}

/** The first path `host` has to `lu`. */
export function firstPath(lu: LogicalUnit, host: HostId): Target {
  const target = pathsOf(lu, host)[0];
  if (!target) throw new DemoError(`${host} has no path to ${lu.luId}`);
  return target;
}

/** `lu` by LU id alone: the server picks the path. */
export function anyPath(lu: LogicalUnit): Target {
  return { luId: lu.luId, agentId: '', path: '' };
}

/** e.g. `loader1 changer`. */
export function luName(lu: LogicalUnit): string {
  return `${lu.loaderId} ${lu.peripheralDeviceType === 8 ? 'changer' : 'drive'}`;
}

/** `host (key)` of a reservation holder's key. */
export function holderName(key: bigint): string {
  return `${hostOfKey(key)} (${formatKey(key)})`;
}

/** READ KEYS data with the host each key belongs to. */
export function renderKeysWithOwners(result: CommandResult, what: string): string {
  if (result.data?.$case !== 'readKeys') return `${what}: no key data`;
  const t = table(['#', 'registered key', 'host']);
  result.data.value.keys.forEach((key, i) =>
    t.push([String(i + 1), formatKey(key), hostOfKey(key)]),
  );
  return `Keys on the ${what} (PRgeneration ${result.data.value.generation}), one per registered nexus:\n${t.toString()}`;
}
