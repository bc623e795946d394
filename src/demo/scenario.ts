/**
 * The demo scenario: three hosts contend for a SuperLoader's changer and drive through a running prfleet server,
 * narrated step by step with real RPCs. Every step checks the outcome it expects and throws DemoError when the
 * system does something else, so `make demo` exiting 0 means the story really happened. Each act below is one
 * or two numbered steps of the story; story.ts holds what they share.
 */
import { delay } from '../common/delay.js';
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
} from '../cli/render.js';
import type { Target } from '../gen/prfleet/v1/control.js';
import { Outcome, PrType, type CommandResult } from '../gen/prfleet/v1/scsi.js';
import { formatKey } from '../scsi/keys.js';
import {
  anyPath,
  COMMAND_TIMEOUT,
  createStory,
  DemoError,
  firstPath,
  holderName,
  HOSTS,
  hostOfKey,
  keyOf,
  luName,
  pathsOf,
  renderKeysWithOwners,
  RPC_DEADLINE_MS,
  table,
  type DemoOutput,
  type DemoSummary,
  type HostId,
  type Stage,
  type Story,
} from './story.js';

export { DemoError, type DemoOutput, type DemoSummary } from './story.js';

/** Runs the scenario against a server that has the demo fabric's agents connected. */
export async function runScenario(
  client: CliControlClient,
  out: DemoOutput,
  fleet?: FleetServiceClient,
  watchLines?: () => readonly string[],
): Promise<DemoSummary> {
  const story = createStory(client, out);
  const stage = await meetTheFleet(story);
  await registerEverywhere(story, stage);
  await reserveChangerAndDrive(story, stage);
  await conflictOnTheDrive(story, stage);
  await operatorLooks(story, stage);
  // The observation's first read of an LU is its baseline (no event): when host-c's RESERVE and this PREEMPT come
  // within its 100 ms coalescing, one read follows both and the watcher is shown no change. A pause lets the read
  // after the RESERVE happen first, as it would between two operators' commands.
  if (watchLines !== undefined) await delay(1_000);
  await preemptTheDrive(story, stage);
  await hostCFindsOut(story, stage);
  if (watchLines !== undefined) await watcherSawIt(story, stage, watchLines);
  await finalState(story, stage, fleet);
  return story.summary;
}

/** Step 1: the agents and devices the server knows; picks the first loader's changer and drive. */
async function meetTheFleet(story: Story): Promise<Stage> {
  const { client, call } = story;
  story.say(
    'the fleet',
    'Three hosts run an agent each; they dial out to the server and report every path they see.',
  );
  const { agents } = await client.listAgents({}, call);
  story.show(renderAgents(agents));
  const connected = new Set(agents.filter((a) => a.connected).map((a) => a.agentId));
  for (const host of HOSTS)
    if (!connected.has(host.id)) throw new DemoError(`agent ${host.id} is not connected`);
  const { logicalUnits } = await client.listDevices({}, call);
  story.show(renderDevices(logicalUnits));
  const loaderIds = [...new Set(logicalUnits.map((lu) => lu.loaderId))].sort();
  const loader = loaderIds[0];
  const changer = logicalUnits.find(
    (lu) => lu.loaderId === loader && lu.peripheralDeviceType === 8,
  );
  const drive = logicalUnits.find((lu) => lu.loaderId === loader && lu.peripheralDeviceType === 1);
  if (!changer || !drive)
    throw new DemoError(`loader ${String(loader)} lacks a changer or a drive LU`);
  return { changer, drive };
}

/** Step 2: every host registers its key on every path to both LUs. */
async function registerEverywhere(story: Story, { changer, drive }: Stage): Promise<void> {
  story.say(
    'every host registers its key on every path',
    `Registrations belong to I_T nexuses, not hosts: host-a reaches the ${luName(changer)} through two ports, so it registers twice.`,
  );
  const registrations = table(['host', 'path', 'logical unit', 'new key', 'outcome']);
  for (const host of HOSTS) {
    for (const lu of [changer, drive]) {
      for (const target of pathsOf(lu, host.id)) {
        const { result } = await story.client.register(
          {
            target,
            key: 0n,
            newKey: host.key,
            options: { commandTimeout: COMMAND_TIMEOUT, reason: 'demo: join the loader' },
          },
          story.call,
        );
        const r = story.expectOutcome(
          result,
          Outcome.OUTCOME_GOOD,
          `REGISTER ${host.id} ${target.path}`,
        );
        const news = r.unitAttentions
          .map((ua) => ua.sense?.description ?? 'unit attention')
          .join(', ');
        registrations.push([
          host.id,
          target.path,
          luName(lu),
          formatKey(host.key),
          news ? `GOOD (news: ${news})` : 'GOOD',
        ]);
      }
    }
  }
  story.show(registrations.toString());
}

/** A RESERVE from `host` through `target`, shown as `label`; its outcome must be `expected`. */
async function reserve(
  story: Story,
  reservation: { target: Target; host: HostId; type: PrType },
  expected: Outcome,
  label: string,
  what: string,
): Promise<void> {
  const { result } = await story.client.reserve(
    {
      target: reservation.target,
      key: keyOf(reservation.host),
      type: reservation.type,
      options: { commandTimeout: COMMAND_TIMEOUT },
    },
    story.call,
  );
  story.show(renderResult(label, story.expectOutcome(result, expected, what)));
}

/** Steps 3 and 4: host-a reserves the changer, host-c grabs the drive. */
async function reserveChangerAndDrive(story: Story, { changer, drive }: Stage): Promise<void> {
  story.say(
    'host-a reserves the changer',
    `host-a takes a Write Exclusive reservation on the ${luName(changer)}, so only it can move tapes.`,
  );
  await reserve(
    story,
    { target: firstPath(changer, 'host-a'), host: 'host-a', type: PrType.PR_TYPE_WRITE_EXCLUSIVE },
    Outcome.OUTCOME_GOOD,
    'RESERVE (WE)',
    'host-a RESERVE changer',
  );
  story.say(
    'greedy host-c grabs the drive',
    `host-c takes Exclusive Access on the ${luName(drive)}: nobody else may even read it.`,
  );
  await reserve(
    story,
    { target: firstPath(drive, 'host-c'), host: 'host-c', type: PrType.PR_TYPE_EXCLUSIVE_ACCESS },
    Outcome.OUTCOME_GOOD,
    'RESERVE (EA)',
    'host-c RESERVE drive',
  );
}

/** Step 5: a conflict is a normal result. */
async function conflictOnTheDrive(story: Story, { drive }: Stage): Promise<void> {
  story.say(
    'host-b tries the drive',
    'The drive says RESERVATION CONFLICT. That is an answer, not a failure: the RPC returns OK with the result.',
  );
  await reserve(
    story,
    { target: firstPath(drive, 'host-b'), host: 'host-b', type: PrType.PR_TYPE_WRITE_EXCLUSIVE },
    Outcome.OUTCOME_RESERVATION_CONFLICT,
    'RESERVE (WE)',
    'host-b RESERVE drive',
  );
  story.show('(`prfleet reserve` would exit 24 here, as sg_persist does.)');
}

/**
 * Step 6: an operator asks who holds what. READ FULL STATUS is refused up front on the changer, so the changer
 * is read with READ KEYS and READ RESERVATION, the drive with READ FULL STATUS.
 */
async function operatorLooks(story: Story, stage: Stage): Promise<void> {
  const { changer } = stage;
  story.say(
    'an operator asks who holds what',
    `READ FULL STATUS first. The ${changer.capabilities?.profile ?? 'changer'} profile does not support it, so the server refuses before sending anything:`,
  );
  await fullStatusRefused(story, stage);
  story.show(
    'So the operator reads the changer with READ KEYS and READ RESERVATION, and the drive with READ FULL STATUS:',
  );
  const changerKeys = await story.client.readKeys(
    { target: anyPath(changer), options: { commandTimeout: COMMAND_TIMEOUT } },
    story.call,
  );
  story.show(
    renderKeysWithOwners(
      story.expectOutcome(changerKeys.result, Outcome.OUTCOME_GOOD, 'READ KEYS changer'),
      luName(changer),
    ),
  );
  const changerReservation = await story.client.readReservation(
    { target: anyPath(changer), options: { commandTimeout: COMMAND_TIMEOUT } },
    story.call,
  );
  const changerHolder = story.expectOutcome(
    changerReservation.result,
    Outcome.OUTCOME_GOOD,
    'READ RESERVATION changer',
  );
  const fullStatus = await story.client.readFullStatus(
    { target: firstPath(stage.drive, 'host-a'), options: { commandTimeout: COMMAND_TIMEOUT } },
    story.call,
  );
  const driveStatus = story.expectOutcome(
    fullStatus.result,
    Outcome.OUTCOME_GOOD,
    'READ FULL STATUS drive',
  );
  story.show(renderResult('READ FULL STATUS (drive)', driveStatus));
  showHolders(story, stage, changerHolder, driveStatus);
}

/** READ FULL STATUS on the changer, which its profile lacks: the server must refuse it up front. */
async function fullStatusRefused(story: Story, { changer }: Stage): Promise<void> {
  try {
    await story.client.readFullStatus(
      { target: anyPath(changer), options: { commandTimeout: COMMAND_TIMEOUT } },
      story.call,
    );
    throw new DemoError('READ FULL STATUS on the changer was not refused');
  } catch (error) {
    if (!(error instanceof ClientError) || error.code !== Status.FAILED_PRECONDITION) throw error;
    story.summary.refusedUpFront++;
    story.show(`  FAILED_PRECONDITION: ${error.details}`);
  }
}

/** The holders of both LUs, and the deadlock when two hosts hold one each. */
function showHolders(
  story: Story,
  { changer, drive }: Stage,
  changerHolder: CommandResult,
  driveStatus: CommandResult,
): void {
  const holders = table(['logical unit', 'holder', 'type']);
  const changerData =
    changerHolder.data?.$case === 'readReservation' ? changerHolder.data.value : undefined;
  holders.push([
    luName(changer),
    changerData?.reserved ? holderName(changerData.key) : 'nobody',
    changerData?.reserved ? prTypeShortName(changerData.type) : '',
  ]);
  const driveHolder =
    driveStatus.data?.$case === 'fullStatus'
      ? driveStatus.data.value.descriptors.find((d) => d.reservationHolder)
      : undefined;
  holders.push([
    luName(drive),
    driveHolder ? holderName(driveHolder.key) : 'nobody',
    driveHolder ? prTypeShortName(driveHolder.type) : '',
  ]);
  story.show(holders.toString());
  if (changerData && driveHolder && hostOfKey(changerData.key) !== hostOfKey(driveHolder.key)) {
    story.show(
      `Deadlock: ${hostOfKey(changerData.key)} holds the changer and ${hostOfKey(driveHolder.key)} holds the drive; a backup job needs both.`,
    );
  }
}

/** Step 7: host-a preempts host-c on the drive. */
async function preemptTheDrive(story: Story, { drive }: Stage): Promise<void> {
  story.say(
    'host-a preempts host-c on the drive',
    "PREEMPT removes host-c's registrations and hands the reservation to host-a.",
  );
  const preempt = await story.client.preempt(
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
    story.call,
  );
  story.show(
    renderResult(
      'PREEMPT (EA)',
      story.expectOutcome(preempt.result, Outcome.OUTCOME_GOOD, 'host-a PREEMPT drive'),
    ),
  );
}

/** Step 8: host-c's next command meets the unit attention, and its old key no longer reserves. */
async function hostCFindsOut(story: Story, { drive }: Stage): Promise<void> {
  story.say(
    'host-c finds out',
    "host-c's next command meets a UNIT ATTENTION; the agent retries past it and reports it as news.",
  );
  const cReads = await story.client.readKeys(
    { target: firstPath(drive, 'host-c'), options: { commandTimeout: COMMAND_TIMEOUT } },
    story.call,
  );
  const news = story.expectOutcome(cReads.result, Outcome.OUTCOME_GOOD, 'host-c READ KEYS drive');
  const preempted = news.unitAttentions.find(
    (ua) => ua.sense?.asc === 0x2a && ua.sense.ascq === 0x05,
  );
  if (!preempted) {
    throw new DemoError(
      `host-c's READ KEYS did not report REGISTRATIONS PREEMPTED (got ${news.unitAttentions.length} unit attentions)`,
    );
  }
  story.show(renderUnitAttentions(news));
  story.show(renderKeysWithOwners(news, luName(drive)));
  await reserve(
    story,
    { target: firstPath(drive, 'host-c'), host: 'host-c', type: PrType.PR_TYPE_EXCLUSIVE_ACCESS },
    Outcome.OUTCOME_RESERVATION_CONFLICT,
    'RESERVE (EA) with its old key',
    'host-c RESERVE again',
  );
}

/** Step 9 (with a watcher): the lines `prfleet watch` printed about the preemption. */
async function watcherSawIt(
  story: Story,
  { drive }: Stage,
  watchLines: () => readonly string[],
): Promise<void> {
  story.say(
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
  story.show(seen.map((line) => `  │ watch  ${line}`).join('\n'));
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

/** The last step: both LUs read back from the devices, the loaders (with a fleet client) and the counters. */
async function finalState(
  story: Story,
  stage: Stage,
  fleet: FleetServiceClient | undefined,
): Promise<void> {
  story.say('summary', 'Final state, read back from the devices:');
  const final = table(['logical unit', 'lu id', 'holder', 'type', 'registrations', 'PRgeneration']);
  for (const lu of [stage.changer, stage.drive]) {
    const target = anyPath(lu);
    const keys = story.expectOutcome(
      (await story.client.readKeys({ target }, story.call)).result,
      Outcome.OUTCOME_GOOD,
      'READ KEYS summary',
    );
    const res = story.expectOutcome(
      (await story.client.readReservation({ target }, story.call)).result,
      Outcome.OUTCOME_GOOD,
      'READ RESERVATION summary',
    );
    const k = keys.data?.$case === 'readKeys' ? keys.data.value : undefined;
    const r = res.data?.$case === 'readReservation' ? res.data.value : undefined;
    final.push([
      luName(lu),
      lu.luId,
      r?.reserved ? holderName(r.key) : 'nobody',
      r?.reserved ? prTypeShortName(r.type) : '',
      k ? k.keys.map((key) => hostOfKey(key)).join(', ') : '',
      k ? String(k.generation) : '',
    ]);
  }
  story.show(final.toString());
  if (fleet !== undefined) {
    story.show(
      '\nThe loaders as a whole (`prfleet loaders`): the changer says which cartridge sits in which drive.',
    );
    const { loaders } = await fleet.listLoaders(
      { refresh: true },
      { signal: AbortSignal.timeout(RPC_DEADLINE_MS) },
    );
    story.show(renderLoaders(loaders, hostOfKey));
  }
  const { summary } = story;
  story.show(
    `${summary.commands} commands sent to devices; ${summary.conflicts} reservation conflicts returned as results; ` +
      `${summary.unitAttentions} unit attentions reported; ${summary.refusedUpFront} command refused up front.`,
  );
}
