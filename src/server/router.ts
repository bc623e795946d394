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
import type { AgentRegistry } from './agent-registry.js';

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
  const { registry, log } = deps;
  const slackMs = deps.resultSlackMs ?? 5_000;
  const rotationWaitMs = deps.rotationWaitMs ?? 10_000;
  let draining = false;
  let inFlight = 0;
  let idleWaiters: (() => void)[] = [];
  let sequence = 0;
  const idPrefix = `${deps.instanceId.slice(0, 8)}-${randomUUID().slice(0, 8)}`;

  function settledOne(): void {
    inFlight -= 1;
    if (inFlight === 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  function logResult(
    command: Command,
    result: CommandResult,
    ms: number,
    abandoned: boolean,
    actor: string | undefined,
  ): void {
    const atInfo = isProut(command) || result.outcome === Outcome.OUTCOME_UNKNOWN;
    // Other results log at debug: skip building their fields when nobody reads them (every audit read).
    if (!atInfo && !log.isLevelEnabled('debug')) return;
    const kind = command.kind;
    const fields = {
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
    if (atInfo) log.info(fields, 'command done');
    else log.debug(fields, 'command done');
  }

  return {
    get draining() {
      return draining;
    },
    get inFlight() {
      return inFlight;
    },
    startDraining() {
      draining = true;
    },
    whenIdle(timeoutMs) {
      if (inFlight === 0) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        idleWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
    dispatch(agentId, command, options) {
      if (!registry.isRotating(agentId)) return dispatchNow(agentId, command, options);
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
          return dispatchNow(agentId, command, options);
        });
    },
  };

  function dispatchNow(
    agentId: string,
    command: Command,
    options: DispatchOptions,
  ): Promise<CommandResult> {
    if (draining) {
      return Promise.reject(
        unavailable(ErrorReason.SERVER_DRAINING, 'server is draining: retry on another instance', {
          agent_id: agentId,
        }),
      );
    }
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    const session = registry.session(agentId);
    if (session === undefined) {
      return Promise.reject(
        unavailable(
          ErrorReason.AGENT_OFFLINE,
          `agent ${agentId} is not connected; nothing was sent`,
          {
            agent_id: agentId,
          },
        ),
      );
    }
    sequence += 1;
    // A literal, not fromPartial: the caller's command is complete and never changed, so its kind is shared.
    // The trace context is the one it came with from another instance, else this call's.
    const traced = command.traceparent === '' ? activeTraceContext() : command;
    const sent: Command = {
      commandId: command.commandId === '' ? `${idPrefix}-${sequence}` : command.commandId,
      path: command.path,
      timeout: msToDuration(options.timeoutMs),
      idempotencyKey: command.idempotencyKey,
      traceparent: traced.traceparent,
      tracestate: traced.tracestate,
      kind: command.kind,
    };
    const luId = options.luId ?? '';
    const startedMs = performance.now();

    return new Promise<CommandResult>((resolve, reject) => {
      let settled = false;
      let abandoned = false;
      let slackTimer: NodeJS.Timeout | undefined;
      let stopListening = () => {};
      const onAbort = () => {
        abandoned = true;
        // The agent drops it if not yet submitted; otherwise the result still comes and is recorded.
        session.outbox.pushUrgent({
          message: { $case: 'cancel', value: { commandId: sent.commandId } },
        });
        log.info(
          {
            commandId: sent.commandId,
            ...(options.actor === undefined ? {} : { actor: options.actor }),
            agentId,
            path: sent.path,
            reason: String(options.signal?.reason),
          },
          'caller gave up: cancel sent to agent',
        );
        reject(options.signal?.reason);
      };
      const settle = (raw: CommandResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(slackTimer);
        stopListening();
        session.forget(sent.commandId);
        // Filled in place: every result settled here is a message just decoded (or built) for this command and
        // used by nobody else, and a spread with five keys after it costs V8 ~1.5 µs per key on every command.
        // What was sent, to whom, comes from the server's own record, never from the agent (which supplies only
        // the device's answer): a compromised agent must not be able to record its command as another's.
        const result: CommandResult = raw;
        result.commandId = sent.commandId;
        result.agentId = agentId;
        result.path = sent.path;
        result.luId = luId;
        result.idempotencyKey = sent.idempotencyKey;
        settledOne();
        logResult(sent, result, performance.now() - startedMs, abandoned, options.actor);
        try {
          options.onResult?.(result);
        } catch (e) {
          log.error({ err: e, commandId: sent.commandId }, 'onResult hook failed');
        }
        resolve(result); // no-op when the caller already got a rejection
      };
      // The capacity bounds commands queued OR in flight on the agent: a slow agent fills it even while the
      // stream itself drains, and nothing unbounded builds up in the server either way.
      const busy = session.pending.size >= session.outbox.capacity;
      if (busy || !session.outbox.push({ message: { $case: 'command', value: sent } })) {
        log.warn(
          {
            ...(options.actor === undefined ? {} : { actor: options.actor }),
            agentId,
            inFlight: session.pending.size,
            queued: session.outbox.size,
            capacity: session.outbox.capacity,
          },
          'agent queue full: command refused',
        );
        reject(
          resourceExhausted(
            ErrorReason.AGENT_BUSY,
            `agent ${agentId} has ${session.pending.size} commands queued or in flight (capacity ${session.outbox.capacity}); nothing was sent`,
            { agent_id: agentId },
          ),
        );
        return;
      }
      session.pending.set(sent.commandId, { command: sent, luId, settle });
      inFlight += 1;
      // O(1) however many commands share the signal (an audit's thousands), unlike addEventListener.
      if (options.signal !== undefined) stopListening = onSignalAbort(options.signal, onAbort);
      // An agent that never answers (hung, or lost the command) must not pin the caller or the drain forever.
      slackTimer = setTimeout(() => {
        session.outbox.pushUrgent({
          message: { $case: 'cancel', value: { commandId: sent.commandId } },
        });
        settle(
          unknownResult(
            sent,
            agentId,
            `no result from agent ${agentId} within ${options.timeoutMs + slackMs} ms; the command may or may not have run: read the logical unit before retrying`,
          ),
        );
      }, options.timeoutMs + slackMs);
      slackTimer.unref();
    });
  }
}
