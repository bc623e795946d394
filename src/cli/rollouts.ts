/**
 * `prfleet plan | apply | takeover`: the steps that reach the desired state, running them as a guarded rollout,
 * and preempting a failed or greedy initiator (verdict and evidence first). Exit 42 when a rollout does not
 * succeed.
 */
import {
  RolloutResult,
  type PlanResponse,
  type RolloutEvent,
  type TakeoverRequest,
  type TakeoverVerdict,
} from '../gen/prfleet/v1/fleet.js';
import { formatKey } from '../common/key-layout.js';
import { ExitCode } from './exit-codes.js';
import { rolloutOptions, selectorOf, withGuardRails, withSelector } from './fleet-flags.js';
import { printFleetLine, renderFindings, rolloutLine, verdictLines } from './fleet-render.js';
import { parseKeyOption, parsePrType } from './parse.js';
import { plainTable } from './render.js';
import type { Cli, OutputFormat } from './runner.js';

/** A plan for people: the steps with their preconditions, blockers, and how many LUs are done already. */
function renderPlan(plan: PlanResponse): string {
  const table = plainTable({
    head: ['#', 'lu', 'step', 'expects gen', 'expects holder', 'undo'],
  });
  plan.steps.forEach((s, i) => {
    const holder = s.precondition?.expectedHolderKey;
    table.push([
      String(i + 1),
      s.luId,
      s.description,
      String(s.precondition?.expectedGeneration ?? '-'),
      holder === undefined ? '-' : holder === 0n ? 'none' : formatKey(holder),
      s.reversible ? 'yes' : 'no',
    ]);
  });
  return [
    plan.steps.length ? table.toString() : 'nothing to do',
    ...(plan.blockers.length ? [renderFindings(plan.blockers)] : []),
    `${plan.logicalUnits} LUs, ${plan.inDesiredState} already in their desired state`,
  ].join('\n');
}

function registerPlan(cli: Cli): void {
  withSelector(
    cli.program
      .command('plan')
      .description('dry run: the PROUT steps (with preconditions) that reach the desired state'),
  ).action(async (opts) => {
    await cli.fleet(async (client, output) => {
      const plan = await client.plan({ selector: selectorOf(opts) });
      if (output === 'json') printFleetLine(cli.io, plan);
      else cli.io.stdout(`${renderPlan(plan)}\n`);
      return ExitCode.OK;
    });
  });
}

/** Prints a rollout's verdict and events as they come; exit 0 when it succeeded (or was a dry run), else 42. */
async function streamRollout(
  cli: Cli,
  events: AsyncIterable<{
    event?: RolloutEvent | undefined;
    verdict?: TakeoverVerdict | undefined;
  }>,
  output: OutputFormat,
): Promise<number> {
  let result: RolloutResult = RolloutResult.ROLLOUT_RESULT_UNSPECIFIED;
  for await (const r of events) {
    if (r.verdict) {
      if (output === 'json') printFleetLine(cli.io, { verdict: r.verdict });
      else cli.io.stdout(verdictLines(r.verdict));
    }
    if (!r.event) continue;
    if (output === 'json') printFleetLine(cli.io, r.event.event);
    else cli.io.stdout(`${rolloutLine(r.event)}\n`);
    if (r.event.event?.$case === 'finished') result = r.event.event.value.result;
  }
  return result === RolloutResult.ROLLOUT_RESULT_SUCCEEDED ||
    result === RolloutResult.ROLLOUT_RESULT_DRY_RUN
    ? ExitCode.OK
    : ExitCode.ROLLOUT_FAILED;
}

function registerApply(cli: Cli): void {
  withGuardRails(
    withSelector(
      cli.program
        .command('apply')
        .description('run the plan: guarded PROUTs, error threshold, rollback'),
    ),
  ).action(async (opts) => {
    await cli.fleet(async (client, output) =>
      streamRollout(
        cli,
        client.apply({ selector: selectorOf(opts), options: rolloutOptions(opts), steps: [] }),
        output,
      ),
    );
  });
}

/** The takeover flags, as parsed (besides the selector and guard rails). */
interface TakeoverFlags {
  by: string;
  victimKey?: bigint;
  victimAgent?: string;
  key?: bigint;
  type?: number;
  abort?: true;
  force?: true;
  reason?: string;
}

/** Checks the flags commander cannot: exactly one victim, and a reason for --force. */
function checkTakeoverFlags(cli: Cli, opts: TakeoverFlags): void {
  if (opts.force === true && (opts.reason ?? '').trim() === '') cli.usage('--force needs --reason');
  if ((opts.victimKey === undefined) === (opts.victimAgent === undefined))
    cli.usage('give exactly one of --victim-key and --victim-agent');
}

function takeoverRequest(
  opts: TakeoverFlags,
  rest: Pick<TakeoverRequest, 'selector' | 'options'>,
): TakeoverRequest {
  return {
    ...rest,
    victim:
      opts.victimKey !== undefined
        ? { $case: 'victimKey', value: opts.victimKey }
        : { $case: 'victimAgentId', value: opts.victimAgent ?? '' },
    agentId: opts.by,
    key: opts.key ?? 0n,
    keyPurpose: '',
    type: opts.type ?? 0,
    abort: opts.abort === true,
    force: opts.force === true,
  };
}

function registerTakeover(cli: Cli): void {
  withGuardRails(
    withSelector(
      cli.program
        .command('takeover')
        .description('preempt a failed or greedy initiator (by key or host) on loaders'),
    ),
  )
    .requiredOption('--by <agent>', 'host that takes over')
    .option('--victim-key <key>', 'key to preempt', parseKeyOption)
    .option('--victim-agent <agent>', 'host whose registry keys are preempted')
    .option('--key <key>', "the taker's key (default: its newest backup key)", parseKeyOption)
    .option(
      '--type <type>',
      'reservation type to hold where the victim held (default: keep)',
      parsePrType,
    )
    .option('--abort', 'PREEMPT AND ABORT')
    .option(
      '--force',
      'take over although no rule proves the victim failed or greedy (admin; needs --reason)',
    )
    .action(async (opts) => {
      checkTakeoverFlags(cli, opts);
      const request = takeoverRequest(opts, {
        selector: selectorOf(opts),
        options: rolloutOptions(opts),
      });
      await cli.fleet(async (client, output) =>
        streamRollout(cli, client.takeover(request), output),
      );
    });
}

/** Adds `plan`, `apply` and `takeover`. */
export function registerRolloutCommands(cli: Cli): void {
  registerPlan(cli);
  registerApply(cli);
  registerTakeover(cli);
}
