import type { SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-node';
import * as z from './zod-mini.js';

/** Options for setupTracerProvider (src/common/tracing.ts) and the server's setupTracing. */
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

const TracingEnv = z.object({
  OTEL_EXPORTER_OTLP_ENDPOINT: z.optional(z.url()),
  OTEL_SERVICE_NAME: z._default(z.string().check(z.minLength(1)), 'prfleet-server'),
  // Empty is unset; blank text is no ratio (coerced, it read as 0: nothing sampled).
  PRFLEET_TRACE_SAMPLE_RATIO: z.pipe(
    z.transform((v: unknown) => (v === undefined || v === '' ? '1' : v)),
    z.pipe(
      z.string().check(z.regex(/^(\d+(\.\d*)?|\.\d+)$/, 'expected a number from 0 to 1')),
      z.pipe(z.transform(Number), z.number().check(z.minimum(0), z.maximum(1))),
    ),
  ),
});

/**
 * Tracing settings from the standard OTEL_* variables (+ PRFLEET_TRACE_SAMPLE_RATIO); undefined = tracing off.
 * `serviceName` is the default of OTEL_SERVICE_NAME (prfleet-server, prfleet-agent).
 */
export function loadTracingConfig(
  env: NodeJS.ProcessEnv = process.env,
  serviceName = 'prfleet-server',
): TracingOptions | undefined {
  const parsed = TracingEnv.safeParse({ OTEL_SERVICE_NAME: serviceName, ...env });
  if (!parsed.success)
    throw new Error(`invalid tracing environment\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  if (e.OTEL_EXPORTER_OTLP_ENDPOINT === undefined) return undefined;
  return {
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
    serviceName: e.OTEL_SERVICE_NAME,
    sampleRatio: e.PRFLEET_TRACE_SAMPLE_RATIO,
  };
}
