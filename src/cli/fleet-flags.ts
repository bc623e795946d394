/** Flags the fleet commands share: the LU selector and the rollout guard rails. */
import { Option, type Command, type OptionValues } from '@commander-js/extra-typings';
import type { FleetSelector, RolloutOptions } from '../gen/prfleet/v1/fleet.js';
import { msToDuration } from '../common/command.js';
import { collectLabel, parseDurationMs, parseUint32 } from './parse.js';

/** The selector flags every fleet command accepts. */
export function withSelector<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  command: Command<A, O, G>,
) {
  return command
    .option('--loader <id>', 'only LUs of this loader (repeatable)', collect)
    .option('--lu <id>', 'only this LU (repeatable)', collect)
    .option('--site <site>', 'only LUs (and paths) of agents of this site')
    .option('--label <key=value>', 'only agents carrying this label (repeatable)', collectLabel);
}

/** Repeatable string flags. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** The selector the flags name. */
export function selectorOf(opts: {
  loader?: string[];
  lu?: string[];
  site?: string;
  label?: string[];
}): FleetSelector {
  return {
    loaderIds: opts.loader ?? [],
    luIds: opts.lu ?? [],
    site: opts.site ?? '',
    labels: opts.label ?? [],
  };
}

/** The guard-rail flags of `apply` and `takeover`. */
export function withGuardRails<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  command: Command<A, O, G>,
) {
  return command
    .option('--max-concurrency <n>', 'LUs worked on at once (default 4)', parseUint32)
    .option('--error-threshold <n>', 'failed steps that stop the rollout (default 1)', parseUint32)
    .addOption(new Option('--no-rollback', 'keep completed steps when the rollout stops'))
    .option('--timeout <duration>', 'device command timeout (e.g. 30s)', parseDurationMs)
    .option('--operation-id <id>', 'rollout id; repeating it never re-sends journaled steps')
    .option('--reason <text>', 'why (recorded with every PROUT)')
    .option('--dry-run', 'plan and report, send nothing');
}

/** RolloutOptions from the guard-rail flags. */
export function rolloutOptions(opts: {
  maxConcurrency?: number;
  errorThreshold?: number;
  rollback?: boolean;
  timeout?: number;
  operationId?: string;
  reason?: string;
  dryRun?: boolean;
}): RolloutOptions {
  return {
    maxConcurrency: opts.maxConcurrency ?? 0,
    errorThreshold: opts.errorThreshold ?? 0,
    rollbackOnAbort: opts.rollback !== false,
    commandTimeout: opts.timeout === undefined ? undefined : msToDuration(opts.timeout),
    maxReplans: 0,
    operationId: opts.operationId ?? '',
    reason: opts.reason ?? '',
    dryRun: opts.dryRun === true,
  };
}
