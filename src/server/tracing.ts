import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-node';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { ServerMiddleware } from 'nice-grpc-common';
import { openTelemetryServerMiddleware } from 'nice-grpc-opentelemetry';
import { z } from 'zod';

/** Options for {@link setupTracing}. */
export interface TracingOptions {
  /** service.name of the spans. @default 'prfleet-server' */
  readonly serviceName?: string;
  /** service.version. @default none */
  readonly serviceVersion?: string;
  /** service.instance.id (the server instance id). @default none */
  readonly instanceId?: string;
  /** OTLP/HTTP base URL (`http://collector:4318`); spans go to `<url>/v1/traces`, batched. @default none */
  readonly otlpEndpoint?: string;
  /** Another exporter (tests: InMemorySpanExporter). @default none */
  readonly exporter?: SpanExporter;
  /** Span processors to use as they are (tests: SimpleSpanProcessor for synchronous export). @default none */
  readonly spanProcessors?: readonly SpanProcessor[];
  /** Fraction of root traces sampled, 0..1 (child spans follow their parent's decision). @default 1 */
  readonly sampleRatio?: number;
}

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
      ...(options.serviceVersion === undefined ? {} : { [ATTR_SERVICE_VERSION]: options.serviceVersion }),
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

/**
 * pino `mixin`: adds `traceId` and `spanId` of the active span to every log line written inside an RPC (and
 * nothing outside one), so logs and traces join up. `pino({ mixin: traceLogMixin })`.
 */
export function traceLogMixin(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const { traceId, spanId, traceFlags } = span.spanContext();
  return { traceId, spanId, traceSampled: (traceFlags & 1) === 1 ? 'true' : 'false' };
}

const TracingEnv = z.object({
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default('prfleet-server'),
  PRFLEET_TRACE_SAMPLE_RATIO: z.coerce.number().min(0).max(1).default(1),
});

/** Tracing settings from the standard OTEL_* variables (+ PRFLEET_TRACE_SAMPLE_RATIO); undefined = tracing off. */
export function loadTracingConfig(env: NodeJS.ProcessEnv = process.env): TracingOptions | undefined {
  const parsed = TracingEnv.safeParse(env);
  if (!parsed.success) throw new Error(`invalid tracing environment\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  if (e.OTEL_EXPORTER_OTLP_ENDPOINT === undefined) return undefined;
  return { otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: e.OTEL_SERVICE_NAME, sampleRatio: e.PRFLEET_TRACE_SAMPLE_RATIO };
}
