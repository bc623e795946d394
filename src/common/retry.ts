import { AbortError, isAbortError } from 'abort-controller-x';
import { ClientError, Status, type ClientMiddleware } from 'nice-grpc-common';
import type { RetryOptions } from 'nice-grpc-client-middleware-retry';
import type { Clock } from './clock.js';

/** Retried unless the call says otherwise (a server shutting down answers CANCELLED; a caller's cancel is an AbortError). */
const DEFAULT_RETRYABLE: readonly Status[] = [
  Status.UNKNOWN,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.CANCELLED,
];

/**
 * Client middleware retrying unary calls: nice-grpc-client-middleware-retry's options, defaults and backoff
 * (exponential from `retryBaseDelayMs`, capped at `retryMaxDelayMs`, "equal jitter"), with the backoff waited
 * on `clock` so a test can move time instead of waiting. Retries NO_SIDE_EFFECTS and IDEMPOTENT methods by
 * default, never streams; an abort during the backoff ends it with an AbortError.
 */
export function retryMiddleware(clock: Clock): ClientMiddleware<RetryOptions> {
  return async function* (call, options) {
    const { idempotencyLevel } = call.method.options;
    const {
      retry = idempotencyLevel === 'IDEMPOTENT' || idempotencyLevel === 'NO_SIDE_EFFECTS',
      retryBaseDelayMs = 1000,
      retryMaxDelayMs = 30_000,
      retryMaxAttempts = 1,
      onRetryableError,
      retryableStatuses = DEFAULT_RETRYABLE,
      ...rest
    } = options;
    if (call.requestStream || call.responseStream || !retry)
      return yield* call.next(call.request, rest);
    for (let attempt = 0; ; attempt++) {
      try {
        return yield* call.next(call.request, rest);
      } catch (error: unknown) {
        if (isAbortError(error)) throw error;
        if (
          attempt >= retryMaxAttempts ||
          !(error instanceof ClientError) ||
          !retryableStatuses.includes(error.code)
        )
          throw error;
        const backoff = Math.min(retryMaxDelayMs, 2 ** attempt * retryBaseDelayMs);
        const delayMs = Math.round((backoff * (1 + Math.random())) / 2);
        onRetryableError?.(error, attempt, delayMs);
        await clock.sleep(delayMs, options.signal);
        // nice-grpc's AbortError, as its calls reject on abort (callers tell it by name; it is no Error subclass).
        // eslint-disable-next-line @typescript-eslint/only-throw-error
        if (options.signal?.aborted === true) throw new AbortError();
      }
    }
  };
}
