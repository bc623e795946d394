import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import {
  createChannel,
  createClient,
  createServer,
  Metadata,
  ServerError,
  Status,
} from 'nice-grpc';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import {
  ControlServiceDefinition,
  type ControlServiceImplementation,
} from '../../src/gen/prfleet/v1/control.js';
import {
  loadTracingConfig,
  setupTracing,
  traceLogMixin,
  type Tracing,
} from '../../src/server/tracing.js';

// One tracer provider per process (nice-grpc-opentelemetry binds its tracer at import): every test shares it,
// exporting both to memory (synchronously) and over OTLP/HTTP to a collector on 127.0.0.1:0.
let tracing: Tracing;
const exporter = new InMemorySpanExporter();
const received: { url: string; bytes: number }[] = [];
const collector = createHttpServer((request, response) => {
  let bytes = 0;
  request.on('data', (chunk: Buffer) => (bytes += chunk.length));
  request.on('end', () => {
    received.push({ url: request.url ?? '', bytes });
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
beforeAll(async () => {
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  tracing = setupTracing({
    ...loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
    instanceId: 'i-1',
  });
});
afterAll(async () => {
  await tracing.shutdown();
  await new Promise<void>((resolve) => collector.close(() => resolve()));
});
beforeEach(() => {
  exporter.reset();
});

/** A pino logger with the trace mixin writing JSON lines into `lines`. */
function capturingLogger(lines: Record<string, unknown>[]) {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n'))
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return pino({ mixin: traceLogMixin }, destination);
}

/** ControlService whose ListAgents logs one line; every other method (new RPCs included) is UNIMPLEMENTED. */
function loggingService(log: ReturnType<typeof capturingLogger>): ControlServiceImplementation {
  const unimplemented = () =>
    Promise.reject(new ServerError(Status.UNIMPLEMENTED, 'not in this test'));
  const methods: Record<string, unknown> = Object.fromEntries(
    Object.keys(ControlServiceDefinition.methods).map((key) => [key, unimplemented]),
  );
  methods['listAgents'] = async () => {
    await new Promise((r) => setTimeout(r, 5)); // the context must survive an await
    log.info({ agents: 0 }, 'listing agents');
    return { agents: [] };
  };
  return methods as unknown as ControlServiceImplementation;
}

async function serve(t: Tracing, log: ReturnType<typeof capturingLogger>) {
  const server = createServer().use(t.middleware);
  server.add(ControlServiceDefinition, loggingService(log));
  const port = await server.listen('127.0.0.1:0');
  const channel = createChannel(`127.0.0.1:${port}`);
  onTestFinished(async () => {
    channel.close();
    await server.shutdown();
  });
  return createClient(ControlServiceDefinition, channel);
}

describe('tracing', () => {
  it('makes one span per RPC and puts its trace id into the log lines written inside it', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = capturingLogger(lines);
    const client = await serve(tracing, log);
    await client.listAgents({});
    log.info('outside any RPC');
    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual(['prfleet.v1.ControlService/ListAgents']);
    const span = spans[0];
    expect(span?.resource.attributes).toMatchObject({
      'service.name': 'prfleet-server',
      'service.instance.id': 'i-1',
    });
    const inside = lines.find((l) => l['msg'] === 'listing agents');
    expect(inside).toMatchObject({
      traceId: span?.spanContext().traceId,
      spanId: span?.spanContext().spanId,
      traceSampled: 'true',
    });
    expect(lines.find((l) => l['msg'] === 'outside any RPC')).not.toHaveProperty('traceId');
  });

  it('continues the caller’s trace from a W3C traceparent header', async () => {
    const client = await serve(tracing, capturingLogger([]));
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentSpanId = '00f067aa0ba902b7';
    await client.listAgents(
      {},
      { metadata: Metadata({ traceparent: `00-${traceId}-${parentSpanId}-01` }) },
    );
    const span = exporter.getFinishedSpans()[0];
    expect(span?.spanContext().traceId).toBe(traceId);
    expect(span?.parentSpanContext?.spanId).toBe(parentSpanId);
  });

  it('records the status code of a failed RPC on its span', async () => {
    const client = await serve(tracing, capturingLogger([]));
    await expect(client.getDevice({ luId: 'x' })).rejects.toMatchObject({
      code: Status.UNIMPLEMENTED,
    });
    expect(exporter.getFinishedSpans()[0]?.attributes['rpc.grpc.status_code']).toBe(
      Status.UNIMPLEMENTED,
    );
  });

  it('exports spans over OTLP/HTTP to a collector', async () => {
    const client = await serve(tracing, capturingLogger([]));
    await client.listAgents({});
    await tracing.provider.forceFlush();
    expect(received.length).toBeGreaterThanOrEqual(1);
    expect(received[0]?.url).toBe('/v1/traces');
    expect(received[0]?.bytes).toBeGreaterThan(0);
  });

  it('refuses to be set up twice in one process', () => {
    expect(() => setupTracing({})).toThrow('tracing is already set up in this process');
  });

  it('is off without OTEL_EXPORTER_OTLP_ENDPOINT and names a bad variable', () => {
    expect(loadTracingConfig({})).toBeUndefined();
    expect(
      loadTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
        PRFLEET_TRACE_SAMPLE_RATIO: '0.1',
      }),
    ).toEqual({
      otlpEndpoint: 'http://c:4318',
      serviceName: 'prfleet-server',
      sampleRatio: 0.1,
    });
    expect(() =>
      loadTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c',
        PRFLEET_TRACE_SAMPLE_RATIO: '2',
      }),
    ).toThrow(/PRFLEET_TRACE_SAMPLE_RATIO/);
  });
});
