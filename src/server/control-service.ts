import type { Logger } from 'pino';
import { ServerError, Status, type CallContext } from 'nice-grpc-common';
import { isAbortError } from 'abort-controller-x';
import type {
  CommandSessionRequest,
  CommandSessionResponse,
  ControlServiceImplementation,
  SessionError,
} from '../gen/prfleet/v1/control.js';
import { Agent, LogicalUnit } from '../gen/prfleet/v1/control.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import {
  invalidArgument,
  notFound,
  shownInput,
  summarizeRpcError,
  unavailable,
  ErrorReason,
} from '../common/errors.js';
import { compare, type AgentRegistry } from './agents/index.js';
import { peerCertificateOf } from './auth/mtls.js';
import {
  authorizeOptionsOf,
  authorizeSessionCommand,
  principalOf as authPrincipalOf,
} from './auth/middleware.js';
import { AsyncQueue } from '../common/async-queue.js';
import { Semaphore } from '../common/semaphore.js';
import type { CommandExecutor } from './command-executor.js';
import { requestDeadline } from './deadline.js';
import { systemClock, type Clock } from '../common/clock.js';
import { agentToProto, listLogicalUnits, pathsByLu, toLogicalUnit } from './devices.js';
import { createHistoryHandlers, defaultPrincipalOf, type PrincipalOf } from './history.js';
import type { TokenStore } from './auth/tokens.js';
import { createTokenAdmin } from './token-admin.js';
import { createFairShare, fairSharePrincipalOf, type FairShare } from './fair-share.js';
import { commandSpecs, type CommandSpec } from './requests.js';
import { checkRequest, type EdgeSchema } from './edge.js';
import type { PRoutHistory } from './store/index.js';
import type { CommandRouter } from './router.js';
import { DEFAULT_PAGE_BYTES, pageOf, type PageRules } from './pages.js';

/** ListAgents and ListDevices: items per page when page_size is 0, and the largest page_size. */
export const DEFAULT_LIST_PAGE_SIZE = 1000;
export const MAX_LIST_PAGE_SIZE = 10_000;

/** Dependencies of {@link createControlService}. */
export interface ControlServiceDeps {
  /** Agents and inventories. */
  readonly registry: AgentRegistry;
  /** Router (for the draining flag). */
  readonly router: CommandRouter;
  /** Runs commands. */
  readonly executor: CommandExecutor;
  /** This instance's id (Agent.server_instance). */
  readonly instanceId: string;
  /** Commands in flight per CommandSession before it stops reading more. */
  readonly sessionConcurrency: number;
  /** Open CommandSessions, so drain can end them. */
  readonly sessions: Set<CommandSessionHandle>;
  /** Logger. */
  readonly log: Logger;
  /** The request descriptors, for the edge checks of each CommandSession command. */
  readonly schema: EdgeSchema;
  /** The PROUT history behind ListHistory/VerifyHistory; undefined → FAILED_PRECONDITION {HISTORY_DISABLED}. */
  readonly history?: PRoutHistory | undefined;
  /** Who the caller is, for the history. @default the auth principal's name, else 'anonymous' */
  readonly principalOf?: PrincipalOf | undefined;
  /** The client tokens CreateToken/ListTokens/RevokeToken manage; undefined → FAILED_PRECONDITION. */
  readonly tokens?: TokenStore | undefined;
  /** Sessions and commands in flight per principal. @default unlimited */
  readonly fairShare?: FairShare | undefined;
  /** Byte budget of one listing page (ListAgents, ListDevices, ListHistory). @default DEFAULT_PAGE_BYTES */
  readonly pageBytes?: number | undefined;
  /** Runs each command's deadline timer. @default systemClock */
  readonly clock?: Clock | undefined;
}

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

/** The ControlService implementation: inventory queries and PRIN/PROUT through the executor. */
export function createControlService(deps: ControlServiceDeps): ControlServiceImplementation {
  const { registry, executor } = deps;
  const principalOf = deps.principalOf ?? defaultPrincipalOf;
  const pageBytes = deps.pageBytes ?? DEFAULT_PAGE_BYTES;
  const historyHandlers = createHistoryHandlers(
    deps.history,
    deps.log,
    {
      agent: (id) => registry.get(id) !== undefined,
      lu: (id) => pathsByLu(registry).has(id),
    },
    pageBytes,
  );
  const agentPages: PageRules<Agent> = {
    defaultSize: DEFAULT_LIST_PAGE_SIZE,
    maxSize: MAX_LIST_PAGE_SIZE,
    budgetBytes: pageBytes,
    keyOf: (a) => a.agentId,
    sizeOf: (a) => Agent.encode(a).finish().length,
  };
  const devicePages: PageRules<LogicalUnit> = {
    defaultSize: DEFAULT_LIST_PAGE_SIZE,
    maxSize: MAX_LIST_PAGE_SIZE,
    budgetBytes: pageBytes,
    // The listing's order (loader, then LU id) as one string: NUL sorts before every character of an id.
    keyOf: (u) => `${u.loaderId}\u0000${u.luId}`,
    sizeOf: (u) => LogicalUnit.encode(u).finish().length,
  };
  const tokenAdmin = createTokenAdmin({ tokens: deps.tokens, principalOf, log: deps.log });
  const sessionRequest =
    deps.schema.message('prfleet.v1.CommandSessionRequest') ??
    ((): never => {
      throw new Error('descriptor set lacks CommandSessionRequest');
    })();
  const fairShare = deps.fairShare ?? createFairShare({ maxSessions: 0, maxCommands: 0 });

  async function run(spec: CommandSpec, ctx: CallContext): Promise<{ result: CommandResult }> {
    const release = fairShare.startCommand(fairSharePrincipalOf(ctx));
    try {
      return await runCounted(spec, ctx);
    } finally {
      release();
    }
  }

  async function runCounted(
    spec: CommandSpec,
    ctx: CallContext,
  ): Promise<{ result: CommandResult }> {
    const scoped = requestDeadline(ctx, deps.clock ?? systemClock);
    try {
      const result = await executor.execute(spec, {
        signal: scoped.signal,
        actor: principalOf(ctx),
        ...(scoped.deadline === undefined ? {} : { deadlineMs: scoped.deadline }),
      });
      return { result };
    } catch (e) {
      // Our own deadline timer fired before grpc-js noticed: report it as such, not as a cancel.
      if (
        scoped.signal.aborted &&
        !ctx.signal.aborted &&
        scoped.signal.reason instanceof ServerError
      ) {
        throw scoped.signal.reason;
      }
      throw e;
    } finally {
      scoped.dispose();
    }
  }

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

  /** One CommandSession: commands run concurrently (at most sessionConcurrency), replies in completion order. */
  async function* sessionReplies(
    requests: AsyncIterable<CommandSessionRequest>,
    ctx: CallContext,
  ): AsyncGenerator<CommandSessionResponse> {
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
    const answer = sessionAnswerer(ctx);

    const reader = (async () => {
      for await (const request of requests) {
        if (finishing) break;
        const refusal = refuseRequestId(request.requestId, inFlightIds);
        if (refusal !== undefined) {
          replies.push(refusal);
          continue;
        }
        await slots.acquire();
        inFlightIds.add(request.requestId);
        void answer(request).then((reply) => {
          if (reply !== undefined) replies.push(reply);
          inFlightIds.delete(request.requestId);
          slots.release();
          maybeEnd();
        });
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
    }
  }

  /**
   * Runs one session command to its reply (a result, or the error a unary call would have thrown); undefined
   * when the caller has gone. Never rejects.
   */
  function sessionAnswerer(
    ctx: CallContext,
  ): (request: CommandSessionRequest) => Promise<CommandSessionResponse | undefined> {
    // The certificate the session was opened with, checked again per command against the revocation list.
    const certificate = peerCertificateOf(ctx);
    return async (request) => {
      try {
        // The edge rules (lengths, control characters, …), answered in-band like every other refusal.
        checkRequest(deps.schema, sessionRequest, request);
        if (certificate !== undefined && registry.isCertificateRevoked(certificate)) {
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
        // The token middleware admitted the session; each command needs its own role (a viewer's session
        // must not carry a PREEMPT), with the same reason rules as the unary RPC.
        const principal = authPrincipalOf(ctx);
        if (principal !== undefined && request.command !== undefined) {
          await authorizeSessionCommand(principal, request.command, authorizeOptionsOf(ctx));
        }
        const { result } = await run(specOf(request), ctx);
        // A literal: fromPartial would deep-copy the (complete) result once more per command.
        return { requestId: request.requestId, reply: { $case: 'result', value: result } };
      } catch (e) {
        if (isAbortError(e) && ctx.signal.aborted) return undefined; // the caller is gone
        const summary = summarizeRpcError(e);
        if (summary === undefined) {
          deps.log.error(
            { err: e, requestId: request.requestId },
            'command session: unexpected error',
          );
        }
        return sessionError(request.requestId, {
          code: summary?.code ?? Status.INTERNAL,
          message: summary?.message ?? 'internal error',
          field: summary?.field ?? '',
          reason: summary?.reason ?? '',
        });
      }
    };
  }

  return {
    async listAgents(request) {
      const records = registry
        .list()
        .filter((a) => request.site === '' || a.hello.site === request.site)
        .sort((a, b) => compare(a.hello.agentId, b.hello.agentId));
      // Converted lazily: only the page's records become messages.
      const { page, nextPageToken } = pageOf(records, request, {
        ...agentPages,
        keyOf: (r) => r.hello.agentId,
        sizeOf: (r) => agentPages.sizeOf(agentToProto(r, deps.instanceId)),
      });
      return { agents: page.map((r) => agentToProto(r, deps.instanceId)), nextPageToken };
    },
    async listDevices(request) {
      const { page, nextPageToken } = pageOf(
        listLogicalUnits(registry, request),
        request,
        devicePages,
      );
      return { logicalUnits: page, nextPageToken };
    },
    async getDevice(request) {
      if (request.luId === '') throw invalidArgument('lu_id', 'required');
      const paths = pathsByLu(registry).get(request.luId);
      if (paths === undefined)
        throw notFound(
          'logical unit',
          request.luId,
          `no agent reports logical unit ${shownInput(request.luId)}`,
        );
      return { logicalUnit: toLogicalUnit(request.luId, paths) };
    },
    readKeys: (request, ctx) => run(commandSpecs.readKeys(request), ctx),
    readReservation: (request, ctx) => run(commandSpecs.readReservation(request), ctx),
    reportCapabilities: (request, ctx) => run(commandSpecs.reportCapabilities(request), ctx),
    readFullStatus: (request, ctx) => run(commandSpecs.readFullStatus(request), ctx),
    register: (request, ctx) => run(commandSpecs.register(request), ctx),
    reserve: (request, ctx) => run(commandSpecs.reserve(request), ctx),
    release: (request, ctx) => run(commandSpecs.release(request), ctx),
    clear: (request, ctx) => run(commandSpecs.clear(request), ctx),
    preempt: (request, ctx) => run(commandSpecs.preempt(request), ctx),
    registerAndMove: (request, ctx) => run(commandSpecs.registerAndMove(request), ctx),
    listHistory: (request) => historyHandlers.listHistory(request),
    verifyHistory: () => historyHandlers.verifyHistory(),
    createToken: (request, ctx) => tokenAdmin.createToken(request, ctx),
    listTokens: (_request, ctx) => tokenAdmin.listTokens(ctx),
    revokeToken: (request, ctx) => tokenAdmin.revokeToken(request, ctx),

    async *commandSession(requests, ctx) {
      // Refused before anything is read: the RPC ends RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA}.
      const releaseSession = fairShare.openSession(fairSharePrincipalOf(ctx));
      try {
        yield* sessionReplies(requests, ctx);
      } finally {
        releaseSession();
      }
    },
  };
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
