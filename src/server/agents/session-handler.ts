import type { Logger } from 'pino';
import type { ConnectRequest, Hello } from '../../gen/prfleet/v1/agent.js';
import { msToDuration } from '../../common/command.js';
import { ErrorReason, invalidArgument, unavailable } from '../../common/errors.js';
import { authorizeAgentHello, type PeerHeaderSource, type PeerIdentity } from '../auth/mtls.js';
import type { CommandRouter } from '../router.js';
import { checkRequest, type EdgeSchema } from '../edge.js';
import { acceptInventory } from './inventory.js';
import type { AgentPolicy } from './inventory-screen.js';
import type { AgentLinkKind, AgentSession } from './link.js';
import type { AgentRegistry } from './registry.js';
import { createResultSettler, rateLimitedWarning, sessionFields } from './results.js';

/** Dependencies of {@link createSessionHandler}. */
export interface SessionHandlerDeps {
  /** Where sessions live. */
  readonly registry: AgentRegistry;
  /** Router (draining flag). */
  readonly router: Pick<CommandRouter, 'draining'>;
  /** This instance's id (Welcome.server_instance). */
  readonly instanceId: string;
  /** Logger. */
  readonly log: Logger;
  /**
   * Refuse agents without a verified client certificate (UNAUTHENTICATED). @default the registry's setting
   * (registry.configure({ requireAgentCertificate })), false unless configured: plaintext test servers work.
   * A certificate naming another agent id is refused (PERMISSION_DENIED) either way.
   */
  readonly requireAgentCertificate?: boolean;
  /** Paths one agent may report; a larger inventory is refused whole. @default DEFAULT_MAX_AGENT_PATHS */
  readonly maxAgentPaths?: number;
  /** Sites, LU ids and loaders each agent may report (PRFLEET_AGENT_POLICY). @default no restriction */
  readonly agentPolicy?: AgentPolicy;
  /**
   * At most one warning of each kind an agent can repeat per message (a result for a command not in flight, a
   * second Hello, an empty message) per this many ms, with the count of those left out. @default 10000
   */
  readonly strayLogIntervalMs?: number;
  /**
   * The edge's descriptors: a Hello must pass the rules every client request does (string lengths by field name,
   * no control characters), since what it says goes into the registry, ListAgents and the event log.
   * @default unchecked (tests of the session logic alone)
   */
  readonly schema?: EdgeSchema | undefined;
}

/**
 * What every agent link does with sessions, whatever carries the messages: the gRPC stream and the long-poll
 * link both open sessions and hand the agent's messages here, so the router, the registry and the checks
 * (certificate identity, allow-lists, inventory screens, result checks) see no difference between them.
 */
export interface AgentSessionHandler {
  /**
   * Checks a Hello (server draining → UNAVAILABLE; certificate vs agent id → UNAUTHENTICATED/PERMISSION_DENIED),
   * opens the session (replacing the agent's previous one) and queues the Welcome. Throws ServerError.
   */
  open(
    hello: Hello,
    peer: PeerHeaderSource,
    peerAddress: string,
    link: AgentLinkKind,
  ): { session: AgentSession; identity: PeerIdentity | undefined };
  /** Handles one message of an open session (inventory, results, heartbeats), as the stream does. */
  handle(session: AgentSession, request: ConnectRequest, identity: PeerIdentity | undefined): void;
}

/** The error a draining server answers a new agent with: it should reconnect to another instance. */
export function drainingError(): Error {
  return unavailable(
    ErrorReason.SERVER_DRAINING,
    'server is draining: reconnect to another instance',
  );
}

/** The session logic shared by every agent link; see {@link AgentSessionHandler}. */
export function createSessionHandler(deps: SessionHandlerDeps): AgentSessionHandler {
  const { registry, log } = deps;
  const settleResult = createResultSettler(log, deps.strayLogIntervalMs);
  // Messages the server ignores cost an agent a few bytes each: a log line per message would flood the log.
  const secondHello = rateLimitedWarning(
    log,
    'second hello on one stream ignored',
    deps.strayLogIntervalMs,
  );
  const emptyMessage = rateLimitedWarning(log, 'empty message ignored', deps.strayLogIntervalMs);
  const heartbeatDuration = heartbeatDurationOf(registry);
  const helloDesc = deps.schema?.message('prfleet.v1.Hello');
  const inventoryChecks = { ...deps, pathDesc: deps.schema?.message('prfleet.v1.Path') };

  function handle(
    session: AgentSession,
    request: ConnectRequest,
    identity: PeerIdentity | undefined,
  ): void {
    session.touch();
    const message = request.message;
    switch (message?.$case) {
      case 'inventory':
        acceptInventory(inventoryChecks, session, identity, message.value.paths);
        return;
      case 'result':
        settleResult(session, message.value);
        return;
      case 'results':
        // A batch is only framing: each result settles as if it had come alone, in order.
        for (const result of message.value.results) settleResult(session, result);
        return;
      case 'heartbeat':
        registry.heartbeat(session, message.value);
        if (log.isLevelEnabled('debug'))
          log.debug({ ...sessionFields(session), inFlight: message.value.inFlight }, 'heartbeat');
        return;
      case 'hello':
        secondHello({ ...sessionFields(session) });
        return;
      case undefined:
        emptyMessage({ ...sessionFields(session) });
        return;
    }
  }

  /** Checks the Hello against the caller's certificate, opens the session and queues the Welcome. */
  function open(
    hello: Hello,
    peerHeaders: PeerHeaderSource,
    peer: string,
    link: AgentLinkKind,
  ): { session: AgentSession; identity: PeerIdentity | undefined } {
    if (deps.router.draining) throw drainingError();
    if (hello.agentId === '') throw invalidArgument('hello.agent_id', 'required');
    if (deps.schema !== undefined && helloDesc !== undefined)
      checkRequest(helloDesc, hello, 'hello.');
    const identity = authorizeAgentHello(peerHeaders, hello, {
      requireCertificate: deps.requireAgentCertificate ?? registry.requireAgentCertificate,
      isRevoked: (certificate) => registry.isCertificateRevoked(certificate),
    });
    const session = registry.open(hello, link, identity?.certificate);
    log.info(
      {
        ...sessionFields(session),
        hostname: hello.hostname,
        version: hello.version,
        site: hello.site,
        transport: hello.transport,
        link,
        peer,
        ...(identity === undefined ? {} : { certificate: identity.fingerprint256 }),
      },
      'agent connected',
    );
    session.welcome({
      sessionId: session.sessionId,
      serverInstance: deps.instanceId,
      heartbeatInterval: heartbeatDuration(),
      acceptsResultBatches: true,
    });
    return { session, identity };
  }

  return { open, handle };
}

/** Welcome.heartbeat_interval, converted once (not per session: a failover welcomes a thousand at once). */
function heartbeatDurationOf(registry: AgentRegistry): () => ReturnType<typeof msToDuration> {
  let cached: { ms: number; duration: ReturnType<typeof msToDuration> } | undefined;
  return () => {
    const ms = registry.heartbeatMs;
    if (cached?.ms !== ms) cached = { ms, duration: msToDuration(ms) };
    return cached.duration;
  };
}
