/**
 * The `prfleet` command line: a gRPC client of ControlService and FleetService. `runCli()` parses argv, runs one
 * command and returns the exit code, writing through the given `io`, so tests can run it in-process as well as as
 * a binary. Every command goes through the one runner (runner.ts); each group of commands is a module of its own.
 */
import { Command, CommanderError, Option } from '@commander-js/extra-typings';
import { registerProutCommands } from './prout.js';
import { registerPrinCommands } from './prin.js';
import { EXIT_CODE_HELP, ExitCode } from './exit-codes.js';
import { registerFleetCommands } from './fleet.js';
import { registerHistoryCommands } from './history.js';
import { registerListingCommands } from './listing.js';
import { terminalSafe } from './render.js';
import { registerReplayCommand } from './replay.js';
import { createCli, type CliIo, type RunState } from './runner.js';
import { registerTokenCommands } from './tokens.js';

export type { CliIo } from './runner.js';
export { DEFAULT_COMMAND_TIMEOUT_MS } from './device-flags.js';

/** Default server address (sg3_utils has no equivalent; 50051 is gRPC's customary port). */
export const DEFAULT_SERVER = '127.0.0.1:50051';

/** Runs the CLI on `argv` (without node and script) and returns the process exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const state: RunState = { exitCode: ExitCode.OK };
  // Whatever a command prints, text that came from agents, devices or the server cannot drive the terminal.
  const program = buildProgram({ ...io, stdout: (text) => io.stdout(terminalSafe(text)) }, state);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; every parse error (unknown flag, bad value, missing argument) exits 1.
      return error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    throw error;
  }
  return state.exitCode;
}

const HELP_AFTER = `
Targets: every command acts as one I_T nexus, named agent:path (e.g. host-a:/dev/sg3),
or --agent/--path, optionally with --lu <id> to check that the path leads to that LU.
Reads (keys, reservation, caps, status) also accept --lu alone: the server picks an online path.
Keys are 0x + up to 16 hex digits, or decimal. Reservation types: we, ea, we-ro, ea-ro, we-ar, ea-ar.
Connection: TLS unless --plaintext (or PRFLEET_PLAINTEXT=true, or an http:// server); the bearer token from
--token-file, PRFLEET_TOKEN or PRFLEET_TOKEN_FILE goes on every call (docs/security.md).

${EXIT_CODE_HELP}`;

/** The program with its global options: server, output format, transport and token. */
function globalOptions() {
  return new Command()
    .name('prfleet')
    .description(
      'Persistent reservations across fleets of tape loaders: a client of the prfleet server.',
    )
    .version('0.1.0')
    .addOption(
      new Option(
        '-s, --server <host:port>',
        'prfleet server address (https://host[:port] for TLS, http:// for plaintext)',
      )
        .env('PRFLEET_SERVER')
        .default(DEFAULT_SERVER),
    )
    .addOption(
      new Option('-o, --output <format>', 'output format')
        .choices(['table', 'json'] as const)
        .default('table'),
    )
    .option(
      '--plaintext',
      'connect without TLS (h2c): only to a server run with PRFLEET_PLAINTEXT=true (env PRFLEET_PLAINTEXT)',
    )
    .option(
      '--tls',
      'connect with TLS (the default unless --plaintext), trusting the system roots unless --ca is given',
    )
    .option(
      '--ca <file>',
      'PEM CA certificate(s) to trust: the fleet CA that signed the server certificate (env PRFLEET_TLS_CA)',
    )
    .addOption(new Option('--tls-ca <file>', 'same as --ca (the agent spells it so)').hideHelp())
    .option(
      '--tls-cert <file>',
      'PEM client certificate for mutual TLS, optional (env PRFLEET_TLS_CERT)',
    )
    .option('--tls-key <file>', 'PEM private key of --tls-cert (env PRFLEET_TLS_KEY)')
    .option(
      '--tls-server-name <name>',
      'name the server certificate must carry (default: the host of --server)',
    )
    .option('--token-file <file>', 'file holding the bearer token (env PRFLEET_TOKEN_FILE)')
    .option(
      '--token <token>',
      'bearer token; other users can see it in ps: prefer --token-file or PRFLEET_TOKEN',
    );
}

function buildProgram(io: CliIo, state: RunState) {
  const program = globalOptions()
    .exitOverride()
    // Usage errors in the same `prfleet: STATUS: … / → hint` form as every other error (writeError).
    .configureOutput({
      writeOut: io.stdout,
      writeErr: io.stderr,
      outputError: (text, write) => write(`prfleet: USAGE: ${text.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('→ run with --help for usage')
    .addHelpText('after', HELP_AFTER);
  const cli = createCli(program, io, state);
  // In the order `--help` lists them.
  registerListingCommands(cli);
  registerPrinCommands(cli);
  registerProutCommands(cli);
  registerFleetCommands(cli);
  registerHistoryCommands(cli);
  registerTokenCommands(cli);
  registerReplayCommand(cli);
  return program;
}
