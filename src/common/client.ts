import { randomUUID } from 'node:crypto';
import type { ChannelCredentials } from '@grpc/grpc-js';
import {
  createChannel,
  createClientFactory,
  Metadata,
  type Channel,
  type ChannelOptions,
  type ClientMiddleware,
  type ClientMiddlewareCall,
  type CallOptions,
} from 'nice-grpc';
import { deadlineMiddleware, type DeadlineOptions } from 'nice-grpc-client-middleware-deadline';
import type { RetryOptions } from 'nice-grpc-client-middleware-retry';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { AgentServiceDefinition, type AgentServiceClient } from '../gen/prfleet/v1/agent.js';
import { ControlServiceDefinition, type ControlServiceClient } from '../gen/prfleet/v1/control.js';
import { FleetServiceDefinition, type FleetServiceClient } from '../gen/prfleet/v1/fleet.js';
import { systemClock, type Clock } from './clock.js';
import { retryMiddleware } from './retry.js';

/**
 * Metadata key carrying the caller's remaining time in milliseconds, relative to when the call was sent.
 * nice-grpc clients never send `grpc-timeout` (their deadline is a local timer, grpc-ts-notes §2.5), so the
 * server could not budget device commands without it.
 */
export const TIMEOUT_METADATA_KEY = 'prfleet-timeout-ms';

/** Call options of prfleet clients: nice-grpc's, plus `deadline` and the retry options. */
export type PrfleetCallOptions = DeadlineOptions & RetryOptions;

/** ControlService client with deadline, retry and rich-error support; `close()` releases its channel. */
export type ControlClient = ControlServiceClient<PrfleetCallOptions> & {
  /** Closes the channel (pending calls fail with CANCELLED). */
  close(): void;
};

/** FleetService client with the same deadline, retry and rich-error support; `close()` releases its channel. */
export type FleetClient = FleetServiceClient<PrfleetCallOptions> & {
  /** Closes the channel (pending calls fail with CANCELLED). */
  close(): void;
};

/** AgentService client; `close()` releases its channel. */
export type AgentClient = AgentServiceClient<PrfleetCallOptions> & {
  /** Closes the channel. */
  close(): void;
};

/** Options for {@link createControlClient}, {@link createFleetClient} and {@link createAgentClient}. */
export interface ClientOptions {
  /** Extra grpc-js channel options. @default {} (agents: keepalive 30 s / 10 s, see agentChannelOptions) */
  readonly channelOptions?: ChannelOptions;
  /** Defaults for every call, e.g. `{ deadline: 5000 }`. @default {} */
  readonly defaultCallOptions?: CallOptions & PrfleetCallOptions;
  /** Use this channel instead of dialling `address` (it is then not closed by `close()`). @default none */
  readonly channel?: Channel;
  /**
   * Transport credentials, e.g. `ChannelCredentials.createSsl(ca, key, cert)` (see `channelCredentialsFor`).
   * @default plaintext h2c, unless `address` starts with https:// (then TLS with the system roots)
   */
  readonly credentials?: ChannelCredentials;
  /** Bearer token sent as `authorization: Bearer <token>` on every call. @default none */
  readonly token?: string;
  /**
   * Give every PROUT without an idempotency key one (see proutIdempotencyMiddleware). Off only to act as a
   * client that sends none (the server then journals it under a key it assigns). @default true
   */
  readonly idempotencyKeys?: boolean;
  /** Waits out the retries' backoff. @default systemClock */
  readonly clock?: Clock;
}

/** Metadata key of the bearer token (the server's auth middleware reads it). */
export const AUTHORIZATION_METADATA_KEY = 'authorization';

/** Client middleware adding `authorization: Bearer <token>` to every call that does not carry one. */
export function bearerTokenMiddleware(token: string): ClientMiddleware {
  const header = `Bearer ${token}`;
  return async function* <Req, Res>(call: ClientMiddlewareCall<Req, Res>, options: CallOptions) {
    const metadata = Metadata(options.metadata);
    if (!metadata.has(AUTHORIZATION_METADATA_KEY)) metadata.set(AUTHORIZATION_METADATA_KEY, header);
    return yield* call.next(call.request, { ...options, metadata });
  };
}

/** Channel options for an agent's long-lived stream (grpc-ts-notes §2.9). */
export const agentChannelOptions: ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 1_000,
  'grpc.max_reconnect_backoff_ms': 30_000,
};

/**
 * Client middleware that tells the server the call's deadline (metadata {@link TIMEOUT_METADATA_KEY}), so the
 * server can give the device command a budget that ends before the caller stops waiting. Must run before
 * deadlineMiddleware, which consumes `options.deadline`.
 */
export const deadlinePropagationMiddleware: ClientMiddleware<DeadlineOptions> = async function* <
  Req,
  Res,
>(call: ClientMiddlewareCall<Req, Res>, options: CallOptions & DeadlineOptions) {
  if (options.deadline === undefined) return yield* call.next(call.request, options);
  const remainingMs =
    options.deadline instanceof Date ? options.deadline.getTime() - Date.now() : options.deadline;
  const metadata = Metadata(options.metadata);
  metadata.set(TIMEOUT_METADATA_KEY, String(Math.max(0, Math.floor(remainingMs))));
  return yield* call.next(call.request, { ...options, metadata });
};

const passThrough: ClientMiddleware = (call, options) => call.next(call.request, options);

/** ControlService methods that send a PROUT (their requests carry ProutOptions). */
const PROUT_METHODS = new Set(
  ['Register', 'Reserve', 'Release', 'Clear', 'Preempt', 'RegisterAndMove'].map(
    (m) => `/prfleet.v1.ControlService/${m}`,
  ),
);

/**
 * Client middleware giving every PROUT without an idempotency key a fresh one (a UUID), so a retry of the call
 * (by the retry middleware or the caller, with the same request object) is the same command: it runs at most
 * once. Dry runs are left alone. The key is in the result (CommandResult.idempotency_key).
 */
export const proutIdempotencyMiddleware: ClientMiddleware = async function* <Req, Res>(
  call: ClientMiddlewareCall<Req, Res>,
  options: CallOptions,
) {
  if (call.requestStream || !PROUT_METHODS.has(call.method.path))
    return yield* call.next(call.request, options);
  const request = call.request as { options?: { idempotencyKey?: string; dryRun?: boolean } };
  const given = request.options;
  if (given?.dryRun === true || (given?.idempotencyKey ?? '') !== '')
    return yield* call.next(call.request, options);
  const keyed = { ...request, options: { ...given, idempotencyKey: randomUUID() } } as Req;
  return yield* call.next(keyed, options);
};

function clientFactory({ token, idempotencyKeys = true, clock = systemClock }: ClientOptions) {
  // Client middleware: the one attached last runs first. Order on the way out: propagate deadline → deadline
  // timer → PROUT key (before retry, so retries carry the same key) → retry (its backoff sleeps are cut by the
  // deadline) → bearer token → error details (innermost, so retry sees rich errors).
  const base = createClientFactory().use(errorDetailsClientMiddleware);
  return (token === undefined ? base : base.use(bearerTokenMiddleware(token)))
    .use(retryMiddleware(clock))
    .use(idempotencyKeys ? proutIdempotencyMiddleware : passThrough)
    .use(deadlineMiddleware)
    .use(deadlinePropagationMiddleware);
}

/** The channel `options` ask for (theirs, or a new one to `address`) and how to release it. */
function channelFor(
  address: string,
  options: ClientOptions,
  defaults: ChannelOptions = {},
): { channel: Channel; close: () => void } {
  if (options.channel !== undefined) return { channel: options.channel, close: () => undefined };
  const channel = createChannel(address, options.credentials, {
    ...defaults,
    ...options.channelOptions,
  });
  return { channel, close: () => channel.close() };
}

/**
 * Creates a ControlService client for `address` ('host:port': plaintext h2c unless `options.credentials` says
 * TLS) with error details (RichClientError), retries for NO_SIDE_EFFECTS methods, deadlines (`{ deadline: ms |
 * Date }`) that are also sent to the server, and `options.token` as bearer token. Call `close()` when done.
 */
export function createControlClient(address: string, options: ClientOptions = {}): ControlClient {
  const { channel, close } = channelFor(address, options);
  const client = clientFactory(options).create(ControlServiceDefinition, channel, {
    '*': options.defaultCallOptions ?? {},
  });
  return Object.assign(client, { close });
}

/**
 * Creates a FleetService client for `address` with the same middleware as {@link createControlClient}: error
 * details, deadlines sent to the server, one retry of NO_SIDE_EFFECTS unary calls (streams are never retried),
 * the bearer token. Call `close()` when done.
 */
export function createFleetClient(address: string, options: ClientOptions = {}): FleetClient {
  const { channel, close } = channelFor(address, options);
  const client = clientFactory(options).create(FleetServiceDefinition, channel, {
    '*': options.defaultCallOptions ?? {},
  });
  return Object.assign(client, { close });
}

/** Creates an AgentService client for `address` with agent keepalive options; call `close()` when done. */
export function createAgentClient(address: string, options: ClientOptions = {}): AgentClient {
  const { channel, close } = channelFor(address, options, agentChannelOptions);
  const client = clientFactory(options).create(AgentServiceDefinition, channel, {
    '*': options.defaultCallOptions ?? {},
  });
  return Object.assign(client, { close });
}
