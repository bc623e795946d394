import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { TracingOptions } from './tracing-config.js';

// The SDK and the exporter load only when tracing is configured (the server and the agent import this module on
// demand: it is ~130 ms of a ~600 ms cold start); the settings live in tracing-config.ts (no OpenTelemetry
// import at all), the log mixin and the command trace-context helpers in command-trace.ts (the API only).

/** A tracer provider registered for this process. */
export interface TracerSetup {
  /** The provider (registered globally: `trace.getTracer()` anywhere in the process reaches it). */
  readonly provider: NodeTracerProvider;
  /** Exports what is buffered and stops exporting (call at shutdown; tracing cannot be set up again). */
  shutdown(): Promise<void>;
}

let setUp = false;

/**
 * Registers an OpenTelemetry tracer provider for this process (AsyncLocalStorage context, W3C trace context
 * propagation), exporting to `otlpEndpoint` and/or `exporter`; throws when called a second time in one process
 * (instrumentation that binds its tracer at import would never see a second provider's spans).
 */
export function setupTracerProvider(options: TracingOptions = {}): TracerSetup {
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
    provider,
    async shutdown() {
      await provider.shutdown();
    },
  };
}
