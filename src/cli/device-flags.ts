/**
 * What every device command (PRIN and PROUT) shares: the target argument and flags, the device timeout and the
 * RPC deadline, the PROUT options (idempotency key, dry run, reason, precondition), and printing a result.
 */
import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, type Command } from '@commander-js/extra-typings';
import type { CommandOptions, ProutOptions, Target } from '../gen/prfleet/v1/control.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import { exitCodeForResult } from './exit-codes.js';
import { stringifyJson } from './json.js';
import { parseDurationMs, parseKeyOption, parseTransportIdOption, parseUint32 } from './parse.js';
import { renderResult } from './render.js';
import type { Cli, OutputFormat } from './runner.js';
import { resolveTarget, type TargetFlags } from './target.js';

/** Default device command timeout: sg3_utils' DEF_PT_TIMEOUT, 60 s. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** Extra time the RPC deadline allows beyond the device timeout, for routing to and from the agent. */
const ROUTING_MARGIN_MS = 5_000;

/** Adds the target argument and flags every device command has. */
export function withTargetOptions<
  O extends Record<string, unknown>,
  G extends Record<string, unknown>,
>(command: Command<[], O, G>) {
  return command
    .argument('[target]', 'agent:path to act through, e.g. host-a:/dev/sg3')
    .option('--lu <id>', 'logical unit id (as `prfleet devices` shows it)')
    .option('--agent <id>', 'agent to act through')
    .option('--path <node>', 'device node on that agent')
    .option(
      '--timeout <duration>',
      'device command timeout, e.g. 30s, 500ms (default 60s)',
      parseDurationMs,
    )
    .option(
      '--deadline <duration>',
      'how long to wait for the answer (default: --timeout + 5s)',
      parseDurationMs,
    );
}

/** Adds the target and the flags every PROUT command has. */
export function withProutOptions<
  O extends Record<string, unknown>,
  G extends Record<string, unknown>,
>(command: Command<[], O, G>) {
  return withTargetOptions(command)
    .option(
      '--idempotency-key <key>',
      'makes the PROUT at most once: a repeat returns the recorded result',
    )
    .option('--dry-run', 'validate and encode, but do not send')
    .option('--reason <text>', 'why (recorded in the history)')
    .option('--expect-generation <n>', 'send only if PRgeneration is still n', parseUint32)
    .option(
      '--expect-holder <key>',
      'send only if this key holds the reservation (0: no reservation)',
      parseKeyOption,
    );
}

/** Resolves the target; a bad one is a usage error printed the way commander prints its own (exit 1). */
export function targetOf(
  cli: Cli,
  compact: string | undefined,
  flags: TargetFlags,
  needsInitiator: boolean,
): Target {
  try {
    return resolveTarget(compact, flags, needsInitiator);
  } catch (error) {
    if (error instanceof InvalidArgumentError) cli.usage(error.message);
    throw error;
  }
}

/** Device timeout and RPC deadline from `--timeout` and `--deadline`. */
export function timing(flags: { timeout?: number; deadline?: number }) {
  const timeoutMs = flags.timeout ?? DEFAULT_COMMAND_TIMEOUT_MS;
  return { timeoutMs, deadlineMs: flags.deadline ?? timeoutMs + ROUTING_MARGIN_MS };
}

/** Flags shared by every PROUT, as parsed. */
interface ProutFlags {
  timeout?: number;
  deadline?: number;
  idempotencyKey?: string;
  dryRun?: true;
  reason?: string;
  expectGeneration?: number;
  expectHolder?: bigint;
}

function preconditionOf(flags: ProutFlags): ProutOptions['precondition'] {
  if (flags.expectGeneration === undefined && flags.expectHolder === undefined) return undefined;
  return {
    ...(flags.expectGeneration !== undefined ? { expectedGeneration: flags.expectGeneration } : {}),
    ...(flags.expectHolder !== undefined ? { expectedHolderKey: flags.expectHolder } : {}),
  };
}

/** Target, ProutOptions and call options of a PROUT command, and what its error hints need. */
export function proutBase(target: Target, flags: ProutFlags) {
  const { timeoutMs, deadlineMs } = timing(flags);
  // Every PROUT carries a key, generated here when not given, so the CLI can say how to retry the same command
  // after an error that leaves open whether it ran (a transport error, a deadline).
  const idempotencyKey = flags.idempotencyKey ?? (flags.dryRun === true ? '' : randomUUID());
  const options: ProutOptions = {
    commandTimeout: msDuration(timeoutMs),
    idempotencyKey,
    dryRun: flags.dryRun === true,
    reason: flags.reason ?? '',
    precondition: preconditionOf(flags),
  };
  return {
    target,
    options,
    call: { deadline: deadlineMs },
    context: { target, deadlineMs, idempotencyKey },
  };
}

/** CommandOptions carrying the device timeout. */
export function commandOptions(timeoutMs: number): CommandOptions {
  return { commandTimeout: msDuration(timeoutMs) };
}

/** Milliseconds as a proto Duration. */
function msDuration(ms: number): { seconds: bigint; nanos: number } {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** `--spec-i-pt` and the like: repeatable initiator ports. */
export function collectTransportId(
  value: string,
  previous: ReturnType<typeof parseTransportIdOption>[] = [],
) {
  return [...previous, parseTransportIdOption(value)];
}

/** Prints a device command's result and returns its exit code. */
export function printResult(
  cli: Cli,
  action: string,
  result: CommandResult | undefined,
  output: OutputFormat,
): number {
  if (!result) throw new Error('server returned no result');
  const exitCode = exitCodeForResult(result);
  cli.io.stdout(
    output === 'json'
      ? `${stringifyJson({ action, result, exitCode })}\n`
      : `${renderResult(action, result)}\n`,
  );
  return exitCode;
}
