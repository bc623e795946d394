import type { Logger } from 'pino';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type CallContext, type ServerMiddlewareCall } from 'nice-grpc-common';
import { RichServerError, type Any, type ErrorDetails } from 'nice-grpc-error-details';
// The library's own details encoder and google.rpc.Status, exactly as its errorDetailsServerMiddleware uses
// them; the encoder is exported by the module but left out of its type declarations.
import * as errorDetailsModule from 'nice-grpc-error-details/lib/ErrorDetails.js';
import { Status as RpcStatus } from 'nice-grpc-error-details/lib/proto/google/rpc/status.js';

const encodeErrorDetails = (
  errorDetailsModule as unknown as {
    encodeErrorDetails: (details: readonly ErrorDetails[]) => Any[];
  }
).encodeErrorDetails;

/** Receives every finished RPC: method path, gRPC status name (what the client sees) and duration. */
export type RpcObserver = (method: string, code: string, seconds: number) => void;

/**
 * The one server middleware around every RPC (one async-generator layer per call, not one per concern: each
 * layer costs every unary call a generator and its promises). ServerErrors and aborts pass through (logged at
 * info), RichServerError details go into the `grpc-status-details-bin` trailer (as nice-grpc-error-details'
 * server middleware does), anything else is a bug: logged with its stack at error and answered INTERNAL with a
 * fixed text (nice-grpc would send UNKNOWN). `observe` (the metrics) sees each call's final code and duration.
 */
export function rpcMiddleware(log: Logger, observe?: RpcObserver) {
  return async function* rpc<Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext,
  ) {
    const started = performance.now();
    const method = call.method.path;
    try {
      const result = yield* call.next(call.request, context);
      if (observe !== undefined) observe(method, 'OK', (performance.now() - started) / 1000);
      if (!call.requestStream && !call.responseStream && log.isLevelEnabled('debug')) {
        log.debug({ method, code: 'OK', ms: Math.round(performance.now() - started) }, 'rpc');
      }
      return result;
    } catch (e) {
      const failure = describeFailure(e, log, method, performance.now() - started);
      if (failure.statusDetails !== undefined)
        context.trailer.set(STATUS_DETAILS_TRAILER, failure.statusDetails);
      observe?.(method, failure.code, (performance.now() - started) / 1000);
      throw failure.error;
    }
  };
}

/** How a failed call is answered, as {@link describeFailure} classified (and logged) it. */
export interface CallFailure {
  /** gRPC status name the client sees (for metrics). */
  readonly code: string;
  /** What the call ends with: the ServerError itself, the abort, or INTERNAL with a fixed text for a bug. */
  readonly error: unknown;
  /** google.rpc.Status carrying a RichServerError's details, for the `grpc-status-details-bin` trailer. */
  readonly statusDetails?: Uint8Array;
}

/**
 * Classifies and logs an error that ended a call: ServerErrors and aborts at info, anything else (a bug) with
 * its stack at error, answered INTERNAL without its text. Shared by {@link rpcMiddleware} and the agent stream
 * (served below nice-grpc), so both answer and log alike.
 */
export function describeFailure(e: unknown, log: Logger, method: string, ms: number): CallFailure {
  if (e instanceof ServerError) {
    const code = Status[e.code];
    log.info({ method, code, detail: e.details, ms: Math.round(ms) }, 'rpc failed');
    return e instanceof RichServerError
      ? { code, error: e, statusDetails: encodeStatusDetails(e) }
      : { code, error: e };
  }
  if (isAbortError(e)) {
    log.info({ method, code: 'CANCELLED', ms: Math.round(ms) }, 'rpc cancelled by caller');
    return { code: 'CANCELLED', error: e };
  }
  log.error({ method, err: e, ms: Math.round(ms) }, 'rpc failed: internal error');
  return {
    code: 'INTERNAL',
    error: new ServerError(Status.INTERNAL, 'internal error (logged on the server)'),
  };
}

/** Trailer carrying google.rpc.Status with error details (the gRPC richer error model). */
export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';

function encodeStatusDetails(error: RichServerError): Uint8Array {
  return RpcStatus.encode(
    RpcStatus.fromPartial({
      code: error.code,
      message: error.details,
      details: encodeErrorDetails(error.extra),
    }),
  ).finish();
}
