import {
  Metadata as GrpcMetadata,
  ServerInterceptingCall,
  type FullServerListener,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import { ServerError, Status } from 'nice-grpc-common';
import type { Logger } from 'pino';
import {
  AgentServiceDefinition,
  type AgentServiceImplementation,
  type Command,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
} from '../gen/prfleet/v1/agent.js';
import type { CommandResult, Path } from '../gen/prfleet/v1/scsi.js';
import { unknownResult } from '../common/result.js';
import { invalidAgentResult, rateLimitedWarning } from './agents/results.js';
import {
  DEFAULT_MAX_AGENT_PATHS,
  screenInventory,
  type AgentPolicy,
} from './agents/inventory-screen.js';
import { msToDuration } from '../common/command.js';
import { ErrorReason, invalidArgument, unavailable } from '../common/errors.js';
import type { AgentLinkKind, AgentRegistry, AgentSession } from './agents/index.js';
import {
  authorizeAgentHello,
  authorizeInventory,
  type PeerHeaderSource,
  type PeerIdentity,
} from './auth/mtls.js';
import type { AsyncQueue } from '../common/async-queue.js';
import { describeFailure, STATUS_DETAILS_TRAILER, type RpcObserver } from './middleware.js';
import type { CommandRouter } from './router.js';
import { checkRequest, violationsOf, type EdgeSchema } from './edge.js';

/** Most commands coalesced into one CommandBatch (the outbox holds at most its capacity anyway). */
const MAX_COMMAND_BATCH = 256;

/** Messages handed to grpc-js but not yet written before the writer waits (a Node stream's object-mode default). */
const HIGH_WATER = 16;

/** What a Connect stream ends with (grpc-js does not export the type by name). */
type CallStatus = Parameters<ServerInterceptingCallInterface['sendStatus']>[0];

const CONNECT_PATH = `/${AgentServiceDefinition.fullName}/${AgentServiceDefinition.methods.connect.name}`;

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
  /** Paths one agent may report; a larger inventory is refused whole. @default DEFAULT_MAX_AGENT_PATHS */
  readonly maxAgentPaths?: number;
  /** Sites, LU ids and loaders each agent may report (PRFLEET_AGENT_POLICY). @default no restriction */
  readonly agentPolicy?: AgentPolicy;
  /** At most one "stray result" warning per this many ms (with the count of those left out). @default 10000 */
  readonly strayLogIntervalMs?: number;
  /** Counts each finished Connect stream by status (the metrics' RPC counter), as rpcMiddleware does for others. */
  readonly observe?: RpcObserver | undefined;
  /**
   * A stream that has not said Hello this long after it opened is ended (DEADLINE_EXCEEDED): an open stream
   * holds a connection and its memory, and before Hello nothing is known of its peer. @default 30000
   */
  readonly helloTimeoutMs?: number;
  /**
   * The edge's descriptors: a Hello must pass the rules every client request does (string lengths by field name,
   * no control characters), since what it says goes into the registry, ListAgents and the event log.
   * @default unchecked (tests of the session logic alone)
   */
  readonly schema?: EdgeSchema | undefined;
}

/**
 * AgentService served below nice-grpc: `interceptor` answers every Connect call on grpc-js's own call object
 * (put it first in the server's `interceptors`, so credential interceptors such as the mTLS peer identity run
 * before it); `implementation` is registered for AgentService only so that grpc-js routes and decodes Connect
 * (it is never reached while the interceptor is installed, and says so if it is). An idle agent is most of a
 * fleet: nice-grpc's per-call context, Node stream and async-generator chain cost each one ~10 KiB.
 */
export interface AgentService {
  readonly interceptor: ServerInterceptor;
  readonly implementation: AgentServiceImplementation;
  /** The session logic the stream uses, for the other link (HTTP/1.1 long polling, src/server/http/long-poll.ts). */
  readonly sessions: AgentSessionHandler;
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

/** AgentService.Connect for a grpc-js/nice-grpc server; see {@link AgentService}. */
export function createAgentService(deps: AgentServiceDeps): AgentService {
  const { registry, log } = deps;
  const helloTimeoutMs = deps.helloTimeoutMs ?? 30_000;
  const helloDesc = deps.schema?.message('prfleet.v1.Hello');
  const pathDesc = deps.schema?.message('prfleet.v1.Path');
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

  // Results for commands not in flight on the session (settled already, or never sent): dropped, and logged
  // with a rate limit, so that an agent sending thousands cannot flood the log.
  const strayResult = rateLimitedWarning(
    log,
    'result for a command not in flight on this session dropped (settled already, or never sent)',
    deps.strayLogIntervalMs,
  );

  function settleResult(session: AgentSession, result: CommandResult): void {
    const pending = session.pendingCommand(result.commandId);
    if (pending === undefined) {
      strayResult({ ...bindings(session), commandId: result.commandId, outcome: result.outcome });
      return;
    }
    const invalid = invalidAgentResult(result, pending.command);
    if (invalid === undefined) {
      pending.settle(result);
      return;
    }
    // Not a device's answer: whether the command ran is unknown, and nothing the agent sent is kept.
    log.warn(
      { ...bindings(session), commandId: result.commandId, invalid },
      'invalid result from agent: settled as UNKNOWN',
    );
    pending.settle(
      unknownResult(
        pending.command,
        session.agentId,
        `agent ${session.agentId} sent an invalid result (${invalid}): the command may or may not have run; read the logical unit before retrying`,
      ),
    );
  }

  /**
   * What of an inventory is kept: at most maxAgentPaths paths (a larger one is refused whole: its paths are not
   * trusted), none outside the agent's policy, none contradicting an LU identity another path established.
   */
  function screen(session: AgentSession, paths: readonly Path[]): Path[] {
    const maxPaths = deps.maxAgentPaths ?? DEFAULT_MAX_AGENT_PATHS;
    if (paths.length > maxPaths) {
      log.error(
        { ...bindings(session), paths: paths.length, max: maxPaths },
        `inventory refused: ${paths.length} paths, more than one agent may report (PRFLEET_MAX_AGENT_PATHS=${maxPaths}); the agent's paths are not listed or routed to`,
      );
      return [];
    }
    const { kept, refused, conflicts } = screenInventory({
      agentId: session.agentId,
      site: registry.get(session.agentId)?.hello.site ?? '',
      paths,
      registry,
      policy: deps.agentPolicy,
    });
    if (refused.length > 0) {
      log.warn(
        { ...bindings(session), refused: refused.map((r) => ({ path: r.path.path, why: r.why })) },
        'inventory paths outside the agent policy refused (PRFLEET_AGENT_POLICY)',
      );
    }
    for (const c of conflicts) {
      log.error(
        {
          ...bindings(session),
          path: c.path.path,
          luId: c.path.luId,
          claimed: c.claimed,
          established: c.established,
          establishedBy: c.establishedBy,
        },
        'conflicting LU identity quarantined: the path claims an LU id another path established with another INQUIRY identity; it is not listed or routed to',
      );
    }
    registry.quarantine(session.agentId, conflicts);
    return kept;
  }

  /**
   * The paths that pass the edge's rules (lengths by field name, no control characters): what an inventory says
   * goes into ListDevices, the events and the web view. The others are dropped and logged.
   */
  function wellFormed(session: AgentSession, paths: readonly Path[]): readonly Path[] {
    if (deps.schema === undefined || pathDesc === undefined) return paths;
    const schema = deps.schema;
    const bad = new Map<number, string>();
    paths = paths.map(withPrintableInquiry);
    paths.forEach((path, i) => {
      const [first] = violationsOf(schema, pathDesc, path, `inventory.paths[${i}].`);
      if (first !== undefined) bad.set(i, `${first.field}: ${first.description}`);
    });
    if (bad.size === 0) return paths;
    log.warn(
      { ...bindings(session), dropped: [...bad.values()].slice(0, 10), count: bad.size },
      'inventory paths that break the request rules dropped (docs/api-limits.md)',
    );
    return paths.filter((_, i) => !bad.has(i));
  }

  function handle(
    session: AgentSession,
    request: ConnectRequest,
    identity: PeerIdentity | undefined,
  ): void {
    session.touch();
    const message = request.message;
    switch (message?.$case) {
      case 'inventory': {
        // The certificate's allow-list bounds what the agent may report, so nothing can be routed elsewhere.
        const { allowed, denied } = authorizeInventory(
          identity,
          wellFormed(session, message.value.paths),
        );
        if (denied.length > 0) {
          log.warn(
            { ...bindings(session), denied: denied.map((p) => p.path), allow: identity?.allow },
            'inventory paths outside the certificate allow-list dropped',
          );
        }
        const kept = screen(session, allowed);
        registry.setInventory(session, kept);
        log.info(
          {
            ...bindings(session),
            paths: kept.length,
            luIds: [...new Set(kept.map((p) => p.luId))],
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

  /** Checks the Hello against the caller's certificate, opens the session and queues the Welcome. */
  function open(
    hello: Hello,
    peerHeaders: PeerHeaderSource,
    peer: string,
    link: AgentLinkKind,
  ): { session: AgentSession; identity: PeerIdentity | undefined } {
    if (deps.router.draining) {
      throw unavailable(
        ErrorReason.SERVER_DRAINING,
        'server is draining: reconnect to another instance',
      );
    }
    if (hello.agentId === '') throw invalidArgument('hello.agent_id', 'required');
    if (deps.schema !== undefined && helloDesc !== undefined)
      checkRequest(deps.schema, helloDesc, hello, 'hello.');
    const identity = authorizeAgentHello(peerHeaders, hello, {
      requireCertificate: deps.requireAgentCertificate ?? registry.requireAgentCertificate,
      isRevoked: (certificate) => registry.isCertificateRevoked(certificate),
    });
    const session = registry.open(hello, link, identity?.certificate);
    log.info(
      {
        ...bindings(session),
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

  /**
   * One agent's Connect stream on grpc-js's own call object: Hello first (else INVALID_ARGUMENT), Welcome back,
   * then every message from the agent is handled as it arrives (inventory, results, heartbeats) while a writer
   * sends the session's outbox (commands, cancels, reconnect). Any end of the stream ends the session: its
   * in-flight commands become OUTCOME_UNKNOWN. What it keeps per connected agent is this object, the session and
   * grpc-js's call: no Node stream, AbortController, metadata copies or generator chain per agent.
   */
  function serve(call: ServerInterceptingCallInterface): FullServerListener {
    const startedMs = performance.now();
    let metadata: GrpcMetadata | undefined;
    let session: AgentSession | undefined;
    let identity: PeerIdentity | undefined;
    let over = false;
    // Messages handed to grpc-js and not yet written to the HTTP/2 stream; the writer pauses at HIGH_WATER.
    let unwritten = 0;
    let resumeWriter: (() => void) | undefined;
    const wakeWriter = () => {
      const resume = resumeWriter;
      resumeWriter = undefined;
      resume?.();
    };
    const written = () => {
      unwritten -= 1;
      if (unwritten < HIGH_WATER) wakeWriter();
    };
    let helloTimer: NodeJS.Timeout | undefined = setTimeout(() => {
      helloTimer = undefined;
      if (session === undefined)
        fail(
          new ServerError(
            Status.DEADLINE_EXCEEDED,
            `no Hello within ${helloTimeoutMs} ms of opening the stream`,
          ),
        );
    }, helloTimeoutMs);
    helloTimer.unref();
    const stopHelloTimer = () => {
      clearTimeout(helloTimer);
      helloTimer = undefined;
    };

    function end(status: CallStatus, code: string): void {
      if (over) return;
      over = true;
      stopHelloTimer();
      call.sendStatus(status);
      deps.observe?.(CONNECT_PATH, code, (performance.now() - startedMs) / 1000);
    }

    function fail(e: unknown): void {
      if (over) return; // already ended (a cancel woke the writer): nothing to answer or log
      const failure = describeFailure(e, log, CONNECT_PATH, performance.now() - startedMs);
      const trailer = new GrpcMetadata();
      if (failure.statusDetails !== undefined)
        trailer.set(STATUS_DETAILS_TRAILER, Buffer.from(failure.statusDetails));
      const { error } = failure;
      end(
        error instanceof ServerError
          ? { code: error.code, details: error.details, metadata: trailer }
          : { code: Status.CANCELLED, details: 'cancelled' },
        failure.code,
      );
    }

    async function write(open: AgentSession): Promise<void> {
      // Commands queued together go as one CommandBatch to agents that accept it.
      const batches = open.hello.acceptsCommandBatches;
      open.outbox.onClose = wakeWriter;
      try {
        for (;;) {
          const message = await nextMessage(open.outbox, batches);
          if (message === undefined || over) break;
          unwritten += 1;
          call.sendMessage(message, written);
          if (unwritten >= HIGH_WATER) {
            await new Promise<void>((r) => (resumeWriter = r));
            // Woken by the session's end while the agent still reads nothing (dropped for silence, replaced):
            // what is queued stays unsent (its commands are already UNKNOWN) and the call ends now.
            if (open.outbox.isClosed && unwritten >= HIGH_WATER) {
              if (open.outbox.closeReason !== undefined) throw open.outbox.closeReason as Error; // close() is given errors
              break;
            }
          }
        }
        end({ code: Status.OK, details: 'OK' }, 'OK');
      } catch (e) {
        fail(e);
      } finally {
        const inFlight = open.inFlight;
        registry.close(open, 'agent stream ended');
        log.info({ ...bindings(open), inFlight }, 'agent disconnected');
      }
    }

    return {
      onReceiveMetadata(received: GrpcMetadata) {
        if (deps.router.draining) {
          fail(
            unavailable(
              ErrorReason.SERVER_DRAINING,
              'server is draining: reconnect to another instance',
            ),
          );
          return;
        }
        metadata = received;
        call.startRead();
      },
      onReceiveMessage(request: ConnectRequest) {
        if (over) return;
        if (session !== undefined) {
          try {
            handle(session, request, identity);
          } catch (e) {
            // A bug, not the agent's fault: end this stream (in-flight commands UNKNOWN), keep the server up.
            registry.close(
              session,
              `agent stream failed: ${e instanceof Error ? e.message : String(e)}`,
            );
            fail(e);
            return;
          }
        } else {
          try {
            if (request.message?.$case !== 'hello')
              throw invalidArgument('message', 'the first message of a session must be hello');
            ({ session, identity } = open(
              request.message.value,
              { metadata: firstValues(metadata ?? new GrpcMetadata()) },
              call.getPeer(),
              'stream',
            ));
            metadata = undefined;
            stopHelloTimer();
          } catch (e) {
            fail(e);
            return;
          }
          void write(session);
        }
        call.startRead();
      },
      onReceiveHalfClose() {
        if (session === undefined)
          fail(invalidArgument('message', 'the first message of a session must be hello'));
        else registry.close(session, 'agent closed its stream');
      },
      onCancel() {
        if (!over)
          deps.observe?.(CONNECT_PATH, 'CANCELLED', (performance.now() - startedMs) / 1000);
        over = true;
        stopHelloTimer();
        if (session !== undefined) registry.close(session, 'agent stream cancelled');
        wakeWriter();
      },
    };
  }

  return {
    sessions: { open, handle },
    interceptor: (method, call) =>
      method.path === CONNECT_PATH
        ? new ServerInterceptingCall(call, { start: (next) => next(serve(call)) })
        : // Other methods pass untouched: grpc-js composes interceptors through ServerInterceptingCallInterface.
          (call as ServerInterceptingCall),
    implementation: {
      async *connect() {
        throw new ServerError(
          Status.INTERNAL,
          'AgentService.Connect is answered by createAgentService().interceptor, which this server lacks',
        );
      },
    },
  };
}

// C0 and C1 controls and DEL, as the edge refuses them.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * The path with control characters in its INQUIRY text (vendor, product, revision, serial: what a device says
 * about itself, decoded as latin1) shown as '.', as a key layout shows unprintable bytes: an odd device stays
 * listed; only what is still wrong after that (lengths, ids) drops the path.
 */
function withPrintableInquiry(path: Path): Path {
  const fields = ['vendor', 'product', 'revision', 'serial'] as const;
  if (!fields.some((f) => path[f].search(CONTROL) >= 0)) return path;
  const cleaned = { ...path };
  for (const f of fields) cleaned[f] = path[f].replace(CONTROL, '.');
  return cleaned;
}

/** A grpc-js Metadata read the way nice-grpc's CallContext.metadata is: the first value of a key. */
function firstValues(metadata: GrpcMetadata): { get(key: string): unknown } {
  return { get: (key: string) => metadata.get(key)[0] };
}
