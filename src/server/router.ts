import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Command } from '../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import { Outcome, outcomeToJSON } from '../gen/prfleet/v1/scsi.js';
import { describeCommand, isProut, msToDuration } from '../common/command.js';
import { activeTraceContext } from '../common/command-trace.js';
import { unknownResult } from '../common/result.js';
import { ErrorReason, resourceExhausted, unavailable } from '../common/errors.js';
import { formatKey } from '../scsi/keys.js';
import { onAbort as onSignalAbort } from '../common/abort-listeners.js';
import type { AgentRegistry, AgentSession } from './agents/index.js';

/** How to dispatch one command. */
export interface DispatchOptions {
  /** The caller's signal: when it aborts, the agent is sent Cancel and dispatch rejects with its reason. */
  readonly signal?: AbortSignal;
  /** Device command timeout (sent to the agent as Command.timeout). */
  readonly timeoutMs: number;
  /** Logical unit behind the path, filled into the result when the agent leaves it empty. */
  readonly luId?: string;
  /**
   * Called once with the final result, also when it arrives after the caller stopped waiting (cancel,
   * deadline): the idempotency journal and the audit log must see every result.
   */
  readonly onResult?: (result: CommandResult) => void;
  /** The authenticated principal the command runs for: named in the router's log lines of it. */
  readonly actor?: string;
}

/**
 * Sends typed commands to agents and returns their results. Handlers talk only to this interface, so a
 * multi-instance router (Redis) can replace the in-process one.
 *
 * dispatch throws (nothing sent): UNAVAILABLE {AGENT_OFFLINE | SERVER_DRAINING}, RESOURCE_EXHAUSTED
 * {AGENT_BUSY}; rejects with the signal's reason when the caller aborts (the command may still run; its result
 * goes to onResult). Everything the agent or the device says, and UNKNOWN, resolves as a CommandResult.
 */
export interface CommandRouter {
  /** Sends `command` to `agentId` and resolves with its result (see the interface doc for errors). */
  dispatch(agentId: string, command: Command, options: DispatchOptions): Promise<CommandResult>;
  /** Refuse new dispatches with UNAVAILABLE {SERVER_DRAINING} from now on. */
  startDraining(): void;
  /** True after startDraining(). */
  readonly draining: boolean;
  /** Commands sent whose results have not come back (including ones the caller gave up on). */
  readonly inFlight: number;
  /** Resolves true when nothing is in flight, or false when `timeoutMs` passes first. */
  whenIdle(timeoutMs: number): Promise<boolean>;
}

/** Dependencies of {@link createInProcessRouter}. */
export interface InProcessRouterDeps {
  /** Where agent sessions live. */
  readonly registry: AgentRegistry;
  /** Logger (info: every PROUT result; debug: other results). */
  readonly log: Logger;
  /** Prefix of generated command ids (the server instance id). */
  readonly instanceId: string;
  /** Extra wait after the device timeout before an unanswered command becomes UNKNOWN. @default 5000 */
  readonly resultSlackMs?: number;
  /**
   * How long a dispatch waits for an agent whose stream is being rotated to come back (on this instance, or on
   * another one per the shared inventory) before UNAVAILABLE; nothing is sent meanwhile. @default 10000
   */
  readonly rotationWaitMs?: number;
}

/** The single-instance router: agents' streams are in this process. */
export function createInProcessRouter(deps: InProcessRouterDeps): CommandRouter {
  return new InProcessRouter(deps);
}

class InProcessRouter implements CommandRouter {
  private readonly registry: AgentRegistry;
  private readonly rotationWaitMs: number;
  private readonly shared: SessionCommandShared;
  private readonly idPrefix: string;
  private isDraining = false;
  private sequence = 0;

  constructor(deps: InProcessRouterDeps) {
    this.registry = deps.registry;
    this.rotationWaitMs = deps.rotationWaitMs ?? 10_000;
    this.shared = {
      log: deps.log,
      slackMs: deps.resultSlackMs ?? 5_000,
      inFlight: new InFlightCount(),
    };
    this.idPrefix = `${deps.instanceId.slice(0, 8)}-${randomUUID().slice(0, 8)}`;
  }

  get draining(): boolean {
    return this.isDraining;
  }

  get inFlight(): number {
    return this.shared.inFlight.value;
  }

  startDraining(): void {
    this.isDraining = true;
  }

  whenIdle(timeoutMs: number): Promise<boolean> {
    return this.shared.inFlight.whenIdle(timeoutMs);
  }

  dispatch(agentId: string, command: Command, options: DispatchOptions): Promise<CommandResult> {
    const { registry, rotationWaitMs } = this;
    if (!registry.isRotating(agentId)) return this.dispatchNow(agentId, command, options);
    // The stream is being rotated: hold the command (not sent yet) until the agent's next session is up.
    return registry
      .waitWhileRotating(agentId, { timeoutMs: rotationWaitMs, signal: options.signal })
      .then(() => {
        if (registry.isRotating(agentId)) {
          throw unavailable(
            ErrorReason.AGENT_OFFLINE,
            `agent ${agentId} is rotating its stream and did not reconnect within ${rotationWaitMs} ms; nothing was sent`,
            { agent_id: agentId },
          );
        }
        return this.dispatchNow(agentId, command, options);
      });
  }

  /** Sends to the agent's current session here; refusals reject before anything is sent. */
  private dispatchNow(
    agentId: string,
    command: Command,
    options: DispatchOptions,
  ): Promise<CommandResult> {
    if (this.isDraining) {
      return Promise.reject(
        unavailable(ErrorReason.SERVER_DRAINING, 'server is draining: retry on another instance', {
          agent_id: agentId,
        }),
      );
    }
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    const session = this.registry.session(agentId);
    if (session === undefined) {
      return Promise.reject(
        unavailable(
          ErrorReason.AGENT_OFFLINE,
          `agent ${agentId} is not connected; nothing was sent`,
          { agent_id: agentId },
        ),
      );
    }
    this.sequence += 1;
    const commandId =
      command.commandId === '' ? `${this.idPrefix}-${this.sequence}` : command.commandId;
    const sent = commandToSend(command, commandId, options.timeoutMs);
    return new SessionCommand(
      this.shared,
      session,
      agentId,
      sent,
      options.luId ?? '',
      options,
    ).run();
  }
}

/** What every command sent by one in-process router shares. */
interface SessionCommandShared {
  readonly log: Logger;
  /** Extra wait after the device timeout before an unanswered command becomes UNKNOWN. */
  readonly slackMs: number;
  readonly inFlight: InFlightCount;
}

const noop = (): void => {};

/**
 * One command on one of this instance's agent sessions, from the push onto the agent's outbox to its single
 * settlement: the agent's result, the session's end (the registry settles its pending commands as UNKNOWN), or
 * the slack timer (UNKNOWN). A caller that stops waiting (abort) gets its rejection at once and the agent a
 * Cancel; the result, when it comes, still settles so that onResult (journal, history) sees every result.
 */
class SessionCommand {
  private settled = false;
  private abandoned = false;
  private slackTimer: NodeJS.Timeout | undefined;
  private stopListening: () => void = noop;
  private readonly startedMs = performance.now();
  private resolve: (result: CommandResult) => void = noop;
  private reject: (error: unknown) => void = noop;

  constructor(
    private readonly shared: SessionCommandShared,
    private readonly session: AgentSession,
    private readonly agentId: string,
    private readonly sent: Command,
    private readonly luId: string,
    private readonly options: DispatchOptions,
  ) {}

  /** Pushes the command; resolves with its result, rejects AGENT_BUSY (nothing sent) or with the abort reason. */
  run(): Promise<CommandResult> {
    return new Promise<CommandResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.start();
    });
  }

  private start(): void {
    const { session, sent, options } = this;
    // The capacity bounds commands queued OR in flight on the agent: a slow agent fills it even while the
    // stream itself drains, and nothing unbounded builds up in the server either way.
    if (!session.send(sent, this.luId, (raw) => this.settle(raw))) {
      this.refuseBusy();
      return;
    }
    this.shared.inFlight.add();
    // O(1) however many commands share the signal (an audit's thousands), unlike addEventListener.
    if (options.signal !== undefined) {
      this.stopListening = onSignalAbort(options.signal, () => this.abandon());
    }
    // An agent that never answers (hung, or lost the command) must not pin the caller or the drain forever.
    this.slackTimer = setTimeout(() => this.expire(), options.timeoutMs + this.shared.slackMs);
    this.slackTimer.unref();
  }

  private refuseBusy(): void {
    const { session, agentId, options } = this;
    this.shared.log.warn(
      {
        ...(options.actor === undefined ? {} : { actor: options.actor }),
        agentId,
        inFlight: session.inFlight,
        queued: session.queued,
        capacity: session.capacity,
      },
      'agent queue full: command refused',
    );
    this.reject(
      resourceExhausted(
        ErrorReason.AGENT_BUSY,
        `agent ${agentId} has ${session.inFlight} commands queued or in flight (capacity ${session.capacity}); nothing was sent`,
        { agent_id: agentId },
      ),
    );
  }

  /** The agent drops a command it has not submitted yet; otherwise the result still comes and is recorded. */
  private sendCancel(): void {
    this.session.cancel(this.sent.commandId);
  }

  private abandon(): void {
    const { options } = this;
    this.abandoned = true;
    this.sendCancel();
    this.shared.log.info(
      {
        commandId: this.sent.commandId,
        ...(options.actor === undefined ? {} : { actor: options.actor }),
        agentId: this.agentId,
        path: this.sent.path,
        reason: String(options.signal?.reason),
      },
      'caller gave up: cancel sent to agent',
    );
    this.reject(options.signal?.reason);
  }

  private expire(): void {
    const { agentId, options } = this;
    this.sendCancel();
    this.settle(
      unknownResult(
        this.sent,
        agentId,
        `no result from agent ${agentId} within ${options.timeoutMs + this.shared.slackMs} ms; the command may or may not have run: read the logical unit before retrying`,
      ),
    );
  }

  /** The one settlement: the first result wins, later ones (a late answer after UNKNOWN) are ignored. */
  private settle(raw: CommandResult): void {
    if (this.settled) return;
    this.settled = true;
    const { sent, options, shared } = this;
    clearTimeout(this.slackTimer);
    this.stopListening();
    this.session.forget(sent.commandId);
    const result = stampResult(raw, sent, this.agentId, this.luId);
    shared.inFlight.done();
    const ms = performance.now() - this.startedMs;
    logCommandResult(shared.log, sent, result, ms, this.abandoned, options.actor);
    try {
      options.onResult?.(result);
    } catch (e) {
      shared.log.error({ err: e, commandId: sent.commandId }, 'onResult hook failed');
    }
    this.resolve(result); // no-op when the caller already got a rejection
  }
}

/**
 * Callers of `whenIdle` waiting for a count to reach zero. Whoever owns the count calls `wake()` when it does;
 * a waiter whose time runs out first resolves false.
 */
export class IdleWaiters {
  private waiters: (() => void)[] = [];

  /** Resolves true at the next `wake()`, or false after `timeoutMs`. */
  wait(timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Resolves every waiter so far with true. */
  wake(): void {
    // Called whenever the count reaches zero (after every command when one is in flight): nothing to allocate.
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** Commands this router sent whose results have not come back, for `inFlight` and `whenIdle` (drain). */
export class InFlightCount {
  private count = 0;
  private readonly idle = new IdleWaiters();

  get value(): number {
    return this.count;
  }

  add(): void {
    this.count += 1;
  }

  /** One command settled; wakes the idle waiters when it was the last. */
  done(): void {
    this.count -= 1;
    if (this.count === 0) this.idle.wake();
  }

  /** Resolves true when nothing is in flight, or false when `timeoutMs` passes first. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.count === 0) return Promise.resolve(true);
    return this.idle.wait(timeoutMs);
  }
}

/**
 * The command as sent to the agent: the caller's command is complete and never changed, so a literal shares its
 * kind (fromPartial would deep-copy it). The trace context is the one it came with from another instance, else
 * this call's.
 */
export function commandToSend(command: Command, commandId: string, timeoutMs: number): Command {
  const traced = command.traceparent === '' ? activeTraceContext() : command;
  return {
    commandId,
    path: command.path,
    timeout: msToDuration(timeoutMs),
    idempotencyKey: command.idempotencyKey,
    traceparent: traced.traceparent,
    tracestate: traced.tracestate,
    kind: command.kind,
  };
}

/**
 * Fills in what was sent, to whom, from the server's own record, never from the agent (which supplies only the
 * device's answer): a compromised agent must not be able to record its command as another's. In place: every
 * result settled here is a message just decoded (or built) for this command and used by nobody else, and a
 * spread with five keys after it costs V8 ~1.5 µs per key on every command.
 */
export function stampResult(
  result: CommandResult,
  sent: Command,
  agentId: string,
  luId: string,
): CommandResult {
  result.commandId = sent.commandId;
  result.agentId = agentId;
  result.path = sent.path;
  result.luId = luId;
  result.idempotencyKey = sent.idempotencyKey;
  return result;
}

/** The fields of a 'command done' line: what was sent and what came back. */
function resultLogFields(
  command: Command,
  result: CommandResult,
  ms: number,
  abandoned: boolean,
  actor: string | undefined,
): Record<string, unknown> {
  const kind = command.kind;
  return {
    commandId: command.commandId,
    ...(actor === undefined ? {} : { actor }),
    agentId: result.agentId,
    path: result.path,
    luId: result.luId,
    command: describeCommand(command),
    outcome: outcomeToJSON(result.outcome),
    status: result.status,
    ms: Math.round(ms),
    ...(abandoned ? { abandoned: true } : {}),
    ...(result.message === '' ? {} : { detail: result.message }),
    ...(kind?.$case === 'prout'
      ? {
          key: formatKey(kind.value.reservationKey),
          serviceActionKey: formatKey(kind.value.serviceActionKey),
          type: kind.value.type,
          ...(command.idempotencyKey === '' ? {} : { idempotencyKey: command.idempotencyKey }),
        }
      : {}),
  };
}

/** Logs a settled command: every PROUT and every UNKNOWN at info (the audit trail), the rest at debug. */
export function logCommandResult(
  log: Logger,
  command: Command,
  result: CommandResult,
  ms: number,
  abandoned: boolean,
  actor: string | undefined,
): void {
  const atInfo = isProut(command) || result.outcome === Outcome.OUTCOME_UNKNOWN;
  // Other results log at debug: skip building their fields when nobody reads them (every audit read).
  if (!atInfo && !log.isLevelEnabled('debug')) return;
  const fields = resultLogFields(command, result, ms, abandoned, actor);
  if (atInfo) log.info(fields, 'command done');
  else log.debug(fields, 'command done');
}

/**
 * `router` with its dispatch replaced by `dispatch`: a proxy, so the router's getters (draining, inFlight) and other
 * methods (close, ownerOf) stay live and bound. What the metrics and the event log wrap a router with.
 */
export function withDispatch<R extends CommandRouter>(
  router: R,
  dispatch: CommandRouter['dispatch'],
): R {
  return new Proxy(router, {
    get(target, property) {
      if (property === 'dispatch') return dispatch;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function'
        ? (value as (...a: unknown[]) => unknown).bind(target)
        : value;
    },
  });
}

/**
 * Wraps `router` so `listener` sees every result that carries unit attentions or sense data (the registration
 * reconciler's trigger; the audit's memory of MEDIUM REMOVAL PREVENTED).
 */
export function tapResults<R extends CommandRouter>(
  router: R,
  listener: (result: CommandResult) => void,
): R {
  return withDispatch(router, (agentId, command, options) =>
    router.dispatch(agentId, command, {
      ...options,
      onResult(result) {
        options.onResult?.(result);
        if (result.unitAttentions.length > 0 || result.sense !== undefined) listener(result);
      },
    }),
  );
}
