/**
 * Shared by the CLI's grouped commands (history, tokens): connects with the global `--server`/`--output` and
 * transport options, runs `body`, and on an error prints it (JSON too with `-o json`) and sets its exit code.
 */
import type { Command } from '@commander-js/extra-typings';
import { connectControl, type CliConnection, type CliControlClient } from './client.js';
import {
  resolveConnection,
  transportContextOf,
  transportFlagsOf,
  type ConnectionSettings,
} from './connection.js';
import { describeRpcError, writeError } from './errors.js';

/** Any commander program, whatever its typed arguments and options. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- commander's generics, invariant in the options
export type AnyProgram = Command<any, any, any>;

/** Where grouped commands write, and how they connect (the main program's io). */
export interface GroupCliIo {
  /** Standard output. */
  readonly stdout: (text: string) => void;
  /** Standard error. */
  readonly stderr: (text: string) => void;
  /** Opens the connection to the server. @default connectControl */
  readonly connect?: (address: string, settings: ConnectionSettings) => CliConnection;
  /** Environment for the connection settings (PRFLEET_TLS_CA, PRFLEET_TOKEN, …). @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

/** Runs one command body against the server; sets `state.exitCode` to what it returns or the error's code. */
export function commandRunner(program: AnyProgram, io: GroupCliIo, state: { exitCode: number }) {
  return async (
    body: (client: CliControlClient, output: 'table' | 'json') => Promise<number>,
  ): Promise<void> => {
    const opts = program.opts() as { server: string; output: 'table' | 'json' } & Record<
      string,
      unknown
    >;
    let settings: ConnectionSettings | undefined;
    let connection: CliConnection | undefined;
    try {
      settings = resolveConnection(opts.server, transportFlagsOf(opts), io.env ?? process.env);
      for (const warning of settings.warnings) io.stderr(`prfleet: warning: ${warning}\n`);
      connection = (io.connect ?? connectControl)(opts.server, settings);
      state.exitCode = await body(connection.client, opts.output);
    } catch (error) {
      const described = describeRpcError(error, {
        server: opts.server,
        ...(settings === undefined ? {} : { transport: transportContextOf(settings) }),
      });
      writeError(io, opts.output, described);
      state.exitCode = described.exitCode;
    } finally {
      connection?.close();
    }
  };
}
