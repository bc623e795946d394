import type { Logger } from 'pino';
import type {
  AgentServiceImplementation,
  Command,
  ConnectRequest,
  ConnectResponse,
} from '../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import { msToDuration } from '../common/command.js';
import { ErrorReason, invalidArgument, unavailable } from '../common/errors.js';
import type { AgentRegistry, AgentSession } from './agent-registry.js';
import { authorizeAgentHello, authorizeInventory, type PeerIdentity } from './auth/mtls.js';
import type { AsyncQueue } from './async-queue.js';
import type { CommandRouter } from './router.js';

/** Most commands coalesced into one CommandBatch (the outbox holds at most its capacity anyway). */
const MAX_COMMAND_BATCH = 256;

/**
 * The next message for the agent, waiting for one; undefined once the outbox is closed and drained (throws the
 * error it was closed with, if any). With `batches` (the agent accepts CommandBatch) a command with more
 * commands queued right behind it goes out together with them as one message (same order; anything else
 * queued keeps its place). A plain loop rather than async generators stacked on the outbox: an idle agent's
 * writer then waits on one promise (the outbox's), not on a chain of suspended generators.
 */
async function nextMessage(
  outbox: AsyncQueue<ConnectResponse>,
  batches: boolean,
): Promise<ConnectResponse | undefined> {
  let item = outbox.take();
  while (item === undefined) {
    if (outbox.isClosed) {
      const reason = outbox.closeReason;
      if (reason !== undefined) throw reason as Error; // close() is given errors (aborts, ServerError)
      return undefined;
    }
    await outbox.whenReadable();
    item = outbox.take();
  }
  if (!batches || item.message?.$case !== 'command') return item;
  let next = outbox.takeIf(isCommand);
  if (next === undefined) return item;
  const commands: Command[] = [item.message.value];
  while (next !== undefined) {
    if (next.message?.$case === 'command') commands.push(next.message.value);
    next = commands.length < MAX_COMMAND_BATCH ? outbox.takeIf(isCommand) : undefined;
  }
  return { message: { $case: 'commands', value: { commands } } };
}

const isCommand = (m: ConnectResponse): boolean => m.message?.$case === 'command';

/** Dependencies of {@link createAgentService}. */
export interface AgentServiceDeps {
  /** Where sessions live. */
  readonly registry: AgentRegistry;
  /** Router (draining flag). */
  readonly router: CommandRouter;
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
}

/**
 * AgentService.Connect: Hello first (else INVALID_ARGUMENT), Welcome back, then a reader loop (inventory,
 * results, heartbeats) while the handler yields the session's outbox (commands, cancels, reconnect). Any end of
 * the stream ends the session: its in-flight commands become OUTCOME_UNKNOWN.
 */
export function createAgentService(deps: AgentServiceDeps): AgentServiceImplementation {
  const { registry, log } = deps;
  // Welcome.heartbeat_interval, converted once (not per session: a failover welcomes a thousand at once).
  let heartbeatInterval: { ms: number; duration: ReturnType<typeof msToDuration> } | undefined;
  const heartbeatDuration = () => {
    const ms = registry.heartbeatMs;
    if (heartbeatInterval?.ms !== ms) heartbeatInterval = { ms, duration: msToDuration(ms) };
    return heartbeatInterval.duration;
  };
  // The fields a per-session child logger would add, built per log line: a child logger per connected agent
  // costs memory for as long as the agent stays connected, and an idle agent logs nothing.
  const bindings = (session: AgentSession) => ({
    agentId: session.agentId,
    sessionId: session.sessionId,
  });

  function settleResult(session: AgentSession, result: CommandResult): void {
    const pending = session.inFlight === 0 ? undefined : session.pending.get(result.commandId);
    if (pending === undefined) {
      log.warn(
        { ...bindings(session), commandId: result.commandId, outcome: result.outcome },
        'result for a command not in flight (already settled)',
      );
      return;
    }
    pending.settle(result);
  }

  function handle(
    session: AgentSession,
    request: ConnectRequest,
    identity: PeerIdentity | undefined,
  ): void {
    session.lastSeenMs = Date.now();
    const message = request.message;
    switch (message?.$case) {
      case 'inventory': {
        // The certificate's allow-list bounds what the agent may report, so nothing can be routed elsewhere.
        const { allowed, denied } = authorizeInventory(identity, message.value.paths);
        if (denied.length > 0) {
          log.warn(
            { ...bindings(session), denied: denied.map((p) => p.path), allow: identity?.allow },
            'inventory paths outside the certificate allow-list dropped',
          );
        }
        registry.setInventory(session, allowed);
        log.info(
          {
            ...bindings(session),
            paths: allowed.length,
            luIds: [...new Set(allowed.map((p) => p.luId))],
          },
          'inventory',
        );
        return;
      }
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
          log.debug({ ...bindings(session), inFlight: message.value.inFlight }, 'heartbeat');
        return;
      case 'hello':
        log.warn(bindings(session), 'second hello on one stream ignored');
        return;
      case undefined:
        log.warn(bindings(session), 'empty message ignored');
        return;
    }
  }

  return {
    async *connect(requests, ctx) {
      if (deps.router.draining) {
        throw unavailable(
          ErrorReason.SERVER_DRAINING,
          'server is draining: reconnect to another instance',
        );
      }
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done === true || first.value.message?.$case !== 'hello') {
        throw invalidArgument('message', 'the first message of a session must be hello');
      }
      const hello = first.value.message.value;
      if (hello.agentId === '') throw invalidArgument('hello.agent_id', 'required');
      const identity = authorizeAgentHello(ctx, hello, {
        requireCertificate: deps.requireAgentCertificate ?? registry.requireAgentCertificate,
      });
      const session = registry.open(hello);
      log.info(
        {
          ...bindings(session),
          hostname: hello.hostname,
          version: hello.version,
          site: hello.site,
          transport: hello.transport,
          peer: ctx.peer,
          ...(identity === undefined ? {} : { certificate: identity.fingerprint256 }),
        },
        'agent connected',
      );
      session.outbox.pushUrgent({
        message: {
          $case: 'welcome',
          value: {
            sessionId: session.sessionId,
            serverInstance: deps.instanceId,
            heartbeatInterval: heartbeatDuration(),
            acceptsResultBatches: true,
          },
        },
      });
      const onAbort = () => registry.close(session, 'agent stream cancelled');
      ctx.signal.addEventListener('abort', onAbort, { once: true });

      // Reader: agent → server. Runs beside the writer below; its end (any reason) ends the session.
      void (async () => {
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) return 'agent closed its stream';
          handle(session, next.value, identity);
        }
      })().then(
        (reason) => registry.close(session, reason),
        (e: unknown) =>
          registry.close(
            session,
            `agent stream failed: ${e instanceof Error ? e.message : String(e)}`,
          ),
      );

      try {
        // Writer: server → agent, resumed only when the socket drains; commands queued together go as one
        // CommandBatch to agents that accept it.
        const batches = hello.acceptsCommandBatches;
        for (;;) {
          const message = await nextMessage(session.outbox, batches);
          if (message === undefined) return;
          yield message;
        }
      } finally {
        ctx.signal.removeEventListener('abort', onAbort);
        const inFlight = session.inFlight;
        registry.close(session, 'agent stream ended');
        log.info({ ...bindings(session), inFlight }, 'agent disconnected');
      }
    },
  };
}
