/**
 * The CLI's ControlService client: the shared prfleet client factory (rich error details, so errors can name the
 * field, the resource and the agent; a deadline on every call that is also sent to the server so it budgets the
 * device command; one quick retry of read-only calls).
 */
import { createControlClient, type ControlClient } from '../common/client.js';

/** A ControlService client whose calls accept `{ deadline, signal }`. */
export type CliControlClient = ControlClient;

/** A connected client and the channel to close when done. */
export interface CliConnection {
  /** The client. */
  readonly client: CliControlClient;
  /** Closes the channel (pending calls fail with CANCELLED). */
  close(): void;
}

/** Backoff before the one retry of a read-only call (nice-grpc's default of 1 s is long for a CLI). */
const RETRY_BASE_DELAY_MS = 100;

/**
 * Opens a plaintext (h2c) channel to `address` (`host:port`). The channel connects lazily, so an unreachable
 * server shows up as UNAVAILABLE on the first call. TLS is not supported yet; `--plaintext` is the only mode.
 */
export function connectControl(address: string): CliConnection {
  const client = createControlClient(address, {
    defaultCallOptions: { retryBaseDelayMs: RETRY_BASE_DELAY_MS, retryMaxAttempts: 1 },
  });
  return { client, close: () => client.close() };
}
