/**
 * The gRPC link (AgentService.Connect over grpc-js). ServerLinks loads this module on the first stream session
 * only, so an agent on the HTTP/1.1 long-poll link never loads grpc-js, nice-grpc or node:http2 (~9 MiB of an
 * idle agent's RSS: bench/README.md, "Agent weight, third pass").
 */
import { ChannelCredentials, createChannel, createClient, type Channel } from 'nice-grpc';
import { AgentServiceDefinition, type AgentServiceClient } from '../src/gen/prfleet/v1/agent.js';
import { directServiceDefinition } from '../src/common/service-definition.js';
import type { ServerLinkOptions } from './server-links.js';

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

/** A channel to `address` and the AgentService client on it. */
export function createStreamLink(
  address: string,
  options: Pick<ServerLinkOptions, 'plaintext' | 'tls'>,
): { readonly channel: Channel; readonly client: AgentServiceClient } {
  const tls = options.tls;
  const channel = createChannel(
    address,
    options.plaintext
      ? ChannelCredentials.createInsecure()
      : ChannelCredentials.createSsl(tls?.ca ?? null, tls?.key ?? null, tls?.cert ?? null),
    AGENT_CHANNEL_OPTIONS,
  );
  // Results are complete messages: encode them without nice-grpc's fromPartial copy.
  return {
    channel,
    client: createClient(directServiceDefinition(AgentServiceDefinition), channel),
  };
}
