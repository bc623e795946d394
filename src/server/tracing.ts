import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-node';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { ServerMiddleware } from 'nice-grpc-common';
import { openTelemetryServerMiddleware } from 'nice-grpc-opentelemetry';
import type { TracingOptions } from './tracing-config.js';

// The SDK, the exporter and the gRPC instrumentation load only when tracing is configured (main.ts imports this
// module on demand: it is ~130 ms of a ~600 ms cold start); the settings and the log mixin live in tracing-config.
export { loadTracingConfig, traceLogMixin, type TracingOptions } from './tracing-config.js';

/** Tracing that is set up: the middleware to attach and how to flush and stop it. */
export interface Tracing {
  /** nice-grpc server middleware creating one span per RPC (W3C traceparent from the client is honoured). */
  readonly middleware: ServerMiddleware;
  /** The provider (registered globally). */
  readonly provider: NodeTracerProvider;
  /** Exports what is buffered and stops exporting (call at shutdown; tracing cannot be set up again). */
  shutdown(): Promise<void>;
}

let setUp = false;

/**
 * Registers an OpenTelemetry tracer provider for this process (AsyncLocalStorage context, W3C trace context
 * propagation) and returns the nice-grpc middleware; throws when called a second time in one process. Attach the
 * middleware after the metrics middleware and before the error middleware (grpc-ts-notes §2.2). Spans are exported to `otlpEndpoint` and/or `exporter`.
 */
export function setupTracing(options: TracingOptions = {}): Tracing {
  // nice-grpc-opentelemetry takes its tracer from the global provider when it is imported, so a second provider
  // would never see its spans: one setup per process.
  if (setUp) throw new Error('tracing is already set up in this process (setupTracing runs once)');
  const processors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  if (options.exporter !== undefined) processors.push(new BatchSpanProcessor(options.exporter));
  if (options.otlpEndpoint !== undefined) {
    const url = `${options.otlpEndpoint.replace(/\/+$/, '')}/v1/traces`;
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url })));
  }
  const ratio = options.sampleRatio ?? 1;
  if (!(ratio >= 0 && ratio <= 1)) throw new Error(`invalid trace sample ratio: ${ratio} (0..1)`);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: options.serviceName ?? 'prfleet-server',
      ...(options.serviceVersion === undefined
        ? {}
        : { [ATTR_SERVICE_VERSION]: options.serviceVersion }),
      ...(options.instanceId === undefined ? {} : { 'service.instance.id': options.instanceId }),
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
    spanProcessors: processors,
  });
  provider.register();
  setUp = true;
  return {
    middleware: openTelemetryServerMiddleware(),
    provider,
    async shutdown() {
      await provider.shutdown();
    },
  };
}
