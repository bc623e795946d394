import type { Logger } from 'pino';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status } from 'nice-grpc-common';
import type { CommandRouter } from '../router.js';
import type { Background } from './connection.js';
import { errorMessageOf, type RelayMessage } from './protocol.js';

/** Request ids an owner remembers to drop a PUBLISH delivered twice (ioredis resends after a reconnect). */
const SEEN_REQUESTS_CAPACITY = 10_000;

/** The last `capacity` ids seen, oldest forgotten first: enough to catch a redelivery, bounded in memory. */
export class RecentIds {
  private readonly ids = new Set<string>();

  constructor(private readonly capacity: number) {}

  /** True the first time `id` is seen (and remembers it); false for a repeat. */
  firstTime(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      this.ids.delete(this.ids.values().next().value as string);
    }
    return true;
  }
}

/** What a {@link RelayServer} works with. */
export interface RelayServerDeps {
  /** The in-process router over this instance's agent streams. */
  readonly local: CommandRouter;
  /** Publishes on an instance's inbox. */
  readonly publish: (target: string, message: RelayMessage) => Promise<number>;
  readonly background: Background;
  readonly log: Logger;
}

type Request = Extract<RelayMessage, { kind: 'request' }>;

/**
 * The owner side of the relay: runs other instances' requests on the agents whose streams this instance holds,
 * through the in-process router, and sends back exactly one reply per request (the result, or the refusal with
 * its reason). A request delivered twice runs once.
 */
export class RelayServer {
  private readonly seen = new RecentIds(SEEN_REQUESTS_CAPACITY);
  /** Requests being run here for another instance, by request id. */
  private readonly serving = new Map<string, AbortController>();

  constructor(private readonly deps: RelayServerDeps) {}

  onRequest(message: Request): void {
    if (!this.seen.firstTime(message.id)) return;
    const reply = onceReply(message, this.deps);
    const controller = new AbortController();
    this.serving.set(message.id, controller);
    this.deps.local
      .dispatch(message.agentId, message.command, {
        signal: controller.signal,
        timeoutMs: message.timeoutMs,
        ...(message.luId === undefined ? {} : { luId: message.luId }),
        ...(message.actor === undefined ? {} : { actor: message.actor }),
        onResult: (result) => reply({ kind: 'result', id: message.id, result }),
      })
      .then(
        (result) => reply({ kind: 'result', id: message.id, result }),
        (error: unknown) => {
          if (isAbortError(error) || controller.signal.aborted) return; // the result follows through onResult
          reply(this.refusal(message.id, error));
        },
      )
      .finally(() => this.serving.delete(message.id));
  }

  /** The caller gave up: the local router sends the agent Cancel; the result still comes back. */
  onCancel(message: Extract<RelayMessage, { kind: 'cancel' }>): void {
    this.serving
      .get(message.id)
      ?.abort(new ServerError(Status.CANCELLED, `caller on instance ${message.from} gave up`));
  }

  /** Stops waiting on every request being served (close): each gets UNAVAILABLE with `details`. */
  abortAll(details: string): void {
    for (const controller of this.serving.values())
      controller.abort(new ServerError(Status.UNAVAILABLE, details));
  }

  /** The dispatch error as the caller should see it: the ServerError with its reason, else a logged INTERNAL. */
  private refusal(id: string, error: unknown): RelayMessage {
    const answer = errorMessageOf(id, error);
    if (answer !== undefined) return answer;
    this.deps.log.error({ err: error, requestId: id }, 'forwarded dispatch failed');
    return {
      kind: 'error',
      id,
      code: Status.INTERNAL,
      details: 'internal error (logged on the owning instance)',
    };
  }
}

/** Publishes the first answer to the requesting instance; later ones (onResult after the resolve) are dropped. */
function onceReply(
  request: Request,
  deps: Pick<RelayServerDeps, 'publish' | 'background'>,
): (answer: RelayMessage) => void {
  let replied = false;
  return (answer) => {
    if (replied) return;
    replied = true;
    deps.background(() => deps.publish(request.from, answer).then(() => undefined), 'reply relay');
  };
}
