import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { Metadata } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { setupTracing, type Tracing } from '../../src/server/tracing.js';
import { startTestServer } from '../helpers/server.js';
import { ensureBuilt, startAgentChild } from '../helpers/processes.js';

// One trace from the client through the server to a prfleet-agent process: the server (this process) exports to
// memory, the agent (a child running the built binary) over OTLP/HTTP to a collector in this process.

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: { key: string; value: Record<string, unknown> }[];
}

let tracing: Tracing;
const exporter = new InMemorySpanExporter();
const agentSpans: OtlpSpan[] = [];
const agentServices: string[] = [];
const collector = createHttpServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      resourceSpans: {
        resource: { attributes: { key: string; value: { stringValue?: string } }[] };
        scopeSpans: { spans: OtlpSpan[] }[];
      }[];
    };
    for (const resource of body.resourceSpans) {
      const service = resource.resource.attributes.find((a) => a.key === 'service.name');
      agentServices.push(service?.value.stringValue ?? '');
      for (const scope of resource.scopeSpans) agentSpans.push(...scope.spans);
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});

beforeAll(async () => {
  await ensureBuilt();
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  tracing = setupTracing({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
});
afterAll(async () => {
  await tracing.shutdown();
  await new Promise<void>((resolve) => collector.close(() => resolve()));
});

describe('a trace from the client through the server to the agent', () => {
  it('continues the client RPC’s trace in the agent’s span for the command it ran', async () => {
    const { address, client, server } = await startTestServer({
      deps: { middlewares: [tracing.middleware] },
    });
    const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    startAgentChild({
      address,
      agentId: 'host-a',
      host: 'host-a',
      // Spans leave the agent within 100 ms (the batch processor's delay), not 5 s.
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: '100' },
    });
    await expect
      .poll(() => server.agents.get('host-a')?.paths.length, { timeout: 20_000 })
      .toBeGreaterThan(0);
    const path = server.agents.get('host-a')?.paths[0]?.path ?? '';

    // The caller's own trace (W3C traceparent), as an instrumented client would send it.
    const callerTraceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const { result } = await client.readKeys(
      { target: { agentId: 'host-a', path } },
      { metadata: Metadata({ traceparent: `00-${callerTraceId}-00f067aa0ba902b7-01` }) },
    );
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);

    const rpc = exporter.getFinishedSpans().find((s) => s.name.endsWith('/ReadKeys'));
    expect(rpc?.spanContext().traceId).toBe(callerTraceId);
    await expect
      .poll(() => agentSpans.find((s) => s.name === 'prfleet.agent PRIN READ KEYS'), {
        timeout: 10_000,
      })
      .toBeDefined();
    const span = agentSpans.find((s) => s.name === 'prfleet.agent PRIN READ KEYS');
    expect(span?.traceId).toBe(callerTraceId);
    expect(span?.parentSpanId).toBe(rpc?.spanContext().spanId);
    expect(agentServices).toContain('prfleet-agent');
    const attribute = (key: string) => span?.attributes.find((a) => a.key === key)?.value;
    expect(attribute('prfleet.agent_id')).toEqual({ stringValue: 'host-a' });
    expect(attribute('prfleet.outcome')).toEqual({ stringValue: 'OUTCOME_GOOD' });
    expect(attribute('prfleet.command_id')).toEqual({ stringValue: result?.commandId });
  });
});
