import { randomUUID } from 'node:crypto';
/**
 * The `prfleet` command line: a gRPC client of ControlService. `runCli()` parses argv, runs one command and returns
 * the exit code, writing through the given `io`, so tests can run it in-process as well as as a binary.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import type { CommandOptions, ProutOptions, Target } from '../gen/prfleet/v1/control.js';
import { PrType, type CommandResult } from '../gen/prfleet/v1/scsi.js';
import { listAllAgents, listAllDevices } from '../common/pages.js';
import { connectControl, type CliConnection, type CliControlClient } from './client.js';
import {
  resolveConnection,
  transportContextOf,
  transportFlagsOf,
  type ConnectionSettings,
} from './connection.js';
import { describeRpcError, writeError } from './errors.js';
import { EXIT_CODE_HELP, ExitCode, exitCodeForResult } from './exit-codes.js';
import { stringifyJson } from './json.js';
import {
  collectLabel,
  parseDeviceType,
  parseDurationMs,
  parseKeyOption,
  parsePrType,
  parseTransportIdOption,
  parseUint32,
} from './parse.js';
import { renderAgents, renderDevices, renderResult, terminalSafe } from './render.js';
import { resolveTarget, type TargetFlags } from './target.js';
import { registerFleetCommands } from './fleet.js';
import { registerHistoryCommands } from './history.js';
import { registerTokenCommands } from './tokens.js';
import { registerReplayCommand } from './replay.js';

/** Where the CLI writes and what it reads from outside argv. */
export interface CliIo {
  /** Writes to standard output (text already ends with a newline). */
  readonly stdout: (text: string) => void;
  /** Writes to standard error. */
  readonly stderr: (text: string) => void;
  /** Opens the connection to the server. @default connectControl */
  readonly connect?: (address: string, settings: ConnectionSettings) => CliConnection;
  /** Environment for the connection settings (PRFLEET_PLAINTEXT, PRFLEET_TLS_CA, PRFLEET_TOKEN, …). @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

/** Default server address (sg3_utils has no equivalent; 50051 is gRPC's customary port). */
export const DEFAULT_SERVER = '127.0.0.1:50051';
/** Default device command timeout: sg3_utils' DEF_PT_TIMEOUT, 60 s. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** Extra time the RPC deadline allows beyond the device timeout, for routing to and from the agent. */
const ROUTING_MARGIN_MS = 5_000;
/** Deadline of calls that do not reach a device (ListAgents, ListDevices). */
const LIST_DEADLINE_MS = 15_000;

type OutputFormat = 'table' | 'json';

/** Per-invocation state the command actions share. */
interface RunState {
  exitCode: number;
}

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

function buildProgram(io: CliIo, state: RunState) {
  const program = new Command()
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
    )
    .exitOverride()
    // Usage errors in the same `prfleet: STATUS: … / → hint` form as every other error (writeError).
    .configureOutput({
      writeOut: io.stdout,
      writeErr: io.stderr,
      outputError: (text, write) => write(`prfleet: USAGE: ${text.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('→ run with --help for usage')
    .addHelpText(
      'after',
      `
Targets: every command acts as one I_T nexus, named agent:path (e.g. host-a:/dev/sg3),
or --agent/--path, optionally with --lu <id> to check that the path leads to that LU.
Reads (keys, reservation, caps, status) also accept --lu alone: the server picks an online path.
Keys are 0x + up to 16 hex digits, or decimal. Reservation types: we, ea, we-ro, ea-ro, we-ar, ea-ar.
Connection: TLS unless --plaintext (or PRFLEET_PLAINTEXT=true, or an http:// server); the bearer token from
--token-file, PRFLEET_TOKEN or PRFLEET_TOKEN_FILE goes on every call (docs/security.md).

${EXIT_CODE_HELP}`,
    );

  /** Resolves the target; a bad one is a usage error printed the way commander prints its own (exit 1). */
  const targetOf = (
    compact: string | undefined,
    flags: TargetFlags,
    needsInitiator: boolean,
  ): Target => {
    try {
      return resolveTarget(compact, flags, needsInitiator);
    } catch (error) {
      if (error instanceof InvalidArgumentError)
        program.error(`error: ${error.message}`, { exitCode: ExitCode.USAGE });
      throw error;
    }
  };

  const globals = () => {
    const opts = program.opts();
    return {
      server: opts.server,
      output: opts.output,
      flags: transportFlagsOf(opts),
    };
  };

  /** Opens a connection, runs `body`, renders errors, closes the connection. */
  const withClient = async (
    describe: { target?: Target; deadlineMs?: number; idempotencyKey?: string },
    body: (client: CliControlClient, output: OutputFormat) => Promise<number>,
  ): Promise<void> => {
    const { server, output, flags } = globals();
    let settings: ConnectionSettings | undefined;
    let connection: CliConnection | undefined;
    try {
      settings = resolveConnection(server, flags, io.env ?? process.env);
      for (const warning of settings.warnings) io.stderr(`prfleet: warning: ${warning}\n`);
      connection = (io.connect ?? connectControl)(server, settings);
      state.exitCode = await body(connection.client, output);
    } catch (error) {
      const described = describeRpcError(error, {
        server,
        ...describe,
        ...(settings === undefined ? {} : { transport: transportContextOf(settings) }),
      });
      writeError(io, output, described);
      state.exitCode = described.exitCode;
    } finally {
      connection?.close();
    }
  };

  /** Prints a result and returns its exit code. */
  const emitResult = (
    action: string,
    result: CommandResult | undefined,
    output: OutputFormat,
  ): number => {
    if (!result) throw new Error('server returned no result');
    if (output === 'json')
      io.stdout(`${stringifyJson({ action, result, exitCode: exitCodeForResult(result) })}\n`);
    else io.stdout(`${renderResult(action, result)}\n`);
    return exitCodeForResult(result);
  };

  program
    .command('agents')
    .description('list agents known to the server')
    .option('--site <site>', 'only agents of this site')
    .action(async (opts) => {
      await withClient({}, async (client, output) => {
        const agents = await listAllAgents(
          client,
          { site: opts.site ?? '' },
          { deadline: LIST_DEADLINE_MS },
        );
        io.stdout(`${output === 'json' ? stringifyJson({ agents }) : renderAgents(agents)}\n`);
        return ExitCode.OK;
      });
    });

  program
    .command('devices')
    .description('list logical units (changers, drives) with every path to them')
    .option('--site <site>', 'only LUs seen by agents of this site')
    .option(
      '--label <key=value>',
      'only LUs seen by agents with this label (repeatable)',
      collectLabel,
    )
    .option(
      '--type <type>',
      'only LUs of this type: changer, tape, disk or a number',
      parseDeviceType,
    )
    .option('--loader <id>', 'only LUs of this loader')
    .action(async (opts) => {
      await withClient({}, async (client, output) => {
        const logicalUnits = await listAllDevices(
          client,
          {
            site: opts.site ?? '',
            labels: opts.label ?? [],
            ...(opts.type !== undefined ? { peripheralDeviceType: opts.type } : {}),
            loaderId: opts.loader ?? '',
          },
          { deadline: LIST_DEADLINE_MS },
        );
        io.stdout(
          `${output === 'json' ? stringifyJson({ logicalUnits }) : renderDevices(logicalUnits)}\n`,
        );
        return ExitCode.OK;
      });
    });

  // PERSISTENT RESERVE IN commands.
  const prin = [
    {
      name: 'keys',
      action: 'READ KEYS',
      call: 'readKeys',
      about: 'PRIN READ KEYS: registered keys',
    },
    {
      name: 'reservation',
      action: 'READ RESERVATION',
      call: 'readReservation',
      about: 'PRIN READ RESERVATION: holder and type',
    },
    {
      name: 'caps',
      action: 'REPORT CAPABILITIES',
      call: 'reportCapabilities',
      about: 'PRIN REPORT CAPABILITIES',
    },
    {
      name: 'status',
      action: 'READ FULL STATUS',
      call: 'readFullStatus',
      about: 'PRIN READ FULL STATUS: every registered nexus',
    },
  ] as const;
  for (const spec of prin) {
    withTargetOptions(program.command(spec.name).description(spec.about))
      .option('--allocation-length <bytes>', 'ALLOCATION LENGTH (default 8192)', parseUint32)
      .action(async (compact, opts) => {
        const target = targetOf(compact, opts, false);
        const timeoutMs = opts.timeout ?? DEFAULT_COMMAND_TIMEOUT_MS;
        const deadlineMs = opts.deadline ?? timeoutMs + ROUTING_MARGIN_MS;
        await withClient({ target, deadlineMs }, async (client, output) => {
          const request = {
            target,
            options: commandOptions(timeoutMs),
            allocationLength: opts.allocationLength ?? 0,
          };
          const callOptions = { deadline: deadlineMs };
          const response = await client[spec.call](request, callOptions);
          return emitResult(spec.action, response.result, output);
        });
      });
  }

  // PERSISTENT RESERVE OUT commands.
  withProutOptions(
    program.command('register').description('PROUT REGISTER (or REGISTER AND IGNORE EXISTING KEY)'),
  )
    .option('--key <key>', "this nexus's current key (0 when unregistered)", parseKeyOption)
    .requiredOption('--new-key <key>', 'the key to register (0 unregisters)', parseKeyOption)
    .option(
      '--ignore-existing',
      'REGISTER AND IGNORE EXISTING KEY: no need to know the current key',
    )
    .option('--aptpl', 'persist through power loss')
    .option('--all-tg-pt', 'register through every target port')
    .option(
      '--spec-i-pt <port>',
      'also register this initiator port (repeatable)',
      collectTransportId,
    )
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(compact, opts, true), opts);
      await withClient(base, async (client, output) => {
        const response = await client.register(
          {
            target: base.target,
            options: base.options,
            key: opts.key ?? 0n,
            newKey: opts.newKey,
            ignoreExistingKey: opts.ignoreExisting === true,
            aptpl: opts.aptpl === true,
            allTgPt: opts.allTgPt === true,
            specIPtTransportIds: opts.specIPt ?? [],
          },
          base.call(),
        );
        const action = opts.ignoreExisting ? 'REGISTER AND IGNORE EXISTING KEY' : 'REGISTER';
        return emitResult(action, response.result, output);
      });
    });

  withProutOptions(program.command('reserve').description('PROUT RESERVE: take the reservation'))
    .requiredOption('--key <key>', "this nexus's registered key", parseKeyOption)
    .requiredOption('--type <type>', 'we, ea, we-ro, ea-ro, we-ar or ea-ar', parsePrType)
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(compact, opts, true), opts);
      await withClient(base, async (client, output) => {
        const request = {
          target: base.target,
          options: base.options,
          key: opts.key,
          type: opts.type,
        };
        const response = await client.reserve(request, base.call());
        return emitResult('RESERVE', response.result, output);
      });
    });

  withProutOptions(program.command('release').description('PROUT RELEASE: give the reservation up'))
    .requiredOption('--key <key>', "the holder's key", parseKeyOption)
    .requiredOption('--type <type>', 'type of the reservation being released', parsePrType)
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(compact, opts, true), opts);
      await withClient(base, async (client, output) => {
        const request = {
          target: base.target,
          options: base.options,
          key: opts.key,
          type: opts.type,
        };
        const response = await client.release(request, base.call());
        return emitResult('RELEASE', response.result, output);
      });
    });

  withProutOptions(
    program
      .command('clear')
      .description('PROUT CLEAR: remove every registration and the reservation'),
  )
    .requiredOption('--key <key>', "this nexus's registered key", parseKeyOption)
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(compact, opts, true), opts);
      await withClient(base, async (client, output) => {
        const response = await client.clear(
          { target: base.target, options: base.options, key: opts.key },
          base.call(),
        );
        return emitResult('CLEAR', response.result, output);
      });
    });

  withProutOptions(
    program.command('preempt').description("PROUT PREEMPT: remove another key's registrations"),
  )
    .requiredOption('--key <key>', "this nexus's registered key", parseKeyOption)
    .requiredOption(
      '--preempt-key <key>',
      'the victim key (0 only with an all-registrants reservation)',
      parseKeyOption,
    )
    .option('--type <type>', 'type of the reservation to take', parsePrType)
    .option('--abort', 'PREEMPT AND ABORT: also abort the victims\u2019 outstanding commands')
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(compact, opts, true), opts);
      await withClient(base, async (client, output) => {
        const response = await client.preempt(
          {
            target: base.target,
            options: base.options,
            key: opts.key,
            preemptKey: opts.preemptKey,
            type: opts.type ?? 0,
            abort: opts.abort === true,
          },
          base.call(),
        );
        return emitResult(opts.abort ? 'PREEMPT AND ABORT' : 'PREEMPT', response.result, output);
      });
    });

  withProutOptions(
    program
      .command('move')
      .description('PROUT REGISTER AND MOVE: hand the reservation to another nexus'),
  )
    .requiredOption('--key <key>', "the holder's key", parseKeyOption)
    .requiredOption(
      '--destination-key <key>',
      'key to register for the destination',
      parseKeyOption,
    )
    .requiredOption(
      '--destination <port>',
      'destination initiator port, e.g. sas:0x5000c50012345678',
      parseTransportIdOption,
    )
    .requiredOption(
      '--relative-target-port <n>',
      'RELATIVE TARGET PORT IDENTIFIER of the destination nexus',
      parseUint32,
    )
    .option(
      '--type <type>',
      'TYPE sent in the CDB (informational: the device moves the reservation with its own type)',
      parsePrType,
    )
    .option('--unreg', 'unregister this nexus after the move')
    .option('--aptpl', 'persist through power loss')
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(compact, opts, true), opts);
      await withClient(base, async (client, output) => {
        const response = await client.registerAndMove(
          {
            target: base.target,
            options: base.options,
            key: opts.key,
            destinationKey: opts.destinationKey,
            destination: opts.destination,
            relativeTargetPort: opts.relativeTargetPort,
            unreg: opts.unreg === true,
            aptpl: opts.aptpl === true,
            type: opts.type ?? PrType.PR_TYPE_UNSPECIFIED,
          },
          base.call(),
        );
        return emitResult('REGISTER AND MOVE', response.result, output);
      });
    });

  // Fleet operations (audit, keys, desired state, plan/apply/takeover) and the tamper-evident history.
  registerFleetCommands(
    program,
    { stdout: io.stdout, stderr: io.stderr, ...(io.env === undefined ? {} : { env: io.env }) },
    state,
  );
  registerHistoryCommands(program, io, state);
  registerTokenCommands(program, io, state);
  registerReplayCommand(program, io, state);

  return program;
}

/** Adds the target argument and flags every device command has. */
function withTargetOptions<O extends Record<string, unknown>, G extends Record<string, unknown>>(
  command: Command<[], O, G>,
) {
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
function withProutOptions<O extends Record<string, unknown>, G extends Record<string, unknown>>(
  command: Command<[], O, G>,
) {
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

/** Target, ProutOptions and call options of a PROUT command. */
function proutBase(target: Target, flags: ProutFlags) {
  const timeoutMs = flags.timeout ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const deadlineMs = flags.deadline ?? timeoutMs + ROUTING_MARGIN_MS;
  const precondition =
    flags.expectGeneration !== undefined || flags.expectHolder !== undefined
      ? {
          ...(flags.expectGeneration !== undefined
            ? { expectedGeneration: flags.expectGeneration }
            : {}),
          ...(flags.expectHolder !== undefined ? { expectedHolderKey: flags.expectHolder } : {}),
        }
      : undefined;
  // Every PROUT carries a key, generated here when not given, so the CLI can say how to retry the same command
  // after an error that leaves open whether it ran (a transport error, a deadline).
  const idempotencyKey = flags.idempotencyKey ?? (flags.dryRun === true ? '' : randomUUID());
  const options: ProutOptions = {
    commandTimeout: msDuration(timeoutMs),
    idempotencyKey,
    dryRun: flags.dryRun === true,
    reason: flags.reason ?? '',
    precondition,
  };
  return {
    target,
    deadlineMs,
    idempotencyKey,
    options,
    call: () => ({ deadline: deadlineMs }),
  };
}

/** CommandOptions carrying the device timeout. */
function commandOptions(timeoutMs: number): CommandOptions {
  return { commandTimeout: msDuration(timeoutMs) };
}

/** Milliseconds as a proto Duration. */
function msDuration(ms: number): { seconds: bigint; nanos: number } {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

function collectTransportId(
  value: string,
  previous: ReturnType<typeof parseTransportIdOption>[] = [],
) {
  return [...previous, parseTransportIdOption(value)];
}
