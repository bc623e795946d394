#!/usr/bin/env node
/**
 * fence_prfleet: a fence agent for cluster managers (pacemaker/stonith, the fence-agents interface). "off" fences
 * a node by preempting (and aborting) its keys on the logical units of a configured scope, through the prfleet
 * API (FleetService.Takeover: journaled, in the history, at most once); "on" unfences it by registering its key
 * again on each of its paths; "status" reads the devices. Options come as command-line flags or, with no
 * arguments, as `name=value` lines on standard input (how pacemaker calls fence agents).
 */
import { readFileSync } from 'node:fs';
import { connectControl, type CliConnection } from '../cli/client.js';
import { resolveConnection } from '../cli/connection.js';
import { connectFleet } from '../cli/fleet.js';
import { listAllDevices, listAllKeys } from '../common/pages.js';
import type { LogicalUnit } from '../gen/prfleet/v1/control.js';
import { RolloutResult, type FleetServiceClient } from '../gen/prfleet/v1/fleet.js';
import { formatKey, parseKey } from '../scsi/keys.js';
import { Outcome } from '../gen/prfleet/v1/scsi.js';
import { isMainModule } from './main-module.js';

/** fence-agents exit codes (fencing.py): 0 success, 1 failure; `status` exits 2 for a fenced (off) node. */
export const FenceExit = { OK: 0, ERROR: 1, BAD_ARGS: 2, STATUS_OFF: 2 } as const;

type ParamType = 'string' | 'boolean' | 'second';

/** One option, as `-o metadata` describes it. */
interface Param {
  readonly name: string;
  readonly getopt: string;
  readonly type: ParamType;
  readonly required?: boolean;
  readonly default?: string;
  readonly deprecated?: boolean;
  readonly obsoletes?: string;
  readonly description: string;
}

const PARAMS: readonly Param[] = [
  {
    name: 'action',
    getopt: '-o, --action=[action]',
    type: 'string',
    required: true,
    default: 'off',
    description: 'Fencing action',
  },
  {
    name: 'plug',
    getopt: '-n, --plug=[nodename]',
    type: 'string',
    required: true,
    obsoletes: 'port',
    description: 'Node to fence: its prfleet agent id',
  },
  {
    name: 'port',
    getopt: '-n, --plug=[nodename]',
    type: 'string',
    required: true,
    deprecated: true,
    description: 'Node to fence: its prfleet agent id',
  },
  {
    name: 'server',
    getopt: '--server=[host:port]',
    type: 'string',
    required: true,
    description: 'prfleet server address (or PRFLEET_SERVER)',
  },
  {
    name: 'loader',
    getopt: '--loader=[ids]',
    type: 'string',
    description: 'Scope: comma-separated loader ids whose LUs are fenced',
  },
  {
    name: 'lu',
    getopt: '--lu=[ids]',
    type: 'string',
    description: 'Scope: comma-separated LU ids (with or instead of --loader)',
  },
  {
    name: 'fencing_host',
    getopt: '--fencing-host=[agent]',
    type: 'string',
    description: 'Agent (host) that preempts and takes over where the node held; default: nodename',
  },
  {
    name: 'nodename',
    getopt: '--nodename=[name]',
    type: 'string',
    description: 'Name of the node running the fence agent (set by the cluster manager)',
  },
  {
    name: 'key',
    getopt: '-k, --key=[key]',
    type: 'string',
    description: "The node's reservation key; default: the key the prfleet registry issued to it",
  },
  {
    name: 'no_abort',
    getopt: '--no-abort',
    type: 'boolean',
    description: 'Send PREEMPT instead of PREEMPT AND ABORT',
  },
  {
    name: 'plaintext',
    getopt: '--plaintext',
    type: 'boolean',
    description: 'Talk to the server without TLS (tests and demos)',
  },
  {
    name: 'ca',
    getopt: '--ca=[file]',
    type: 'string',
    description: "PEM CA of the server's certificate (or PRFLEET_TLS_CA)",
  },
  {
    name: 'token_file',
    getopt: '--token-file=[file]',
    type: 'string',
    description: 'File holding an admin bearer token (or PRFLEET_TOKEN)',
  },
  {
    name: 'power_timeout',
    getopt: '--power-timeout=[seconds]',
    type: 'second',
    default: '60',
    description: 'Seconds an action may take',
  },
  { name: 'verbose', getopt: '-v, --verbose', type: 'boolean', description: 'Verbose mode' },
];

const ACTIONS = ['on', 'off', 'reboot', 'status', 'monitor', 'list', 'metadata'] as const;
type Action = (typeof ACTIONS)[number];

/** Options by name (underscored); booleans are 'true' when set. */
export type FenceOptions = Readonly<Record<string, string>>;

/** Thrown for bad arguments: message to stderr, exit 2. */
export class FenceUsageError extends Error {}

const byFlag = new Map<string, Param>();
for (const p of PARAMS) {
  for (const flag of p.getopt.split(',').map((f) => f.trim().replace(/=.*$/, '')))
    byFlag.set(flag, p);
}

/** Parses `--flag=value`, `--flag value`, `-n value` and boolean flags. */
export function parseArgs(argv: readonly string[]): FenceOptions {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq > 0 && arg.startsWith('--') ? arg.slice(0, eq) : arg;
    const param = byFlag.get(flag);
    if (param === undefined)
      throw new FenceUsageError(`unknown option ${JSON.stringify(arg.slice(0, 64))}`);
    if (param.type === 'boolean') out[param.name] = 'true';
    else if (eq > 0 && arg.startsWith('--')) out[param.name] = arg.slice(eq + 1);
    else {
      const value = argv[++i];
      if (value === undefined) throw new FenceUsageError(`${flag} needs a value`);
      out[param.name] = value;
    }
  }
  return normalize(out);
}

/** Parses `name=value` lines (stdin): '#' comments and blank lines skipped; unknown names ignored with a warning. */
export function parseStdin(text: string, warn: (line: string) => void): FenceOptions {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    const name = (eq < 0 ? line : line.slice(0, eq)).trim().replace(/-/g, '_');
    const value = eq < 0 ? 'true' : line.slice(eq + 1).trim();
    if (!PARAMS.some((p) => p.name === name)) {
      warn(`Parse error: Ignoring unknown option '${name.slice(0, 64)}'`);
      continue;
    }
    out[name] = value;
  }
  return normalize(out);
}

function normalize(options: Record<string, string>): FenceOptions {
  if (options['plug'] === undefined && options['port'] !== undefined)
    options['plug'] = options['port'];
  // fence-agents booleans: "1", "yes", "on" or "true" (any case) on stdin; a flag's presence on the command line.
  for (const p of PARAMS) {
    const value = options[p.name];
    if (p.type === 'boolean' && value !== undefined)
      options[p.name] = /^(1|yes|on|true)$/i.test(value) ? 'true' : 'false';
  }
  for (const p of PARAMS)
    if (options[p.name] === undefined && p.default !== undefined) options[p.name] = p.default;
  return options;
}

/** The XML metadata the cluster manager reads (`-o metadata`), in the fence-agents schema. */
export function metadata(): string {
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
  const params = PARAMS.map((p) =>
    [
      `\t<parameter name="${p.name}" unique="0" required="${p.required ? 1 : 0}"${p.deprecated ? ' deprecated="1"' : ''}${p.obsoletes ? ` obsoletes="${p.obsoletes}"` : ''}>`,
      `\t\t<getopt mixed="${esc(p.getopt)}" />`,
      `\t\t<content type="${p.type}"${p.default !== undefined ? ` default="${esc(p.default)}"` : ''} />`,
      `\t\t<shortdesc lang="en">${esc(p.description)}</shortdesc>`,
      '\t</parameter>',
    ].join('\n'),
  ).join('\n');
  const actions = ACTIONS.map((a) => `\t<action name="${a}" />`).join('\n');
  return `<?xml version="1.0" ?>
<resource-agent name="fence_prfleet" shortdesc="Fence agent for SCSI persistent reservations through prfleet">
<longdesc>fence_prfleet fences a node by preempting (PREEMPT AND ABORT) its reservation keys on the logical units of a scope (loaders or LUs) through a prfleet server, which journals each PROUT, records it in its history and sends it at most once. "on" registers the node's key again on each of its paths; "status" reads the devices: on when the node's key is registered on any LU of the scope, off when on none.</longdesc>
<vendor-url>https://github.com/prfleet</vendor-url>
<parameters>
${params}
</parameters>
<actions>
${actions}
</actions>
</resource-agent>
`;
}

/** What one fence run talks to. */
interface Clients {
  readonly control: CliConnection['client'];
  readonly fleet: FleetServiceClient;
}

function scopeOf(options: FenceOptions) {
  const list = (name: string) =>
    (options[name] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  const loaderIds = list('loader');
  const luIds = list('lu');
  if (loaderIds.length === 0 && luIds.length === 0)
    throw new FenceUsageError('name the scope: --loader and/or --lu (a fence is never fleet-wide)');
  return { loaderIds, luIds, site: '', labels: [] };
}

/** The LUs of the scope as the server lists them. */
async function scopeUnits(clients: Clients, options: FenceOptions): Promise<LogicalUnit[]> {
  const scope = scopeOf(options);
  const logicalUnits = await listAllDevices(clients.control);
  return logicalUnits.filter(
    (lu) => scope.luIds.includes(lu.luId) || scope.loaderIds.includes(lu.loaderId),
  );
}

/** The node's keys: `--key`, else every valid key the registry issued to its agent. */
async function nodeKeys(clients: Clients, options: FenceOptions, plug: string): Promise<bigint[]> {
  if (options['key'] !== undefined) return [parseKey(options['key'])];
  const keys = await listAllKeys(clients.fleet, { agentId: plug });
  return keys.map((k) => k.key);
}

/** "on" when any LU of the scope lists one of the node's keys, "off" when none does. */
async function status(
  clients: Clients,
  options: FenceOptions,
  plug: string,
  log: (s: string) => void,
): Promise<'on' | 'off'> {
  const keys = await nodeKeys(clients, options, plug);
  const units = await scopeUnits(clients, options);
  if (units.length === 0) throw new Error('no logical unit of the scope is reported by any agent');
  let registered = 0;
  for (const lu of units) {
    const { result } = await clients.control.readKeys({
      target: { luId: lu.luId, agentId: '', path: '' },
    });
    const listed = result?.data?.$case === 'readKeys' ? result.data.value.keys : [];
    const mine = listed.filter((k) => keys.includes(k));
    log(`${lu.luId}: ${mine.length} registration(s) of ${plug}`);
    if (mine.length > 0) registered += 1;
  }
  return registered > 0 ? 'on' : 'off';
}

async function fenceOff(
  clients: Clients,
  options: FenceOptions,
  plug: string,
  log: (s: string) => void,
): Promise<boolean> {
  const by = options['fencing_host'] ?? options['nodename'];
  if (by === undefined || by === '')
    throw new FenceUsageError('off needs --fencing-host (or nodename): the host that preempts');
  if (by === plug) throw new FenceUsageError(`a node cannot fence itself (${plug})`);
  const key = options['key'];
  const events = clients.fleet.takeover({
    selector: scopeOf(options),
    victim:
      key === undefined
        ? { $case: 'victimAgentId', value: plug }
        : { $case: 'victimKey', value: parseKey(key) },
    agentId: by,
    key: 0n,
    keyPurpose: '',
    type: 0,
    abort: options['no_abort'] !== 'true',
    options: {
      maxConcurrency: 0,
      errorThreshold: 0,
      rollbackOnAbort: false,
      commandTimeout: undefined,
      maxReplans: 0,
      operationId: '',
      reason: `fence_prfleet: ${by} fences ${plug}`,
      dryRun: false,
    },
    // The cluster manager's quorum decided the node must go: that decision is the proof (recorded as forced).
    force: true,
  });
  let result = RolloutResult.ROLLOUT_RESULT_UNSPECIFIED;
  for await (const e of events) {
    const ev = e.event?.event;
    if (ev?.$case === 'step')
      log(`${ev.value.step?.luId ?? ''}: ${ev.value.step?.description ?? ''} ${ev.value.message}`);
    if (ev?.$case === 'finished') result = ev.value.result;
  }
  return result === RolloutResult.ROLLOUT_RESULT_SUCCEEDED;
}

async function fenceOn(
  clients: Clients,
  options: FenceOptions,
  plug: string,
  log: (s: string) => void,
): Promise<boolean> {
  const [key] = await nodeKeys(clients, options, plug);
  if (key === undefined)
    throw new Error(`no key for ${plug}: give --key or allocate one (prfleet registry allocate)`);
  let ok = true;
  for (const lu of await scopeUnits(clients, options)) {
    for (const p of lu.paths.filter((x) => x.agentId === plug)) {
      const { result } = await clients.control.register({
        target: { luId: lu.luId, agentId: plug, path: p.path?.path ?? '' },
        key: 0n,
        newKey: key,
        ignoreExistingKey: true,
      });
      const good = result?.outcome === Outcome.OUTCOME_GOOD;
      log(
        `${lu.luId} ${plug}:${p.path?.path ?? ''}: register ${formatKey(key)}: ${good ? 'GOOD' : (result?.statusName ?? 'no result')}`,
      );
      ok &&= good;
    }
  }
  return ok;
}

/** Runs one action; returns the exit code. */
export async function runFence(
  options: FenceOptions,
  io: { stdout(s: string): void; stderr(s: string): void; env: NodeJS.ProcessEnv },
): Promise<number> {
  const action = options['action'] as Action;
  if (!ACTIONS.includes(action))
    throw new FenceUsageError(`unknown action ${JSON.stringify(action)}: ${ACTIONS.join(', ')}`);
  if (action === 'metadata') {
    io.stdout(metadata());
    return FenceExit.OK;
  }
  const log = (s: string) => {
    if (options['verbose'] === 'true') io.stderr(`${s}\n`);
  };
  if (action !== 'monitor') scopeOf(options); // bad arguments are told before anything is dialled
  const server = options['server'] ?? io.env['PRFLEET_SERVER'];
  if (server === undefined) throw new FenceUsageError('--server (or PRFLEET_SERVER) is required');
  const settings = resolveConnection(
    server,
    {
      ...(options['plaintext'] === 'true' ? { plaintext: true } : {}),
      ...(options['ca'] === undefined ? {} : { ca: options['ca'] }),
    },
    options['token_file'] === undefined
      ? io.env
      : { ...io.env, PRFLEET_TOKEN: readFileSync(options['token_file'], 'utf8').trim() },
  );
  const control = connectControl(server, settings);
  const fleet = connectFleet(server, settings);
  const clients: Clients = { control: control.client, fleet: fleet.client };
  try {
    if (action === 'monitor') {
      await clients.control.listAgents({});
      return FenceExit.OK;
    }
    if (action === 'list') {
      const agents = new Map<string, string>();
      for (const lu of await scopeUnits(clients, options))
        for (const p of lu.paths) agents.set(p.agentId, p.hostname);
      for (const [id, hostname] of [...agents].sort()) io.stdout(`${id},${hostname}\n`);
      return FenceExit.OK;
    }
    const plug = options['plug'];
    if (plug === undefined || plug === '')
      throw new FenceUsageError('--plug (the node to fence) is required');
    if (action === 'status') {
      const state = await status(clients, options, plug, log);
      io.stdout(`Status: ${state.toUpperCase()}\n`);
      return state === 'on' ? FenceExit.OK : FenceExit.STATUS_OFF;
    }
    const off = async () =>
      (await fenceOff(clients, options, plug, log)) &&
      (await status(clients, options, plug, log)) === 'off';
    const on = async () =>
      (await fenceOn(clients, options, plug, log)) &&
      (await status(clients, options, plug, log)) === 'on';
    const done =
      action === 'off' ? await off() : action === 'on' ? await on() : (await off()) && (await on());
    if (!done)
      io.stderr(`Failed: ${action} of ${plug} did not complete (run with -v for details)\n`);
    return done ? FenceExit.OK : FenceExit.ERROR;
  } finally {
    control.close();
    fleet.close();
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const io = {
    stdout: (s: string) => void process.stdout.write(s),
    stderr: (s: string) => void process.stderr.write(s),
    env: process.env,
  };
  try {
    const options =
      argv.length > 0
        ? parseArgs(argv)
        : parseStdin(readFileSync(0, 'utf8'), (line) => io.stderr(`${line}\n`));
    return await runFence(options, io);
  } catch (e) {
    io.stderr(`fence_prfleet: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof FenceUsageError ? FenceExit.BAD_ARGS : FenceExit.ERROR;
  }
}

if (isMainModule(import.meta.url)) process.exitCode = await main();
