import { ChannelCredentials, createChannel, createClient, type Channel } from 'nice-grpc';
import type { Logger } from 'pino';
import { AgentServiceDefinition, type AgentServiceClient } from '../src/gen/prfleet/v1/agent.js';
import { directServiceDefinition } from '../src/common/service-definition.js';
import { createLongPollClient, type AgentLinkClient, type LongPollClient } from './long-poll.js';
import type { AgentLinkKind, AgentOptions } from './agent.js';

/** Node options for the agent's one channel: keepalive per grpc-ts-notes §2.9, its own TCP connection. */
export const AGENT_CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 1_000,
  'grpc.max_reconnect_backoff_ms': 30_000,
  // One connection per agent even when several agents share a process (the sim): grpc-ts-notes pitfall 10.
  'grpc.use_local_subchannel_pool': 1,
  // The agent re-dials and says Hello itself after any failure; grpc-js's retry layer would only add a wrapper
  // and a retry buffer to every message of the one long-lived stream.
  'grpc.enable_retries': 0,
} as const;

/** What the links read from the agent's options. */
export type ServerLinkOptions = Pick<
  AgentOptions,
  'server' | 'plaintext' | 'tls' | 'longPollWaitMs' | 'link'
>;

/**
 * How an agent reaches its servers: the addresses it rotates through (each new session dials the next, so agents
 * fail over between instances without a load balancer), and one client per address over the current link kind
 * (a gRPC channel, or the HTTP/1.1 long-poll client after a fallback), made on first use and kept.
 */
export class ServerLinks {
  /** The link the next session uses. */
  kind: AgentLinkKind;
  private readonly addresses: string[];
  private index = 0;
  private readonly channels = new Map<string, Channel>();
  private readonly clients = new Map<string, AgentServiceClient>();
  private readonly longPollClients = new Map<string, LongPollClient>();

  constructor(
    private readonly options: ServerLinkOptions,
    private readonly log: Logger,
    /** A ready client to use for every stream session (tests). */
    private readonly fixedClient?: AgentServiceClient,
  ) {
    this.kind = options.link ?? 'stream';
    this.addresses = options.server
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
  }

  /** The address the next session dials. */
  get address(): string {
    return this.addresses[this.index % this.addresses.length] as string;
  }

  /** Moves on to the next address: a dead or draining instance is left behind (one address: the same one). */
  advance(): void {
    this.index += 1;
  }

  /** The client for `address` over the current link kind. */
  client(address: string): AgentLinkClient {
    if (this.kind === 'long-poll') return this.longPollClient(address);
    return this.fixedClient ?? this.streamClient(address);
  }

  /** Closes every channel and long-poll client (the agent stopped). */
  close(): void {
    for (const channel of this.channels.values()) channel.close();
    for (const poller of this.longPollClients.values()) poller.close();
  }

  private streamClient(address: string): AgentServiceClient {
    let existing = this.clients.get(address);
    if (existing === undefined) {
      const tls = this.options.tls;
      const channel = createChannel(
        address,
        this.options.plaintext
          ? ChannelCredentials.createInsecure()
          : ChannelCredentials.createSsl(tls?.ca ?? null, tls?.key ?? null, tls?.cert ?? null),
        AGENT_CHANNEL_OPTIONS,
      );
      this.channels.set(address, channel);
      // Results are complete messages: encode them without nice-grpc's fromPartial copy.
      existing = createClient(directServiceDefinition(AgentServiceDefinition), channel);
      this.clients.set(address, existing);
    }
    return existing;
  }

  private longPollClient(address: string): LongPollClient {
    let existing = this.longPollClients.get(address);
    if (existing === undefined) {
      existing = createLongPollClient({
        server: address,
        plaintext: this.options.plaintext ?? false,
        ...(this.options.tls === undefined ? {} : { tls: this.options.tls }),
        ...(this.options.longPollWaitMs === undefined
          ? {}
          : { waitMs: this.options.longPollWaitMs }),
        log: this.log,
      });
      this.longPollClients.set(address, existing);
    }
    return existing;
  }
}
