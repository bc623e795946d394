/**
 * `prfleet replay FILE --profile P`: replays a transcript (recorded by `prfleet-agent --record`, the conformance
 * runner or the LIO VM suite) against a fresh emulated LU of profile P and shows the first divergence: the step,
 * the command, and both byte strings. Local: it needs no server. Checks a new device or firmware against a profile,
 * or turns a field problem into a regression test.
 */
import { readFile } from 'node:fs/promises';
import { Option } from '@commander-js/extra-typings';
import { ExitCode } from './exit-codes.js';
import { stringifyJson } from './json.js';
import { CliFailure } from './errors.js';
import type { Cli, CliIo, OutputFormat } from './runner.js';
import { PROFILE_NAMES, type ProfileName } from '../scsi/profiles.js';
import type { ReplayResult, Transcript } from '../emulator/transcript.js';

/** Adds `replay` (no server: it runs through the runner for the one error format and exit code). */
export function registerReplayCommand(cli: Cli): void {
  cli.program
    .command('replay')
    .description(
      `replay a transcript against an emulated LU of a profile; exit ${ExitCode.REPLAY_DIVERGED} and show the first divergence`,
    )
    .argument('<file>', 'transcript (JSON lines, the src/emulator transcript format)')
    .addOption(
      new Option(
        '--profile <name>',
        "profile to replay against (default: the transcript's)",
      ).choices(PROFILE_NAMES),
    )
    .action(async (file: string, opts: { profile?: ProfileName }) => {
      await cli.local((output) => replayFile(file, opts.profile, output, cli.io));
    });
}

/** Reads and replays `file`; a file that is not a transcript is a usage error naming it. */
async function replay(
  file: string,
  profile: ProfileName | undefined,
): Promise<{ transcript: Transcript; result: ReplayResult }> {
  // The emulator is loaded only for this command, so the other commands do not pay for loading it at start.
  const { parseTranscript, replayTranscript } = await import('../emulator/transcript.js');
  try {
    const transcript = parseTranscript(await readFile(file, 'utf8'));
    const result = replayTranscript(transcript, profile === undefined ? {} : { profile });
    return { transcript, result };
  } catch (e) {
    throw new CliFailure(
      'USAGE',
      `${file}: ${(e as Error).message}`,
      'give a transcript as prfleet-agent --record or the conformance runner writes it (JSON lines; docs/emulator.md "Transcripts")',
      ExitCode.USAGE,
    );
  }
}

/** The first divergence: the step, its command, and both byte strings of the field that differs. */
function divergenceText(
  file: string,
  against: string,
  transcript: Transcript,
  result: Exclude<ReplayResult, { ok: true }>,
  output: OutputFormat,
): string {
  const entry = transcript.entries.find((e) => e.step === result.step);
  const command = entry?.type === 'command' ? entry : undefined;
  if (output === 'json') {
    const { ok: _ok, ...divergence } = result;
    return stringifyJson({
      file,
      profile: against,
      diverged: true,
      ...divergence,
      nexus: command?.nexus,
      cdb: command?.cdb,
      dataOut: command?.dataOut,
    });
  }
  return [
    `${file}: diverges from profile ${against} at step ${result.step} (after ${result.steps} matching steps)`,
    `  nexus     ${command?.nexus ?? '?'}`,
    `  cdb       ${command?.cdb ?? ''}`,
    ...(command?.dataOut ? [`  data-out  ${command.dataOut}`] : []),
    `  ${result.field} recorded: ${result.expected || '(empty)'}`,
    `  ${result.field} ${against}: ${result.actual || '(empty)'}`,
  ].join('\n');
}

async function replayFile(
  file: string,
  profile: ProfileName | undefined,
  output: OutputFormat,
  io: CliIo,
): Promise<number> {
  const { transcript, result } = await replay(file, profile);
  const against = profile ?? transcript.header.profile;
  if (result.ok) {
    io.stdout(
      output === 'json'
        ? `${stringifyJson({ file, profile: against, diverged: false, steps: result.steps })}\n`
        : `${file}: ${result.steps} steps replayed against profile ${against}, no divergence\n`,
    );
    return ExitCode.OK;
  }
  io.stdout(`${divergenceText(file, against, transcript, result, output)}\n`);
  return ExitCode.REPLAY_DIVERGED;
}
