/**
 * The CLI's ControlService and FleetService clients: the shared prfleet client factory (rich error details, so errors can name the
 * field, the resource and the agent; a deadline on every call that is also sent to the server so it budgets the
 * device command; one quick retry of read-only calls), over TLS or (when asked) plaintext, with the bearer token.
 */
import { ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import {
  createControlClient,
  createFleetClient,
  type ClientOptions,
  type ControlClient,
  type FleetClient,
} from '../common/client.js';
import type { ConnectionSettings } from './connection.js';

/** A ControlService client whose calls accept `{ deadline, signal }`. */
export type CliControlClient = ControlClient;

/** A FleetService client whose calls accept `{ deadline, signal }`. */
export type CliFleetClient = FleetClient;

/** A connected client and the channel to close when done. */
export interface CliConnection<C = CliControlClient> {
  /** The client. */
  readonly client: C;
  /** Closes the channel (pending calls fail with CANCELLED). */
  close(): void;
}

/** Opens a connection to `address` as `settings` say. */
export type Connector<C> = (address: string, settings: ConnectSettings) => CliConnection<C>;

/** How to connect: resolved settings, or plaintext asked for explicitly (the demo, tests on loopback). */
export type ConnectSettings =
  ConnectionSettings | { readonly plaintext: true; readonly token?: string };

/** Backoff before the one retry of a read-only call (nice-grpc's default of 1 s is long for a CLI). */
const RETRY_BASE_DELAY_MS = 100;

/** grpc-js credentials and channel options for `settings` (TLS material, server name override). */
export function channelFor(settings: ConnectSettings): {
  credentials: ChannelCredentials;
  channelOptions: ChannelOptions;
} {
  if ('plaintext' in settings || settings.tls === false) {
    return { credentials: ChannelCredentials.createInsecure(), channelOptions: {} };
  }
  const { ca, cert, key, serverName } = settings.tls;
  return {
    credentials: ChannelCredentials.createSsl(ca ?? null, key ?? null, cert ?? null),
    channelOptions:
      serverName === undefined
        ? {}
        : { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName },
  };
}

/** The address to dial for `settings`, given the `--server` text (settings carry the normalised one). */
function addressOf(address: string, settings: ConnectSettings): string {
  return 'address' in settings ? settings.address : address;
}

/** Client options for `settings`: transport, token, and the CLI's quick single retry. */
function clientOptions(settings: ConnectSettings): ClientOptions {
  const { credentials, channelOptions } = channelFor(settings);
  return {
    credentials,
    channelOptions,
    ...(settings.token === undefined ? {} : { token: settings.token }),
    defaultCallOptions: { retryBaseDelayMs: RETRY_BASE_DELAY_MS, retryMaxAttempts: 1 },
  };
}

/**
 * Opens a ControlService channel to `address` (`host:port`) as `settings` say: TLS with the CA and client
 * certificate given, or plaintext h2c only when asked for; the token goes on every call. The channel connects
 * lazily, so an unreachable server or a failed handshake shows up as UNAVAILABLE on the first call.
 */
export const connectControl: Connector<CliControlClient> = (address, settings) => {
  const client = createControlClient(addressOf(address, settings), clientOptions(settings));
  return { client, close: () => client.close() };
};

/** Opens a FleetService channel as {@link connectControl} does, with the same middleware (deadline, retry). */
export const connectFleet: Connector<CliFleetClient> = (address, settings) => {
  const client = createFleetClient(addressOf(address, settings), clientOptions(settings));
  return { client, close: () => client.close() };
};
