import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import type { Command } from '../gen/prfleet/v1/agent.js';
import { Outcome, type CommandResult } from '../gen/prfleet/v1/scsi.js';
import { describeCommand } from './command.js';

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

/** The tracer named `name` from the registered provider (callers need not import the API themselves). */
export function getTracer(name: string, version: string): Tracer {
  return trace.getTracer(name, version);
}

/** W3C Trace Context carried by a Command (agent.proto `traceparent`, `tracestate`). */
export interface CommandTraceContext {
  readonly traceparent: string;
  readonly tracestate: string;
}

const UNTRACED: CommandTraceContext = { traceparent: '', tracestate: '' };

/**
 * The trace context of the active span, for a command about to leave this process (server → agent, or to the
 * instance holding the agent). Empty strings when nothing is traced: without a span no propagator runs, so an
 * untraced server pays one context lookup per command.
 */
export function activeTraceContext(): CommandTraceContext {
  if (trace.getActiveSpan() === undefined) return UNTRACED;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return { traceparent: carrier['traceparent'] ?? '', tracestate: carrier['tracestate'] ?? '' };
}

/** Outcomes that end a command span in error: the device was not reached or did not answer. */
const FAILED = new Set([
  Outcome.OUTCOME_TRANSPORT_ERROR,
  Outcome.OUTCOME_TIMEOUT,
  Outcome.OUTCOME_OS_ERROR,
  Outcome.OUTCOME_UNKNOWN,
  Outcome.OUTCOME_REFUSED,
]);

/**
 * Runs `execute` (the agent executing `command`) in a span that continues the trace the command carries; the
 * span records what the device answered. A RESERVATION CONFLICT or CHECK CONDITION is an answer, not a span
 * error; a transport error, timeout, refusal or UNKNOWN is. Commands without `traceparent` run as they are.
 */
export function inCommandSpan(
  tracer: Tracer,
  command: Command,
  agentId: string,
  execute: () => Promise<CommandResult>,
): Promise<CommandResult> {
  if (command.traceparent === '') return execute();
  const parent = propagation.extract(ROOT_CONTEXT, {
    traceparent: command.traceparent,
    tracestate: command.tracestate,
  });
  return tracer.startActiveSpan(
    `prfleet.agent ${describeCommand(command)}`,
    {
      kind: SpanKind.SERVER,
      attributes: {
        'prfleet.agent_id': agentId,
        'prfleet.command_id': command.commandId,
        'prfleet.path': command.path,
        ...(command.idempotencyKey === ''
          ? {}
          : { 'prfleet.idempotency_key': command.idempotencyKey }),
      },
    },
    parent,
    async (span) => {
      try {
        const result = await execute();
        span.setAttributes({
          'prfleet.outcome': Outcome[result.outcome] ?? String(result.outcome),
          'scsi.status': result.status,
          ...(result.sense === undefined
            ? {}
            : {
                'scsi.sense_key': result.sense.senseKey,
                'scsi.asc': result.sense.asc,
                'scsi.ascq': result.sense.ascq,
              }),
        });
        if (FAILED.has(result.outcome))
          span.setStatus({ code: SpanStatusCode.ERROR, message: result.message });
        return result;
      } catch (e) {
        span.recordException(e instanceof Error ? e : String(e));
        span.setStatus({ code: SpanStatusCode.ERROR, message: String(e) });
        throw e;
      } finally {
        span.end();
      }
    },
  );
}
