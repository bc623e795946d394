/**
 * The CLI's ControlService client: one channel, rich error details (so errors can name the field, the resource
 * and the agent), and a client-side deadline on every call.
 */
import { createChannel, createClientFactory, type Channel, type Client } from 'nice-grpc';
import { deadlineMiddleware, type DeadlineOptions } from 'nice-grpc-client-middleware-deadline';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { ControlServiceDefinition } from '../gen/prfleet/v1/control.js';

/** A ControlService client whose calls accept `{ deadline, signal }`. */
export type CliControlClient = Client<typeof ControlServiceDefinition, DeadlineOptions>;

/** A connected client and the channel to close when done. */
export interface CliConnection {
  /** The client. */
  readonly client: CliControlClient;
  /** Closes the channel (pending calls fail with CANCELLED). */
  close(): void;
}

/**
 * Opens a plaintext (h2c) channel to `address` (`host:port`). The channel connects lazily, so an unreachable
 * server shows up as UNAVAILABLE on the first call. TLS is not supported yet; `--plaintext` is the only mode.
 */
export function connectControl(address: string): CliConnection {
  const channel: Channel = createChannel(address.includes('://') ? address : `http://${address}`);
  const client = createClientFactory()
    .use(errorDetailsClientMiddleware)
    .use(deadlineMiddleware)
    .create(ControlServiceDefinition, channel);
  return { client, close: () => channel.close() };
}
