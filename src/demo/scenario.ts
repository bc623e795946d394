/**
 * The demo scenario: three hosts contend for a SuperLoader's changer and drive through a running prfleet server,
 * narrated step by step with real RPCs. Every step checks the outcome it expects and throws DemoError when the
 * system does something else, so `make demo` exiting 0 means the story really happened.
 */
import { delay } from '../common/delay.js';
import Table from 'cli-table3';
import { ClientError, Status } from 'nice-grpc-common';
import type { CliControlClient } from '../cli/client.js';
import { renderLoaders } from '../cli/loaders.js';
import type { FleetServiceClient } from '../gen/prfleet/v1/fleet.js';
import {
  renderAgents,
  renderDevices,
  renderResult,
  renderUnitAttentions,
  prTypeShortName,
  senseWords,
} from '../cli/render.js';
import type { LogicalUnit, Target } from '../gen/prfleet/v1/control.js';
import { Outcome, outcomeToJSON, PrType, type CommandResult } from '../gen/prfleet/v1/scsi.js';
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
const RPC_DEADLINE_MS = 20_000;
/** Device command timeout sent with each command. */
const COMMAND_TIMEOUT = { seconds: 10n, nanos: 0 };

/** The three hosts of examples/fabric-demo.yaml and the keys the demo registers for them. */
const HOSTS = [
  { id: 'host-a', role: 'backup server A', key: 0xaaaan },
  { id: 'host-b', role: 'backup server B', key: 0xbbbbn },
  { id: 'host-c', role: '"greedy" host C', key: 0xccccn },
] as const;

type HostId = (typeof HOSTS)[number]['id'];

function hostOfKey(key: bigint): string {
  return HOSTS.find((h) => h.key === key)?.id ?? 'unknown';
}

function keyOf(host: HostId): bigint {
  const found = HOSTS.find((h) => h.id === host);
  if (!found) throw new DemoError(`no key for ${host}`);
  return found.key;
}

function table(head: string[]): Table.Table {
  return new Table({ head, style: { head: [], border: [] } });
}

/** Runs the scenario against a server that has the demo fabric's agents connected. */
export async function runScenario(
  client: CliControlClient,
  out: DemoOutput,
  fleet?: FleetServiceClient,
  watchLines?: () => readonly string[],
): Promise<DemoSummary> {
  const summary: DemoSummary = { commands: 0, conflicts: 0, unitAttentions: 0, refusedUpFront: 0 };
  let step = 0;
  const say = (title: string, sentence: string) =>
    out.write(`\n── Step ${++step}: ${title}\n${sentence}\n`);
  const show = (text: string) => out.write(`${text}\n`);
  const call = { deadline: RPC_DEADLINE_MS };

  /** Counts a result, checks its outcome, and notes conflicts and unit attentions. */
  const expectOutcome = (
    result: CommandResult | undefined,
    expected: Outcome,
    what: string,
  ): CommandResult => {
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
  };

  // ── The fleet as the server sees it.
  say(
    'the fleet',
    'Three hosts run an agent each; they dial out to the server and report every path they see.',
  );
  const { agents } = await client.listAgents({}, call);
  show(renderAgents(agents));
  const connected = new Set(agents.filter((a) => a.connected).map((a) => a.agentId));
  for (const host of HOSTS)
    if (!connected.has(host.id)) throw new DemoError(`agent ${host.id} is not connected`);
  const { logicalUnits } = await client.listDevices({}, call);
  show(renderDevices(logicalUnits));
  const loaderIds = [...new Set(logicalUnits.map((lu) => lu.loaderId))].sort();
  const loader = loaderIds[0];
  const changer = logicalUnits.find(
    (lu) => lu.loaderId === loader && lu.peripheralDeviceType === 8,
  );
  const drive = logicalUnits.find((lu) => lu.loaderId === loader && lu.peripheralDeviceType === 1);
  if (!changer || !drive)
    throw new DemoError(`loader ${String(loader)} lacks a changer or a drive LU`);
  const pathsOf = (lu: LogicalUnit, host: HostId): Target[] =>
    lu.paths
      .filter((p) => p.agentId === host && p.path)
      .map((p) => ({ luId: lu.luId, agentId: host, path: p.path?.path ?? '' }));
  const firstPath = (lu: LogicalUnit, host: HostId): Target => {
    const target = pathsOf(lu, host)[0];
    if (!target) throw new DemoError(`${host} has no path to ${lu.luId}`);
    return target;
  };
  const name = (lu: LogicalUnit) =>
    `${lu.loaderId} ${lu.peripheralDeviceType === 8 ? 'changer' : 'drive'}`;

  // ── Registration on every path.
  say(
    'every host registers its key on every path',
    `Registrations belong to I_T nexuses, not hosts: host-a reaches the ${name(changer)} through two ports, so it registers twice.`,
  );
  const registrations = table(['host', 'path', 'logical unit', 'new key', 'outcome']);
  for (const host of HOSTS) {
    for (const lu of [changer, drive]) {
      for (const target of pathsOf(lu, host.id)) {
        const { result } = await client.register(
          {
            target,
            key: 0n,
            newKey: host.key,
            options: { commandTimeout: COMMAND_TIMEOUT, reason: 'demo: join the loader' },
          },
          call,
        );
        const r = expectOutcome(result, Outcome.OUTCOME_GOOD, `REGISTER ${host.id} ${target.path}`);
        const news = r.unitAttentions
          .map((ua) => ua.sense?.description ?? 'unit attention')
          .join(', ');
        registrations.push([
          host.id,
          target.path,
          name(lu),
          formatKey(host.key),
          news ? `GOOD (news: ${news})` : 'GOOD',
        ]);
      }
    }
  }
  show(registrations.toString());

  // ── Host A reserves the changer.
  say(
    'host-a reserves the changer',
    `host-a takes a Write Exclusive reservation on the ${name(changer)}, so only it can move tapes.`,
  );
  const reserveChanger = await client.reserve(
    {
      target: firstPath(changer, 'host-a'),
      key: keyOf('host-a'),
      type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      options: { commandTimeout: COMMAND_TIMEOUT },
    },
    call,
  );
  show(
    renderResult(
      'RESERVE (WE)',
      expectOutcome(reserveChanger.result, Outcome.OUTCOME_GOOD, 'host-a RESERVE changer'),
    ),
  );

  // ── Host C grabs the drive.
  say(
    'greedy host-c grabs the drive',
    `host-c takes Exclusive Access on the ${name(drive)}: nobody else may even read it.`,
  );
  const grab = await client.reserve(
    {
      target: firstPath(drive, 'host-c'),
      key: keyOf('host-c'),
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      options: { commandTimeout: COMMAND_TIMEOUT },
    },
    call,
  );
  show(
    renderResult(
      'RESERVE (EA)',
      expectOutcome(grab.result, Outcome.OUTCOME_GOOD, 'host-c RESERVE drive'),
    ),
  );

  // ── A conflict is a normal result.
  say(
    'host-b tries the drive',
    'The drive says RESERVATION CONFLICT. That is an answer, not a failure: the RPC returns OK with the result.',
  );
  const blocked = await client.reserve(
    {
      target: firstPath(drive, 'host-b'),
      key: keyOf('host-b'),
      type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      options: { commandTimeout: COMMAND_TIMEOUT },
    },
    call,
  );
  show(
    renderResult(
      'RESERVE (WE)',
      expectOutcome(blocked.result, Outcome.OUTCOME_RESERVATION_CONFLICT, 'host-b RESERVE drive'),
    ),
  );
  show('(`prfleet reserve` would exit 24 here, as sg_persist does.)');

  // ── The operator looks: READ FULL STATUS is refused up front on the changer.
  say(
    'an operator asks who holds what',
    `READ FULL STATUS first. The ${changer.capabilities?.profile ?? 'changer'} profile does not support it, so the server refuses before sending anything:`,
  );
  try {
    await client.readFullStatus(
      {
        target: { luId: changer.luId, agentId: '', path: '' },
        options: { commandTimeout: COMMAND_TIMEOUT },
      },
      call,
    );
    throw new DemoError('READ FULL STATUS on the changer was not refused');
  } catch (error) {
    if (!(error instanceof ClientError) || error.code !== Status.FAILED_PRECONDITION) throw error;
    summary.refusedUpFront++;
    show(`  FAILED_PRECONDITION: ${error.details}`);
  }
  show(
    'So the operator reads the changer with READ KEYS and READ RESERVATION, and the drive with READ FULL STATUS:',
  );
  const changerKeys = await client.readKeys(
    {
      target: { luId: changer.luId, agentId: '', path: '' },
      options: { commandTimeout: COMMAND_TIMEOUT },
    },
    call,
  );
  show(
    renderKeysWithOwners(
      expectOutcome(changerKeys.result, Outcome.OUTCOME_GOOD, 'READ KEYS changer'),
      name(changer),
    ),
  );
  const changerReservation = await client.readReservation(
    {
      target: { luId: changer.luId, agentId: '', path: '' },
      options: { commandTimeout: COMMAND_TIMEOUT },
    },
    call,
  );
  const changerHolder = expectOutcome(
    changerReservation.result,
    Outcome.OUTCOME_GOOD,
    'READ RESERVATION changer',
  );
  const fullStatus = await client.readFullStatus(
    { target: firstPath(drive, 'host-a'), options: { commandTimeout: COMMAND_TIMEOUT } },
    call,
  );
  const driveStatus = expectOutcome(
    fullStatus.result,
    Outcome.OUTCOME_GOOD,
    'READ FULL STATUS drive',
  );
  show(renderResult('READ FULL STATUS (drive)', driveStatus));
  const holders = table(['logical unit', 'holder', 'type']);
  const changerData =
    changerHolder.data?.$case === 'readReservation' ? changerHolder.data.value : undefined;
  holders.push([
    name(changer),
    changerData?.reserved
      ? `${hostOfKey(changerData.key)} (${formatKey(changerData.key)})`
      : 'nobody',
    changerData?.reserved ? prTypeShortName(changerData.type) : '',
  ]);
  const driveHolder =
    driveStatus.data?.$case === 'fullStatus'
      ? driveStatus.data.value.descriptors.find((d) => d.reservationHolder)
      : undefined;
  holders.push([
    name(drive),
    driveHolder ? `${hostOfKey(driveHolder.key)} (${formatKey(driveHolder.key)})` : 'nobody',
    driveHolder ? prTypeShortName(driveHolder.type) : '',
  ]);
  show(holders.toString());
  if (changerData && driveHolder && hostOfKey(changerData.key) !== hostOfKey(driveHolder.key)) {
    show(
      `Deadlock: ${hostOfKey(changerData.key)} holds the changer and ${hostOfKey(driveHolder.key)} holds the drive; a backup job needs both.`,
    );
  }

  // The observation's first read of an LU is its baseline (no event): when host-c's RESERVE and this PREEMPT come
  // within its 100 ms coalescing, one read follows both and the watcher is shown no change. A pause lets the read
  // after the RESERVE happen first, as it would between two operators' commands.
  if (watchLines !== undefined) await delay(1_000);

  // ── Host A preempts C on the drive.
  say(
    'host-a preempts host-c on the drive',
    "PREEMPT removes host-c's registrations and hands the reservation to host-a.",
  );
  const preempt = await client.preempt(
    {
      target: firstPath(drive, 'host-a'),
      key: keyOf('host-a'),
      preemptKey: keyOf('host-c'),
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      abort: false,
      options: {
        commandTimeout: COMMAND_TIMEOUT,
        reason: 'demo: free the drive for the nightly backup',
      },
    },
    call,
  );
  show(
    renderResult(
      'PREEMPT (EA)',
      expectOutcome(preempt.result, Outcome.OUTCOME_GOOD, 'host-a PREEMPT drive'),
    ),
  );

  // ── C's next command sees the unit attention.
  say(
    'host-c finds out',
    "host-c's next command meets a UNIT ATTENTION; the agent retries past it and reports it as news.",
  );
  const cReads = await client.readKeys(
    { target: firstPath(drive, 'host-c'), options: { commandTimeout: COMMAND_TIMEOUT } },
    call,
  );
  const news = expectOutcome(cReads.result, Outcome.OUTCOME_GOOD, 'host-c READ KEYS drive');
  const preempted = news.unitAttentions.find(
    (ua) => ua.sense?.asc === 0x2a && ua.sense.ascq === 0x05,
  );
  if (!preempted) {
    throw new DemoError(
      `host-c's READ KEYS did not report REGISTRATIONS PREEMPTED (got ${news.unitAttentions.length} unit attentions)`,
    );
  }
  show(renderUnitAttentions(news));
  show(renderKeysWithOwners(news, name(drive)));
  const retry = await client.reserve(
    {
      target: firstPath(drive, 'host-c'),
      key: keyOf('host-c'),
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      options: { commandTimeout: COMMAND_TIMEOUT },
    },
    call,
  );
  show(
    renderResult(
      'RESERVE (EA) with its old key',
      expectOutcome(retry.result, Outcome.OUTCOME_RESERVATION_CONFLICT, 'host-c RESERVE again'),
    ),
  );

  if (watchLines !== undefined) {
    say(
      'a watcher saw it happen',
      '`prfleet watch` (started beside the demo) printed the preemption as it happened: the PREEMPT host-a sent, the reservation moving to host-a, and host-c meeting the unit attention:',
    );
    const wanted = [
      /PROUT: PREEMPT → GOOD/,
      /RESERVATION-CHANGED: .*→ 0x000000000000aaaa/,
      /UNIT-ATTENTION: .*host-c.*registrations preempted/,
    ];
    const seen: string[] = [];
    for (const pattern of wanted) seen.push(await watchedLine(watchLines, pattern, drive.luId));
    show(seen.map((line) => `  │ watch  ${line}`).join('\n'));
  }

  // ── Summary.
  say('summary', 'Final state, read back from the devices:');
  const final = table(['logical unit', 'lu id', 'holder', 'type', 'registrations', 'PRgeneration']);
  for (const lu of [changer, drive]) {
    const target = { luId: lu.luId, agentId: '', path: '' };
    const keys = expectOutcome(
      (await client.readKeys({ target }, call)).result,
      Outcome.OUTCOME_GOOD,
      'READ KEYS summary',
    );
    const res = expectOutcome(
      (await client.readReservation({ target }, call)).result,
      Outcome.OUTCOME_GOOD,
      'READ RESERVATION summary',
    );
    const k = keys.data?.$case === 'readKeys' ? keys.data.value : undefined;
    const r = res.data?.$case === 'readReservation' ? res.data.value : undefined;
    final.push([
      name(lu),
      lu.luId,
      r?.reserved ? `${hostOfKey(r.key)} (${formatKey(r.key)})` : 'nobody',
      r?.reserved ? prTypeShortName(r.type) : '',
      k ? k.keys.map((key) => hostOfKey(key)).join(', ') : '',
      k ? String(k.generation) : '',
    ]);
  }
  show(final.toString());
  if (fleet !== undefined) {
    show(
      '\nThe loaders as a whole (`prfleet loaders`): the changer says which cartridge sits in which drive.',
    );
    const { loaders } = await fleet.listLoaders(
      { refresh: true },
      { signal: AbortSignal.timeout(RPC_DEADLINE_MS) },
    );
    show(renderLoaders(loaders, hostOfKey));
  }
  show(
    `${summary.commands} commands sent to devices; ${summary.conflicts} reservation conflicts returned as results; ` +
      `${summary.unitAttentions} unit attentions reported; ${summary.refusedUpFront} command refused up front.`,
  );
  return summary;
}

/** The first watcher line about `luId` matching `pattern`, waiting for it up to 30 s (a loaded machine). */
async function watchedLine(
  lines: () => readonly string[],
  pattern: RegExp,
  luId: string,
): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const line = lines().find((l) => l.includes(luId) && pattern.test(l));
    if (line !== undefined) return line;
    if (Date.now() > deadline)
      throw new DemoError(`the watcher printed no line matching ${String(pattern)} for ${luId}`);
    await delay(100);
  }
}

/** READ KEYS data with the host each key belongs to. */
function renderKeysWithOwners(result: CommandResult, what: string): string {
  if (result.data?.$case !== 'readKeys') return `${what}: no key data`;
  const t = table(['#', 'registered key', 'host']);
  result.data.value.keys.forEach((key, i) =>
    t.push([String(i + 1), formatKey(key), hostOfKey(key)]),
  );
  return `Keys on the ${what} (PRgeneration ${result.data.value.generation}), one per registered nexus:\n${t.toString()}`;
}
