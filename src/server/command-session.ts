/**
 * ControlService.CommandSession: many commands on one open stream, each run like its unary RPC and answered
 * in-band (a result, or the error the unary call would have thrown) under the client's request id.
 */
import type { Logger } from 'pino';
import { ServerError, Status, type CallContext } from 'nice-grpc-common';
import { isAbortError } from 'abort-controller-x';
import type {
  CommandSessionRequest,
  CommandSessionResponse,
  SessionError,
} from '../gen/prfleet/v1/control.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import { invalidArgument, summarizeRpcError, unavailable, ErrorReason } from '../common/errors.js';
import { AsyncQueue } from '../common/async-queue.js';
import { Semaphore } from '../common/semaphore.js';
import type { AgentRegistry } from './agents/index.js';
import { peerCertificateOf } from './auth/mtls.js';
import {
  authorizeOptionsOf,
  authorizeSessionCommand,
  principalOf as authPrincipalOf,
} from './auth/middleware.js';
import { checkRequest, type EdgeSchema } from './edge.js';
import type { Release } from './fair-share.js';
import { commandSpecs, type CommandSpec } from './requests.js';
import type { CommandRouter } from './router.js';

/**
 * Longest CommandSessionRequest.request_id accepted (the server keeps every id in flight and echoes it in the
 * reply).
 */
export const MAX_REQUEST_ID_LENGTH = 128;

/** How much of a refused request id an error message quotes. */
const QUOTED_ID_LENGTH = 32;

/** An open CommandSession, as drain sees it. */
export interface CommandSessionHandle {
  /** Stop reading new commands; end the stream once in-flight replies are sent. */
  finish(): void;
}

/** Who a call's commands run for: worked out once per call (a session's commands share it). */
export interface Caller {
  /** The principal the history and journal name. */
  readonly actor: string;
  /** The fair-share principal whose quota each command takes. */
  readonly share: string;
  /** A CommandSession's (its commands share the call's signal), not a unary RPC's (its one command has it). */
  readonly session: boolean;
}

/** Runs one command for `caller` to its result (see ControlService's unary RPCs). */
export type RunCommand = (
  spec: CommandSpec,
  ctx: CallContext,
  caller: Caller,
) => Promise<CommandResult>;

/** Dependencies of {@link createCommandSession}. */
export interface CommandSessionDeps {
  /** Certificate revocation (checked per command). */
  readonly registry: AgentRegistry;
  /** For the draining flag. */
  readonly router: CommandRouter;
  /** Commands in flight per session before it stops reading more. */
  readonly sessionConcurrency: number;
  /** Open sessions, so drain can end them. */
  readonly sessions: Set<CommandSessionHandle>;
  /** The request descriptors, for the edge checks of each command. */
  readonly schema: EdgeSchema;
  readonly log: Logger;
}

/**
 * The replies of one CommandSession: commands run concurrently (at most sessionConcurrency), replies in
 * completion order.
 */
export function createCommandSession(
  deps: CommandSessionDeps,
  run: RunCommand,
): (
  requests: AsyncIterable<CommandSessionRequest>,
  ctx: CallContext,
  caller: Caller,
  openSession: () => Release,
) => AsyncGenerator<CommandSessionResponse> {
  const sessionRequest =
    deps.schema.message('prfleet.v1.CommandSessionRequest') ??
    ((): never => {
      throw new Error('descriptor set lacks CommandSessionRequest');
    })();
  const answerer = (ctx: CallContext, caller: Caller) =>
    sessionAnswerer(deps, sessionRequest, run, ctx, caller);
  return (requests, ctx, caller, openSession) =>
    sessionReplies(deps, requests, answerer(ctx, caller), openSession);
}

type Answer = (request: CommandSessionRequest) => Promise<CommandSessionResponse | undefined>;

/**
 * The session's replies, its fair-share session slot (`openSession`) held from its start to its end: refused
 * before anything is read, the RPC ends RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA}.
 */
async function* sessionReplies(
  deps: CommandSessionDeps,
  requests: AsyncIterable<CommandSessionRequest>,
  answer: Answer,
  openSession: () => Release,
): AsyncGenerator<CommandSessionResponse> {
  const releaseSession = openSession();
  // Replies wait here; the reader stops pulling requests while sessionConcurrency commands are in flight,
  // so a client that does not read replies is slowed by HTTP/2 flow control instead of growing memory.
  const replies = new AsyncQueue<CommandSessionResponse>(Number.MAX_SAFE_INTEGER);
  // Request ids of the commands in flight: a reply must name exactly one of them.
  const inFlightIds = new Set<string>();
  let readerDone = false;
  let finishing = false;
  const slots = new Semaphore(deps.sessionConcurrency);
  const maybeEnd = () => {
    if ((readerDone || finishing) && inFlightIds.size === 0) replies.close();
  };
  const handle: CommandSessionHandle = {
    finish: () => {
      finishing = true;
      maybeEnd();
    },
  };
  deps.sessions.add(handle);
  const settled = (requestId: string, reply: CommandSessionResponse | undefined) => {
    if (reply !== undefined) replies.push(reply);
    inFlightIds.delete(requestId);
    slots.release();
    maybeEnd();
  };

  const reader = (async () => {
    for await (const request of requests) {
      if (finishing) break;
      const refusal = refuseRequestId(request.requestId, inFlightIds);
      if (refusal !== undefined) {
        replies.push(refusal);
        continue;
      }
      // A free slot is taken at once: an await per command only when the session is at its concurrency.
      if (!slots.tryAcquire()) await slots.acquire();
      inFlightIds.add(request.requestId);
      void answer(request).then((reply) => settled(request.requestId, reply));
    }
  })();
  reader.then(
    () => {
      readerDone = true;
      maybeEnd();
    },
    (e: unknown) => {
      readerDone = true;
      // An abort, or the edge refusing an undecodable message (INVALID_ARGUMENT), ends the call as it is.
      replies.close(
        isAbortError(e) || e instanceof ServerError
          ? e
          : new ServerError(Status.CANCELLED, 'command session request stream failed'),
      );
    },
  );
  try {
    yield* replies;
  } finally {
    deps.sessions.delete(handle);
    releaseSession();
  }
}

/**
 * Runs one session command to its reply (a result, or the error a unary call would have thrown); undefined
 * when the caller has gone. Never rejects.
 */
function sessionAnswerer(
  deps: CommandSessionDeps,
  sessionRequest: NonNullable<ReturnType<EdgeSchema['message']>>,
  run: RunCommand,
  ctx: CallContext,
  caller: Caller,
): Answer {
  // The certificate the session was opened with, checked again per command against the revocation list.
  const certificate = peerCertificateOf(ctx);
  // The token middleware admitted the session; each command needs its own role (a viewer's session must not
  // carry a PREEMPT), with the same reason rules as the unary RPC.
  const principal = authPrincipalOf(ctx);
  /** Throws a refusal; a promise only when a token's role must be checked (the rest is synchronous). */
  const admit = (request: CommandSessionRequest): Promise<void> | undefined => {
    // The edge rules (lengths, control characters, …), answered in-band like every other refusal.
    checkRequest(sessionRequest, request);
    if (certificate !== undefined && deps.registry.isCertificateRevoked(certificate)) {
      throw new ServerError(
        Status.UNAUTHENTICATED,
        `the client certificate of this session (SHA-256 ${certificate.fingerprint256}) was revoked: nothing sent`,
      );
    }
    if (deps.router.draining) {
      throw unavailable(
        ErrorReason.SERVER_DRAINING,
        'server is draining: retry on another instance',
      );
    }
    return principal === undefined || request.command === undefined
      ? undefined
      : authorizeSessionCommand(principal, request.command, authorizeOptionsOf(ctx));
  };
  return async (request) => {
    try {
      const authorized = admit(request);
      if (authorized !== undefined) await authorized;
      const result = await run(specOf(request), ctx, caller);
      // A literal: fromPartial would deep-copy the (complete) result once more per command.
      return { requestId: request.requestId, reply: { $case: 'result', value: result } };
    } catch (e) {
      if (isAbortError(e) && ctx.signal.aborted) return undefined; // the caller is gone
      return errorReply(deps.log, request.requestId, e);
    }
  };
}

/** The in-band answer of a command that failed: the status the unary RPC would have ended with. */
function errorReply(log: Logger, requestId: string, e: unknown): CommandSessionResponse {
  const summary = summarizeRpcError(e);
  if (summary === undefined) {
    log.error({ err: e, requestId }, 'command session: unexpected error');
  }
  return sessionError(requestId, {
    code: summary?.code ?? Status.INTERNAL,
    message: summary?.message ?? 'internal error',
    field: summary?.field ?? '',
    reason: summary?.reason ?? '',
  });
}

/** The CommandSpec of a session command, as its unary RPC builds it. */
function specOf(request: CommandSessionRequest): CommandSpec {
  const command = request.command;
  switch (command?.$case) {
    case 'readKeys':
      return commandSpecs.readKeys(command.value);
    case 'readReservation':
      return commandSpecs.readReservation(command.value);
    case 'reportCapabilities':
      return commandSpecs.reportCapabilities(command.value);
    case 'readFullStatus':
      return commandSpecs.readFullStatus(command.value);
    case 'register':
      return commandSpecs.register(command.value);
    case 'reserve':
      return commandSpecs.reserve(command.value);
    case 'release':
      return commandSpecs.release(command.value);
    case 'clear':
      return commandSpecs.clear(command.value);
    case 'preempt':
      return commandSpecs.preempt(command.value);
    case 'registerAndMove':
      return commandSpecs.registerAndMove(command.value);
    case undefined:
      throw invalidArgument('command', 'empty: set one of read_keys, reserve, …');
  }
}

/** An error reply of a CommandSession. */
function sessionError(requestId: string, error: SessionError): CommandSessionResponse {
  return { requestId, reply: { $case: 'error', value: error } };
}

/**
 * The in-band refusal of a request id the session cannot use, or undefined when it is fine: empty or longer
 * than MAX_REQUEST_ID_LENGTH (answered with an empty request_id: the server keeps no such id), or the id of a
 * command still in flight (answered under that id; the command in flight still gets its own reply).
 */
function refuseRequestId(
  requestId: string,
  inFlight: ReadonlySet<string>,
): CommandSessionResponse | undefined {
  const invalid = (message: string) =>
    sessionError('', { code: Status.INVALID_ARGUMENT, message, field: 'request_id', reason: '' });
  if (requestId === '') return invalid('request_id: required to match the reply');
  if (requestId.length > MAX_REQUEST_ID_LENGTH) {
    return invalid(
      `request_id: ${requestId.length} characters, at most ${MAX_REQUEST_ID_LENGTH} (starts ${JSON.stringify(requestId.slice(0, QUOTED_ID_LENGTH))})`,
    );
  }
  if (inFlight.has(requestId)) {
    return sessionError(requestId, {
      code: Status.ALREADY_EXISTS,
      message: `request_id ${JSON.stringify(requestId.slice(0, QUOTED_ID_LENGTH))}: a command with this id is still in flight on this session; nothing sent (use an id per command in flight)`,
      field: 'request_id',
      reason: ErrorReason.DUPLICATE_REQUEST_ID,
    });
  }
  return undefined;
}
