import type { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { ServerMiddleware } from 'nice-grpc-common';
import { openTelemetryServerMiddleware } from 'nice-grpc-opentelemetry';
import { setupTracerProvider } from '../common/tracing.js';
import type { TracingOptions } from '../common/tracing-config.js';

// The SDK and the gRPC instrumentation load only when tracing is configured (main.ts imports this module on
// demand); the settings live in src/common/tracing-config.ts, the log mixin and the command trace context in
// src/common/command-trace.ts (API only).
export { loadTracingConfig, type TracingOptions } from '../common/tracing-config.js';
export { traceLogMixin } from '../common/command-trace.js';

/** Tracing that is set up: the middleware to attach and how to flush and stop it. */
export interface Tracing {
  /** nice-grpc server middleware creating one span per RPC (W3C traceparent from the client is honoured). */
  readonly middleware: ServerMiddleware;
  /** The provider (registered globally). */
  readonly provider: NodeTracerProvider;
  /** Exports what is buffered and stops exporting (call at shutdown; tracing cannot be set up again). */
  shutdown(): Promise<void>;
}

/**
 * Registers an OpenTelemetry tracer provider for this process (src/common/tracing.ts) and returns the nice-grpc
 * middleware; throws when called a second time in one process. Attach the middleware after the metrics
 * middleware and before the error middleware (grpc-ts-notes §2.2). Commands sent to agents carry the RPC's trace
 * context (agent.proto `Command.traceparent`), so a tracing agent continues the trace.
 */
export function setupTracing(options: TracingOptions = {}): Tracing {
  // nice-grpc-opentelemetry takes its tracer from the global provider when it is imported, so a second provider
  // would never see its spans: one setup per process.
  const setup = setupTracerProvider(options);
  return {
    middleware: openTelemetryServerMiddleware(),
    provider: setup.provider,
    shutdown: () => setup.shutdown(),
  };
}
