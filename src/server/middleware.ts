import type { Logger } from 'pino';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type CallContext, type ServerMiddlewareCall } from 'nice-grpc-common';

/**
 * The one error middleware: ServerErrors and aborts pass through (logged at debug/info), anything else is a
 * bug: logged with its stack at error and answered INTERNAL with a fixed text (nice-grpc would send UNKNOWN).
 */
export function errorLoggingMiddleware(log: Logger) {
  return async function* errorLogging<Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext,
  ) {
    const started = performance.now();
    const method = call.method.path;
    try {
      const result = yield* call.next(call.request, context);
      if (!call.requestStream && !call.responseStream) {
        log.debug({ method, code: 'OK', ms: Math.round(performance.now() - started) }, 'rpc');
      }
      return result;
    } catch (e) {
      const ms = Math.round(performance.now() - started);
      if (e instanceof ServerError) {
        log.info({ method, code: Status[e.code], detail: e.details, ms }, 'rpc failed');
        throw e;
      }
      if (isAbortError(e)) {
        log.info({ method, code: 'CANCELLED', ms }, 'rpc cancelled by caller');
        throw e;
      }
      log.error({ method, err: e, ms }, 'rpc failed: internal error');
      throw new ServerError(Status.INTERNAL, 'internal error (logged on the server)');
    }
  };
}
