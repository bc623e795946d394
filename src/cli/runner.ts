/**
 * The one path every `prfleet` command takes: the global flags → connection settings → a client (ControlService
 * or FleetService, both from the shared factory with the deadline and retry middleware) → the command's body,
 * which calls, prints and returns the exit code → the channel closed. Whatever goes wrong, in any command, is
 * described once (describeRpcError) and printed in the one error format (writeError) with its exit code.
 */
import type { Command } from '@commander-js/extra-typings';
import {
  connectControl,
  connectFleet,
  type CliConnection,
  type CliControlClient,
  type CliFleetClient,
  type Connector,
} from './client.js';
import {
  resolveConnection,
  transportContextOf,
  transportFlagsOf,
  type ConnectionSettings,
} from './connection.js';
import { describeRpcError, writeError, type ErrorContext } from './errors.js';
import { ExitCode } from './exit-codes.js';

/** Any commander program, whatever its typed arguments and options. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- commander's generics, invariant in the options
export type AnyProgram = Command<any, any, any>;

/** `-o, --output`. */
export type OutputFormat = 'table' | 'json';

/** How to open each service's connection (tests may substitute them). */
export interface Connectors {
  readonly control: Connector<CliControlClient>;
  readonly fleet: Connector<CliFleetClient>;
}

/** Where the CLI writes and what it reads from outside argv: the one io of every command. */
export interface CliIo {
  /** Writes to standard output (text already ends with a newline). */
  readonly stdout: (text: string) => void;
  /** Writes to standard error (errors, warnings, notes, the progress bar). */
  readonly stderr: (text: string) => void;
  /** Opens connections. @default connectControl, connectFleet */
  readonly connect?: Partial<Connectors>;
  /** Environment for the connection settings (PRFLEET_PLAINTEXT, PRFLEET_TLS_CA, PRFLEET_TOKEN, …). @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Show the audit progress bar. @default true when stderr is a TTY */
  readonly progress?: boolean;
}

/** The exit code of the invocation, set by the command that ran. */
export interface RunState {
  exitCode: number;
}

/** What a command tells the error hints about itself: its target, deadline, PROUT idempotency key. */
export type CommandContext = Omit<ErrorContext, 'server' | 'transport'>;

/** A command's work: calls, prints, and returns the exit code. */
export type CommandBody<C> = (client: C, output: OutputFormat) => Promise<number>;

/** What every command module registers against: the program, its io, and the one runner. */
export interface Cli {
  /** The program, to add commands to. */
  readonly program: AnyProgram;
  /** Where to write. */
  readonly io: CliIo;
  /** Runs `body` with a ControlService client. */
  control(body: CommandBody<CliControlClient>, context?: CommandContext): Promise<void>;
  /** Runs `body` with a FleetService client. */
  fleet(body: CommandBody<CliFleetClient>, context?: CommandContext): Promise<void>;
  /** Runs `body` without a server (e.g. `replay`), with the same error handling. */
  local(body: (output: OutputFormat) => Promise<number>): Promise<void>;
  /** Ends the invocation with a usage error, printed as commander prints its own (exit 1). */
  usage(message: string): never;
}

/** The global options every command reads (the program defines `--server`, `-o` and the transport flags). */
function globalsOf(program: AnyProgram) {
  const opts = program.opts() as { server: string; output: OutputFormat } & Record<string, unknown>;
  return { server: opts.server, output: opts.output, flags: transportFlagsOf(opts) };
}

/** Creates the runner for `program`: every command's `.action` goes through it. */
export function createCli(program: AnyProgram, io: CliIo, state: RunState): Cli {
  const fail = (error: unknown, context: ErrorContext, output: OutputFormat) => {
    const described = describeRpcError(error, context);
    writeError(io, output, described);
    state.exitCode = described.exitCode;
  };

  async function run<C>(
    connect: Connector<C>,
    body: CommandBody<C>,
    context: CommandContext = {},
  ): Promise<void> {
    const { server, output, flags } = globalsOf(program);
    let settings: ConnectionSettings | undefined;
    let connection: CliConnection<C> | undefined;
    try {
      settings = resolveConnection(server, flags, io.env ?? process.env);
      for (const warning of settings.warnings) io.stderr(`prfleet: warning: ${warning}\n`);
      connection = connect(server, settings);
      state.exitCode = await body(connection.client, output);
    } catch (error) {
      const transport = settings === undefined ? {} : { transport: transportContextOf(settings) };
      fail(error, { server, ...context, ...transport }, output);
    } finally {
      connection?.close();
    }
  }

  return {
    program,
    io,
    control: (body, context) => run(io.connect?.control ?? connectControl, body, context),
    fleet: (body, context) => run(io.connect?.fleet ?? connectFleet, body, context),
    local: async (body) => {
      const { server, output } = globalsOf(program);
      try {
        state.exitCode = await body(output);
      } catch (error) {
        fail(error, { server }, output);
      }
    },
    usage: (message) => program.error(`error: ${message}`, { exitCode: ExitCode.USAGE }),
  };
}
