import type {
  Deadline,
  Metadata,
  ServerInterceptingCall,
  ServerInterceptingCallInterface,
  ServerInterceptor,
} from '@grpc/grpc-js';
import { Status, type CallContext } from 'nice-grpc';
import { ServerError } from 'nice-grpc-common';
import type { Duration } from '../gen/google/protobuf/duration.js';
import { durationToMs } from '../common/command.js';
import { TIMEOUT_METADATA_KEY } from '../common/client.js';
import { invalidArgument } from '../common/errors.js';
import { onAbort } from '../common/abort-listeners.js';
import { systemClock, type Clock } from '../common/clock.js';
import { PassThroughServerCall } from './pass-through-call.js';

/**
 * Metadata key (set by {@link exposeDeadline}, never by clients) with the call's absolute deadline in epoch
 * milliseconds on this server's clock.
 */
export const DEADLINE_METADATA_KEY = 'prfleet-server-deadline-ms';

/** Longest command_timeout a request may ask for (1 h; SG_IO allows ~49 days, but nobody should wait that). */
export const MAX_COMMAND_TIMEOUT_MS = 3_600_000;

/**
 * grpc-js server interceptor that copies the call's deadline into metadata, because grpc-js strips
 * `grpc-timeout` and nice-grpc's CallContext has no deadline (style.md §5). It also honours the relative
 * `prfleet-timeout-ms` that prfleet's nice-grpc clients send (their deadline is only a local timer), taking the
 * earlier of the two; `clock` dates its receipt. A client-supplied DEADLINE_METADATA_KEY is removed first.
 */
export const deadlineInterceptor =
  (clock: Clock): ServerInterceptor =>
  (_method, call) =>
    // grpc-js composes interceptors through ServerInterceptingCallInterface; its type names the class.
    new DeadlineExposingCall(call, clock) as unknown as ServerInterceptingCall;

/** `metadata` with DEADLINE_METADATA_KEY set from the transport's deadline and `prfleet-timeout-ms` (see above). */
function exposeDeadlineIn(metadata: Metadata, deadline: Deadline, receivedMs: number): Metadata {
  metadata.remove(DEADLINE_METADATA_KEY);
  const grpcMs = deadline instanceof Date ? deadline.getTime() : deadline;
  let earliest = Number.isFinite(grpcMs) ? grpcMs : Infinity;
  const relative = metadata.get(TIMEOUT_METADATA_KEY)[0];
  if (typeof relative === 'string' && /^\d{1,12}$/.test(relative)) {
    earliest = Math.min(earliest, receivedMs + Number(relative));
  }
  if (earliest !== Infinity) metadata.set(DEADLINE_METADATA_KEY, String(earliest));
  return metadata;
}

type Call = ServerInterceptingCallInterface;
/** What grpc-js hands a call's start() (its package index does not export the name). */
type InterceptingServerListener = Parameters<Call['start']>[0];

/**
 * The call as the layers above see it: its metadata with the deadline added, everything else passed through.
 * One plain object per call, also the listener it hands down (see {@link PassThroughServerCall}).
 */
class DeadlineExposingCall extends PassThroughServerCall implements InterceptingServerListener {
  private listener: InterceptingServerListener | undefined;

  constructor(
    next: Call,
    private readonly clock: Clock,
  ) {
    super(next);
  }

  start(listener: InterceptingServerListener): void {
    this.listener = listener;
    this.next.start(this);
  }
  onReceiveMetadata(metadata: Metadata): void {
    const receivedMs = this.clock.now();
    this.listener?.onReceiveMetadata(
      exposeDeadlineIn(metadata, this.next.getDeadline(), receivedMs),
    );
  }
  onReceiveMessage(message: unknown): void {
    this.listener?.onReceiveMessage(message);
  }
  onReceiveHalfClose(): void {
    this.listener?.onReceiveHalfClose();
  }
  onCancel(): void {
    this.listener?.onCancel();
  }
}

/** {@link deadlineInterceptor} on the system clock. */
export const exposeDeadline: ServerInterceptor = deadlineInterceptor(systemClock);

/** The caller's remaining time in ms (may be ≤ 0), or undefined when it set no deadline. */
export function remainingDeadlineMs(
  context: Pick<CallContext, 'metadata'>,
  clock: Clock = systemClock,
): number | undefined {
  const deadline = callDeadline(context);
  return deadline === undefined ? undefined : deadline - clock.now();
}

/** How a command's time budget is derived. */
export interface BudgetPolicy {
  /** Budget when the request gives no command_timeout. */
  readonly defaultTimeoutMs: number;
  /** Kept back from the caller's remaining deadline so the result reaches it in time. */
  readonly marginMs: number;
}

/**
 * Budget of one device command: min(command_timeout (default from policy), caller's remaining deadline −
 * margin). Throws INVALID_ARGUMENT naming `field` for a negative or over-long command_timeout, and
 * DEADLINE_EXCEEDED (nothing sent) when the caller's deadline leaves no time.
 */
export function commandBudgetMs(
  commandTimeout: Duration | undefined,
  remainingMs: number | undefined,
  policy: BudgetPolicy,
  field = 'options.command_timeout',
): number {
  let requestedMs = policy.defaultTimeoutMs;
  if (commandTimeout !== undefined) {
    if (commandTimeout.seconds < 0n || commandTimeout.nanos < 0) {
      throw invalidArgument(field, 'must not be negative');
    }
    const ms = durationToMs(commandTimeout);
    if (ms > MAX_COMMAND_TIMEOUT_MS) {
      throw invalidArgument(
        field,
        `${ms} ms is longer than the maximum ${MAX_COMMAND_TIMEOUT_MS} ms`,
      );
    }
    if (ms > 0) requestedMs = ms;
  }
  if (remainingMs === undefined) return requestedMs;
  const available = Math.floor(remainingMs - policy.marginMs);
  if (available <= 0) {
    throw new ServerError(
      Status.DEADLINE_EXCEEDED,
      `deadline leaves ${Math.max(0, Math.floor(remainingMs))} ms, less than the ${policy.marginMs} ms margin; nothing was sent`,
    );
  }
  return Math.min(requestedMs, available);
}

/**
 * The device timeout (or another interval) a fleet request asks for: `duration`, or `defaultMs` when it is unset
 * or zero. INVALID_ARGUMENT naming `field` when it is negative or longer than MAX_COMMAND_TIMEOUT_MS, as for a
 * single command: a longer one passes what a Node timer holds (2^31 − 1 ms), and the timer then fires at once.
 */
export function requestedMs(
  duration: Duration | undefined,
  defaultMs: number,
  field: string,
): number {
  return commandBudgetMs(duration, undefined, { defaultTimeoutMs: defaultMs, marginMs: 0 }, field);
}

/**
 * The device timeout of one dispatch: `requestedMs` trimmed to the caller's absolute `deadline` less the margin.
 * The only place the deadline turns into a budget (the router sends it as the wire Duration). Throws
 * DEADLINE_EXCEEDED (nothing sent) when the deadline leaves no time.
 */
export function deviceBudgetMs(
  requestedMs: number,
  deadline: number | undefined,
  marginMs: number,
  clock: Clock,
): number {
  if (deadline === undefined) return requestedMs;
  const remainingMs = deadline - clock.now();
  const available = Math.floor(remainingMs - marginMs);
  if (available <= 0) {
    throw new ServerError(
      Status.DEADLINE_EXCEEDED,
      `deadline leaves ${Math.max(0, Math.floor(remainingMs))} ms, less than the ${marginMs} ms margin; nothing was sent`,
    );
  }
  return Math.min(requestedMs, available);
}

/** The caller's absolute deadline (epoch ms) from the call's metadata, or undefined when it set none. */
export function callDeadline(context: Pick<CallContext, 'metadata'>): number | undefined {
  const raw = context.metadata.get(DEADLINE_METADATA_KEY);
  if (typeof raw !== 'string') return undefined;
  const deadline = Number(raw);
  return Number.isFinite(deadline) ? deadline : undefined;
}

/** A command's signal and deadline as {@link requestDeadline} derives them; `dispose()` when done. */
export interface RequestDeadline {
  readonly signal: AbortSignal;
  readonly deadline: number | undefined;
  dispose(): void;
}

const noop = (): void => {};

/**
 * The request's one deadline form, computed where it enters: a signal that aborts when the call's does, or with
 * ServerError(DEADLINE_EXCEEDED) at the call's absolute deadline (so the agent is sent Cancel even if the
 * transport's own deadline handling is late), and that deadline; `clock` runs the timer. Call `dispose()` when
 * done. `signalShared`: the call's signal is shared by many commands (a CommandSession's); a unary RPC's is its
 * one command's, so without a deadline it is the command's signal as it is (no controller, no listener).
 */
export function requestDeadline(
  context: Pick<CallContext, 'metadata' | 'signal'>,
  clock: Clock,
  signalShared = true,
): RequestDeadline {
  const deadline = callDeadline(context);
  const outer = context.signal;
  if (!signalShared && deadline === undefined) return { signal: outer, deadline, dispose: noop };
  // Otherwise a signal of the command's own, listening to the call's through onAbort (O(1)): a CommandSession's
  // commands all share the session's one call signal, and what listens per command (journal waits, the Redis
  // router) must not put more than ten EventTarget listeners on it (MaxListenersExceededWarning).
  const controller = new AbortController();
  const stopListening = onAbort(outer, () => controller.abort(outer.reason));
  if (outer.aborted) controller.abort(outer.reason);
  const cancelTimer =
    deadline === undefined
      ? undefined
      : clock.timeout(
          () =>
            controller.abort(
              new ServerError(
                Status.DEADLINE_EXCEEDED,
                'deadline exceeded while waiting for the agent; cancel sent, the result will still be recorded',
              ),
            ),
          Math.max(0, deadline - clock.now()),
        );
  return {
    signal: controller.signal,
    deadline,
    dispose: () => {
      cancelTimer?.();
      stopListening();
    },
  };
}
