import type { Logger } from 'pino';
import { ServerError, type CallContext } from 'nice-grpc-common';
import type { ControlServiceImplementation } from '../gen/prfleet/v1/control.js';
import { Agent, LogicalUnit } from '../gen/prfleet/v1/control.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import { invalidArgument, notFound, shownInput } from '../common/errors.js';
import { compare, type AgentRegistry } from './agents/index.js';
import type { CommandExecutor } from './command-executor.js';
import {
  createCommandSession,
  type Caller,
  type CommandSessionHandle,
  type RunCommand,
} from './command-session.js';
import { requestDeadline } from './deadline.js';
import { systemClock, type Clock } from '../common/clock.js';
import { agentToProto, listLogicalUnits, pathsByLu, toLogicalUnit } from './devices.js';
import { createHistoryHandlers, defaultPrincipalOf, type PrincipalOf } from './history.js';
import type { TokenStore } from './auth/tokens.js';
import { createTokenAdmin } from './token-admin.js';
import { createFairShare, fairSharePrincipalOf, type FairShare } from './fair-share.js';
import { commandSpecs, type CommandSpec } from './requests.js';
import type { EdgeSchema } from './edge.js';
import type { PRoutHistory } from './store/index.js';
import type { CommandRouter } from './router.js';
import { DEFAULT_PAGE_BYTES, LIST_PAGE_SIZE, pageOf, type PageRules } from './pages.js';

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

/** The ControlService implementation: inventory queries and PRIN/PROUT through the executor. */
export function createControlService(deps: ControlServiceDeps): ControlServiceImplementation {
  const principalOf = deps.principalOf ?? defaultPrincipalOf;
  const pageBytes = deps.pageBytes ?? DEFAULT_PAGE_BYTES;
  const fairShare = deps.fairShare ?? createFairShare({ maxSessions: 0, maxCommands: 0 });
  const historyHandlers = createHistoryHandlers(
    deps.history,
    deps.log,
    {
      agent: (id) => deps.registry.get(id) !== undefined,
      lu: (id) => pathsByLu(deps.registry).has(id),
    },
    pageBytes,
  );
  const tokenAdmin = createTokenAdmin({ tokens: deps.tokens, principalOf, log: deps.log });
  const run = commandRunner(deps.executor, fairShare, deps.clock ?? systemClock);
  const callerOf = (ctx: CallContext, session: boolean): Caller => ({
    actor: principalOf(ctx),
    share: fairSharePrincipalOf(ctx),
    session,
  });
  /** A unary command RPC: the request's CommandSpec run for its caller. */
  const unary =
    <R>(specOf: (request: R) => CommandSpec) =>
    async (request: R, ctx: CallContext): Promise<{ result: CommandResult }> => ({
      result: await run(specOf(request), ctx, callerOf(ctx, false)),
    });
  const session = createCommandSession(deps, run);

  return {
    ...listingHandlers(deps, pageBytes),
    readKeys: unary(commandSpecs.readKeys),
    readReservation: unary(commandSpecs.readReservation),
    reportCapabilities: unary(commandSpecs.reportCapabilities),
    readFullStatus: unary(commandSpecs.readFullStatus),
    register: unary(commandSpecs.register),
    reserve: unary(commandSpecs.reserve),
    release: unary(commandSpecs.release),
    clear: unary(commandSpecs.clear),
    preempt: unary(commandSpecs.preempt),
    registerAndMove: unary(commandSpecs.registerAndMove),
    listHistory: (request) => historyHandlers.listHistory(request),
    verifyHistory: () => historyHandlers.verifyHistory(),
    createToken: (request, ctx) => tokenAdmin.createToken(request, ctx),
    listTokens: (_request, ctx) => tokenAdmin.listTokens(ctx),
    revokeToken: (request, ctx) => tokenAdmin.revokeToken(request, ctx),

    // The session's own generator, not one more around it: every reply would pass through each layer's promises.
    commandSession: (requests, ctx) => {
      const caller = callerOf(ctx, true);
      return session(requests, ctx, caller, () => fairShare.openSession(caller.share));
    },
  };
}

/**
 * Runs one command for its caller: a fair-share slot, the call's deadline as a signal, the executor. A deadline
 * timer of our own that fires before grpc-js noticed is reported as DEADLINE_EXCEEDED, not as a cancel.
 */
function commandRunner(executor: CommandExecutor, fairShare: FairShare, clock: Clock): RunCommand {
  return async (spec, ctx, caller) => {
    const release = fairShare.startCommand(caller.share);
    const scoped = requestDeadline(ctx, clock, caller.session);
    try {
      return await executor.execute(
        spec,
        scoped.deadline === undefined
          ? { signal: scoped.signal, actor: caller.actor }
          : { signal: scoped.signal, actor: caller.actor, deadlineMs: scoped.deadline },
      );
    } catch (e) {
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
      release();
    }
  };
}

/** ListAgents, ListDevices and GetDevice. */
function listingHandlers(
  deps: ControlServiceDeps,
  pageBytes: number,
): Pick<ControlServiceImplementation, 'listAgents' | 'listDevices' | 'getDevice'> {
  const { registry } = deps;
  const agentSize = (a: Agent) => Agent.encode(a).finish().length;
  const devicePages: PageRules<LogicalUnit> = {
    defaultSize: LIST_PAGE_SIZE.default,
    maxSize: LIST_PAGE_SIZE.max,
    budgetBytes: pageBytes,
    // The listing's order (loader, then LU id) as one string: NUL sorts before every character of an id.
    keyOf: (u) => `${u.loaderId}\u0000${u.luId}`,
    sizeOf: (u) => LogicalUnit.encode(u).finish().length,
  };
  return {
    async listAgents(request) {
      const records = registry
        .list()
        .filter((a) => request.site === '' || a.hello.site === request.site)
        .sort((a, b) => compare(a.hello.agentId, b.hello.agentId));
      // Converted lazily: only the page's records become messages.
      const { page, nextPageToken } = pageOf(records, request, {
        defaultSize: LIST_PAGE_SIZE.default,
        maxSize: LIST_PAGE_SIZE.max,
        budgetBytes: pageBytes,
        keyOf: (r) => r.hello.agentId,
        sizeOf: (r) => agentSize(agentToProto(r, deps.instanceId)),
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
  };
}
