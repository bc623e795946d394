import { ServerError } from 'nice-grpc-common';
import type { Command } from '../../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { ErrorReason, unavailable } from '../../common/errors.js';
import type { DispatchOptions } from '../router.js';
import type { Background } from './connection.js';
import type { PendingForward, PendingForwards } from './pending-forwards.js';
import type { Presence } from './presence.js';
import { errorFromMessage, type RelayMessage } from './protocol.js';

/** What a {@link Forwarder} works with. */
export interface ForwarderDeps {
  readonly instanceId: string;
  readonly presence: Presence;
  readonly pending: PendingForwards;
  /** Publishes on an instance's inbox; resolves with how many subscribers got it. */
  readonly publish: (target: string, message: RelayMessage) => Promise<number>;
  readonly background: Background;
  /** Wait after the device timeout for the owner's reply: the owner's slack plus the relay's margin. */
  readonly waitExtraMs: number;
}

type Reply = Extract<RelayMessage, { kind: 'result' | 'error' }>;

/**
 * The caller side of the relay: a command for an agent held by another instance is PUBLISHed to that instance's
 * inbox and waits in the pending table for the reply, correlated by request id. Nothing is sent twice to one
 * owner; a request follows an agent that re-attached elsewhere at most once.
 */
export class Forwarder {
  private sequence = 0;

  constructor(private readonly deps: ForwarderDeps) {}

  /** Forwards `command` to the instance holding `agentId`; resolves with its result (see CommandRouter). */
  forward(agentId: string, command: Command, options: DispatchOptions): Promise<CommandResult> {
    this.sequence += 1;
    const id = `${this.deps.instanceId}/${this.sequence}`;
    return new Promise<CommandResult>((resolve, reject) => {
      const entry: PendingForward = {
        agentId,
        command,
        options,
        owner: '',
        rerouted: false,
        abandoned: false,
        timer: undefined,
        resolve,
        reject,
      };
      this.deps.pending.add(id, entry);
      this.listenForAbort(id, entry);
      this.send(id, entry).then(
        () => this.sent(id, entry),
        (error: unknown) => this.deps.pending.fail(id, entry, sendError(agentId, error)),
      );
    });
  }

  /** The owner's answer: the result, or its refusal (followed once to where the agent re-attached). */
  onReply(message: Reply): void {
    const entry = this.deps.pending.get(message.id);
    if (entry === undefined) return; // duplicate, or settled as UNKNOWN already
    if (message.kind === 'result') {
      this.deps.pending.settle(message.id, entry, message.result);
      return;
    }
    // The owner lost the agent between our GET and its dispatch: if it re-attached elsewhere, follow it once.
    if (message.reason === ErrorReason.AGENT_OFFLINE && !entry.rerouted && !entry.abandoned) {
      this.reroute(message, entry);
      return;
    }
    this.deps.pending.fail(message.id, entry, errorFromMessage(message));
  }

  /**
   * A caller that stops waiting is rejected at once; the owner is told to cancel (the agent drops a command it
   * has not submitted). The entry stays: the result still comes back for onResult.
   */
  private listenForAbort(id: string, entry: PendingForward): void {
    const signal = entry.options.signal;
    const { resolve, reject } = entry;
    const onAbort = () => {
      entry.abandoned = true;
      if (entry.owner !== '') this.relayCancel(id, entry);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => signal?.removeEventListener('abort', onAbort);
    entry.resolve = (r) => {
      cleanup();
      resolve(r);
    };
    entry.reject = (e) => {
      cleanup();
      reject(e);
    };
  }

  /** The owner took the request: cancel it if the caller left meanwhile, and bound the wait for the reply. */
  private sent(id: string, entry: PendingForward): void {
    if (entry.abandoned) this.relayCancel(id, entry);
    const waitMs = entry.options.timeoutMs + this.deps.waitExtraMs;
    this.armReplyTimer(
      id,
      entry,
      () => `no reply from server instance ${entry.owner} within ${waitMs} ms`,
    );
  }

  private reroute(message: Extract<Reply, { kind: 'error' }>, entry: PendingForward): void {
    const { presence, pending } = this.deps;
    entry.rerouted = true;
    const staleOwner = entry.owner;
    clearTimeout(entry.timer);
    void presence.owner(entry.agentId).then(
      (now) => {
        if (now === null || now === staleOwner) {
          pending.fail(message.id, entry, errorFromMessage(message));
          return;
        }
        this.send(message.id, entry).then(
          () =>
            this.armReplyTimer(
              message.id,
              entry,
              () => `no reply from server instance ${entry.owner}`,
            ),
          (error: unknown) => pending.fail(message.id, entry, error),
        );
      },
      () => pending.fail(message.id, entry, errorFromMessage(message)),
    );
  }

  /** An owner that never replies (it died holding the command) leaves the command UNKNOWN, not pending forever. */
  private armReplyTimer(id: string, entry: PendingForward, why: () => string): void {
    entry.timer = setTimeout(
      () => this.deps.pending.settleUnknown(id, entry, why()),
      entry.options.timeoutMs + this.deps.waitExtraMs,
    );
    entry.timer.unref();
  }

  private relayCancel(id: string, entry: PendingForward): void {
    const { publish, instanceId, background } = this.deps;
    background(
      () => publish(entry.owner, { kind: 'cancel', id, from: instanceId }).then(() => undefined),
      'cancel relay',
    );
  }

  /** Sends the request to the instance holding the agent; throws UNAVAILABLE when nobody holds it. */
  private async send(id: string, entry: PendingForward): Promise<void> {
    const { presence, publish, instanceId } = this.deps;
    for (;;) {
      const owner = await presence.owner(entry.agentId);
      if (owner === null) {
        throw unavailable(
          ErrorReason.AGENT_OFFLINE,
          `agent ${entry.agentId} is not connected to any server instance; nothing was sent`,
          { agent_id: entry.agentId },
        );
      }
      if (owner === instanceId) {
        // Presence says here but the session is gone (it just ended): the local router answers AGENT_OFFLINE.
        throw unavailable(
          ErrorReason.AGENT_OFFLINE,
          `agent ${entry.agentId} is not connected; nothing was sent`,
          { agent_id: entry.agentId },
        );
      }
      entry.owner = owner;
      const receivers = await publish(owner, requestMessage(id, instanceId, entry));
      if (receivers > 0) return;
      await this.forgetDeadOwner(entry, owner);
    }
  }

  /**
   * PUBLISH reached nobody: the owner's subscriber is gone, the instance died. Forget its claim; go on (once)
   * only if the agent re-attached elsewhere already, else UNAVAILABLE with nothing sent.
   */
  private async forgetDeadOwner(entry: PendingForward, owner: string): Promise<void> {
    const { presence } = this.deps;
    await presence.releaseClaim(entry.agentId, owner);
    const now = await presence.owner(entry.agentId);
    if (now === null || now === owner || entry.rerouted) {
      throw unavailable(
        ErrorReason.AGENT_OFFLINE,
        `server instance ${owner} holding agent ${entry.agentId} is gone and the agent has not re-attached elsewhere yet; nothing was sent`,
        { agent_id: entry.agentId, instance: owner },
      );
    }
    entry.rerouted = true;
  }
}

/** The request message for `entry`, from this instance. */
export function requestMessage(
  id: string,
  from: string,
  entry: Pick<PendingForward, 'agentId' | 'command' | 'options'>,
): RelayMessage {
  const { options } = entry;
  return {
    kind: 'request',
    id,
    from,
    agentId: entry.agentId,
    command: entry.command,
    timeoutMs: options.timeoutMs,
    ...(options.luId === undefined ? {} : { luId: options.luId }),
    ...(options.actor === undefined ? {} : { actor: options.actor }),
  };
}

/** A failure to send: a refusal as it is; anything else means Redis could not be reached (nothing was sent). */
function sendError(agentId: string, error: unknown): ServerError {
  if (error instanceof ServerError) return error;
  return unavailable(
    ErrorReason.AGENT_OFFLINE,
    `cannot route to agent ${agentId}: Redis unreachable (${error instanceof Error ? error.message : String(error)}); nothing was sent`,
    { agent_id: agentId },
  );
}
