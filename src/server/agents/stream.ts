import {
  Metadata as GrpcMetadata,
  type FullServerListener,
  type ServerInterceptingCallInterface,
} from '@grpc/grpc-js';
import { ServerError, Status } from 'nice-grpc-common';
import type { Logger } from 'pino';
import {
  AgentServiceDefinition,
  type Command,
  type ConnectRequest,
  type ConnectResponse,
} from '../../gen/prfleet/v1/agent.js';
import { invalidArgument } from '../../common/errors.js';
import type { PeerIdentity } from '../auth/mtls.js';
import { describeFailure, STATUS_DETAILS_TRAILER, type RpcObserver } from '../middleware.js';
import type { AgentSession, Outbox } from './link.js';
import type { AgentRegistry } from './registry.js';
import { sessionFields } from './results.js';
import { drainingError, type AgentSessionHandler } from './session-handler.js';

/** Most commands coalesced into one CommandBatch (the outbox holds at most its capacity anyway). */
const MAX_COMMAND_BATCH = 256;

/** Messages handed to grpc-js but not yet written before the writer waits (a Node stream's object-mode default). */
const HIGH_WATER = 16;

/** What a Connect stream ends with (grpc-js does not export the type by name). */
type CallStatus = Parameters<ServerInterceptingCallInterface['sendStatus']>[0];

/** The gRPC path of AgentService.Connect. */
export const CONNECT_PATH = `/${AgentServiceDefinition.fullName}/${AgentServiceDefinition.methods.connect.name}`;

/**
 * The next message for the agent, waiting for one; undefined once the outbox is closed and drained (throws the
 * error it was closed with, if any). With `batches` (the agent accepts CommandBatch) a command with more
 * commands queued right behind it goes out together with them as one message (same order; anything else
 * queued keeps its place). A plain loop rather than async generators stacked on the outbox: an idle agent's
 * writer then waits on one promise (the outbox's), not on a chain of suspended generators.
 */
async function nextMessage(outbox: Outbox, batches: boolean): Promise<ConnectResponse | undefined> {
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

/** What one Connect stream needs. */
export interface StreamDeps {
  readonly registry: AgentRegistry;
  readonly sessions: AgentSessionHandler;
  readonly router: { readonly draining: boolean };
  readonly log: Logger;
  readonly observe?: RpcObserver | undefined;
  readonly helloTimeoutMs: number;
}

/**
 * One agent's Connect stream on grpc-js's own call object: Hello first (else INVALID_ARGUMENT), Welcome back,
 * then every message from the agent is handled as it arrives (inventory, results, heartbeats) while a writer
 * sends the session's outbox (commands, cancels, reconnect). Any end of the stream ends the session: its
 * in-flight commands become OUTCOME_UNKNOWN. What it keeps per connected agent is this object, the session and
 * grpc-js's call: no Node stream, AbortController, metadata copies or generator chain per agent.
 */
export class ConnectStream implements FullServerListener {
  private readonly startedMs = performance.now();
  private metadata: GrpcMetadata | undefined;
  private session: AgentSession | undefined;
  private identity: PeerIdentity | undefined;
  private over = false;
  // Messages handed to grpc-js and not yet written to the HTTP/2 stream; the writer pauses at HIGH_WATER.
  private unwritten = 0;
  private resumeWriter: (() => void) | undefined;
  private helloTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly call: ServerInterceptingCallInterface,
    private readonly deps: StreamDeps,
  ) {
    // Before Hello nothing is known of the peer, yet its open stream holds a connection and memory.
    this.helloTimer = setTimeout(() => {
      this.helloTimer = undefined;
      if (this.session === undefined)
        this.fail(
          new ServerError(
            Status.DEADLINE_EXCEEDED,
            `no Hello within ${deps.helloTimeoutMs} ms of opening the stream`,
          ),
        );
    }, deps.helloTimeoutMs);
    this.helloTimer.unref();
  }

  // Arrow properties: grpc-js calls the listener's methods detached, and the writer hands these out as callbacks.
  private readonly wakeWriter = (): void => {
    const resume = this.resumeWriter;
    this.resumeWriter = undefined;
    resume?.();
  };

  private readonly written = (): void => {
    this.unwritten -= 1;
    if (this.unwritten < HIGH_WATER) this.wakeWriter();
  };

  private stopHelloTimer(): void {
    clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
  }

  private elapsedSeconds(): number {
    return (performance.now() - this.startedMs) / 1000;
  }

  private end(status: CallStatus, code: string): void {
    if (this.over) return;
    this.over = true;
    this.stopHelloTimer();
    this.call.sendStatus(status);
    this.deps.observe?.(CONNECT_PATH, code, this.elapsedSeconds());
  }

  private fail(e: unknown): void {
    if (this.over) return; // already ended (a cancel woke the writer): nothing to answer or log
    const failure = describeFailure(
      e,
      this.deps.log,
      CONNECT_PATH,
      performance.now() - this.startedMs,
    );
    const trailer = new GrpcMetadata();
    if (failure.statusDetails !== undefined)
      trailer.set(STATUS_DETAILS_TRAILER, Buffer.from(failure.statusDetails));
    const { error } = failure;
    this.end(
      error instanceof ServerError
        ? { code: error.code, details: error.details, metadata: trailer }
        : { code: Status.CANCELLED, details: 'cancelled' },
      failure.code,
    );
  }

  /** Sends the session's outbox until it closes (or the call ends), then closes the session. */
  private async write(open: AgentSession): Promise<void> {
    open.outbox.onClose = this.wakeWriter;
    try {
      await this.pump(open);
      this.end({ code: Status.OK, details: 'OK' }, 'OK');
    } catch (e) {
      this.fail(e);
    } finally {
      const inFlight = open.inFlight;
      this.deps.registry.close(open, 'agent stream ended');
      this.deps.log.info({ ...sessionFields(open), inFlight }, 'agent disconnected');
    }
  }

  private async pump(open: AgentSession): Promise<void> {
    // Commands queued together go as one CommandBatch to agents that accept it.
    const batches = open.hello.acceptsCommandBatches;
    for (;;) {
      const message = await nextMessage(open.outbox, batches);
      if (message === undefined || this.over) return;
      this.unwritten += 1;
      this.call.sendMessage(message, this.written);
      if (this.unwritten < HIGH_WATER) continue;
      await new Promise<void>((r) => (this.resumeWriter = r));
      // Woken by the session's end while the agent still reads nothing (dropped for silence, replaced):
      // what is queued stays unsent (its commands are already UNKNOWN) and the call ends now.
      if (open.outbox.isClosed && this.unwritten >= HIGH_WATER) {
        if (open.outbox.closeReason !== undefined) throw open.outbox.closeReason as Error; // close() is given errors
        return;
      }
    }
  }

  /** The first message: must be Hello; opens the session and starts the writer. False when the call ended. */
  private hello(request: ConnectRequest): boolean {
    try {
      if (request.message?.$case !== 'hello')
        throw invalidArgument('message', 'the first message of a session must be hello');
      ({ session: this.session, identity: this.identity } = this.deps.sessions.open(
        request.message.value,
        { metadata: firstValues(this.metadata ?? new GrpcMetadata()) },
        this.call.getPeer(),
        'stream',
      ));
      this.metadata = undefined;
      this.stopHelloTimer();
    } catch (e) {
      this.fail(e);
      return false;
    }
    void this.write(this.session);
    return true;
  }

  readonly onReceiveMetadata = (received: GrpcMetadata): void => {
    if (this.deps.router.draining) {
      this.fail(drainingError());
      return;
    }
    this.metadata = received;
    this.call.startRead();
  };

  readonly onReceiveMessage = (request: ConnectRequest): void => {
    if (this.over) return;
    const session = this.session;
    if (session === undefined) {
      if (!this.hello(request)) return;
    } else {
      try {
        this.deps.sessions.handle(session, request, this.identity);
      } catch (e) {
        // A bug, not the agent's fault: end this stream (in-flight commands UNKNOWN), keep the server up.
        this.deps.registry.close(
          session,
          `agent stream failed: ${e instanceof Error ? e.message : String(e)}`,
        );
        this.fail(e);
        return;
      }
    }
    this.call.startRead();
  };

  readonly onReceiveHalfClose = (): void => {
    if (this.session === undefined)
      this.fail(invalidArgument('message', 'the first message of a session must be hello'));
    else this.deps.registry.close(this.session, 'agent closed its stream');
  };

  readonly onCancel = (): void => {
    if (!this.over) this.deps.observe?.(CONNECT_PATH, 'CANCELLED', this.elapsedSeconds());
    this.over = true;
    this.stopHelloTimer();
    if (this.session !== undefined)
      this.deps.registry.close(this.session, 'agent stream cancelled');
    this.wakeWriter();
  };
}

/** A grpc-js Metadata read the way nice-grpc's CallContext.metadata is: the first value of a key. */
function firstValues(metadata: GrpcMetadata): { get(key: string): unknown } {
  return { get: (key: string) => metadata.get(key)[0] };
}
