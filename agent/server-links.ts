import type { Logger } from 'pino';
import type { AgentServiceClient } from '../src/gen/prfleet/v1/agent.js';
import { createLongPollClient, type AgentLinkClient, type LongPollClient } from './long-poll.js';
import type { AgentLinkKind, AgentOptions } from './agent.js';
import type { Channel } from 'nice-grpc';

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

  /** The client for `address` over the current link kind (the gRPC link's module loads on its first use). */
  async client(address: string): Promise<AgentLinkClient> {
    if (this.kind === 'long-poll') return this.longPollClient(address);
    return this.fixedClient ?? (await this.streamClient(address));
  }

  /** Closes every channel and long-poll client (the agent stopped). */
  close(): void {
    for (const channel of this.channels.values()) channel.close();
    for (const poller of this.longPollClients.values()) poller.close();
  }

  private async streamClient(address: string): Promise<AgentServiceClient> {
    let existing = this.clients.get(address);
    if (existing === undefined) {
      // One reconnect loop asks at a time: nothing else makes this address's client while the module loads.
      const { createStreamLink } = await import('./stream-link.js');
      const link = createStreamLink(address, this.options);
      this.channels.set(address, link.channel);
      this.clients.set(address, link.client);
      existing = link.client;
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
