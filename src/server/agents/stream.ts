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
import { PassThroughServerCall } from '../pass-through-call.js';
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
 * The next message for the agent, if one is queued (undefined otherwise: the caller waits, or ends once the
 * outbox is closed). With `batches` (the agent accepts CommandBatch) a command with more commands queued right
 * behind it goes out together with them as one message (same order; anything else queued keeps its place).
 */
function nextMessage(outbox: Outbox, batches: boolean): ConnectResponse | undefined {
  const item = outbox.take();
  if (item === undefined || !batches || item.message?.$case !== 'command') return item;
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
 * then every message from the agent is handled as it arrives (inventory, results, heartbeats) while the writer
 * sends the session's outbox (commands, cancels, reconnect). Any end of the stream ends the session: its
 * in-flight commands become OUTCOME_UNKNOWN. What it keeps per connected agent is this object, the session and
 * grpc-js's call: no Node stream, AbortController, metadata copies, generator chain or pending promise per agent.
 * grpc-js calls the listener methods on this object (ConnectCall hands it to the call unwrapped).
 */
export class ConnectStream implements FullServerListener {
  private readonly startedMs = performance.now();
  private metadata: GrpcMetadata | undefined;
  private session: AgentSession | undefined;
  private identity: PeerIdentity | undefined;
  private over = false;
  // Messages handed to grpc-js and not yet written to the HTTP/2 stream; the writer pauses at HIGH_WATER.
  private unwritten = 0;
  private paused = false;
  private finished = false;
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

  // Arrow properties: handed out as callbacks (to the outbox, to grpc-js's sendMessage, to queueMicrotask).
  /** Runs the writer soon: after the code that queued a message, so that commands queued together batch. */
  private readonly wake = (): void => queueMicrotask(this.drain);

  private readonly written = (): void => {
    this.unwritten -= 1;
    if (this.paused && this.unwritten < HIGH_WATER) {
      this.paused = false;
      this.wake();
    }
  };

  /**
   * The writer, driven by callbacks rather than an async loop (an idle agent's writer is then no suspended
   * frame, only `wake` registered with its outbox): sends what the outbox holds until HIGH_WATER messages are
   * unwritten (then `written` resumes it), registers for the outbox when it is empty, and ends the call once
   * the outbox is closed and drained (OK, or the error it was closed with) or the call is over.
   */
  private readonly drain = (): void => {
    const open = this.session;
    if (open === undefined || this.finished) return;
    const { outbox } = open;
    try {
      while (!this.over) {
        if (this.unwritten >= HIGH_WATER) {
          // Woken by the session's end while the agent still reads nothing (dropped for silence, replaced):
          // what is queued stays unsent (its commands are already UNKNOWN) and the call ends now.
          if (outbox.isClosed) break;
          this.paused = true;
          return;
        }
        // Commands queued together go as one CommandBatch to agents that accept it.
        const message = nextMessage(outbox, open.hello.acceptsCommandBatches);
        if (message === undefined) {
          if (outbox.isClosed) break;
          if (outbox.callWhenReadable(this.wake)) return;
          continue;
        }
        this.unwritten += 1;
        this.call.sendMessage(message, this.written);
      }
      const reason = outbox.closeReason;
      if (reason !== undefined) throw reason as Error; // close() is given errors (aborts, ServerError)
      this.end({ code: Status.OK, details: 'OK' }, 'OK');
    } catch (e) {
      this.fail(e);
    }
    this.finished = true;
    const inFlight = open.inFlight;
    this.deps.registry.close(open, 'agent stream ended');
    this.deps.log.info({ ...sessionFields(open), inFlight }, 'agent disconnected');
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
    // The outbox's close wakes a writer paused at HIGH_WATER too (it waits on `written`, not on the outbox).
    this.session.outbox.onClose = this.wake;
    this.wake();
    return true;
  }

  onReceiveMetadata(received: GrpcMetadata): void {
    if (this.deps.router.draining) {
      this.fail(drainingError());
      return;
    }
    this.metadata = received;
    this.call.startRead();
  }

  onReceiveMessage(request: ConnectRequest): void {
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
  }

  onReceiveHalfClose(): void {
    if (this.session === undefined)
      this.fail(invalidArgument('message', 'the first message of a session must be hello'));
    else this.deps.registry.close(this.session, 'agent closed its stream');
  }

  onCancel(): void {
    if (!this.over) this.deps.observe?.(CONNECT_PATH, 'CANCELLED', this.elapsedSeconds());
    this.over = true;
    this.stopHelloTimer();
    if (this.session !== undefined)
      this.deps.registry.close(this.session, 'agent stream cancelled');
    this.wake();
  }
}

/**
 * What the agent interceptor returns for a Connect call: it starts the call below it with the ConnectStream as
 * the listener itself (grpc-js's ServerInterceptingCall would wrap it in two more listener objects and copy its
 * methods), and passes everything else through. The listener grpc-js's own handler gives `start` is not used:
 * the stream answers the call, the registered handler is never reached.
 */
export class ConnectCall extends PassThroughServerCall {
  constructor(
    next: ServerInterceptingCallInterface,
    private readonly stream: ConnectStream,
  ) {
    super(next);
  }

  start(): void {
    this.next.start(this.stream);
  }
}

/** A grpc-js Metadata read the way nice-grpc's CallContext.metadata is: the first value of a key. */
function firstValues(metadata: GrpcMetadata): { get(key: string): unknown } {
  return { get: (key: string) => metadata.get(key)[0] };
}
