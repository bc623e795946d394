import * as z from '../../common/zod-mini.js';
import { nonEmpty } from '../env-schema.js';
import type { Status } from 'nice-grpc-common';
import { ServerError } from 'nice-grpc-common';
import { ErrorInfo, RichServerError } from 'nice-grpc-error-details';
import { Command } from '../../gen/prfleet/v1/agent.js';
import { CommandResult } from '../../gen/prfleet/v1/scsi.js';

/**
 * Messages between server instances over Redis pub/sub (JSON; protobuf payloads base64). Each instance
 * subscribes to its own inbox channel; `from` is the sender's instance id, where replies go.
 */
export type RelayMessage =
  | {
      kind: 'request';
      id: string;
      from: string;
      agentId: string;
      command: Command;
      timeoutMs: number;
      luId?: string;
      /** The principal the command runs for (DispatchOptions.actor), for the holder's log lines. */
      actor?: string;
    }
  | { kind: 'cancel'; id: string; from: string }
  | { kind: 'result'; id: string; result: CommandResult }
  | {
      kind: 'error';
      id: string;
      code: Status;
      details: string;
      reason?: string;
      domain?: string;
      metadata?: Record<string, string>;
    }
  | { kind: 'evict'; agentId: string; by: string };

const Wire = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('request'),
    id: nonEmpty(),
    from: nonEmpty(),
    agentId: nonEmpty(),
    command: z.string(),
    timeoutMs: z.int().check(z.minimum(0)),
    luId: z.optional(z.string()),
    actor: z.optional(z.string()),
  }),
  z.object({ kind: z.literal('cancel'), id: nonEmpty(), from: nonEmpty() }),
  z.object({ kind: z.literal('result'), id: nonEmpty(), result: z.string() }),
  z.object({
    kind: z.literal('error'),
    id: nonEmpty(),
    code: z.int().check(z.minimum(0), z.maximum(16)),
    details: z.string(),
    reason: z.optional(z.string()),
    domain: z.optional(z.string()),
    metadata: z.optional(z.record(z.string(), z.string())),
  }),
  z.object({ kind: z.literal('evict'), agentId: nonEmpty(), by: nonEmpty() }),
]);

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

/** Serialises a relay message for PUBLISH. */
export function encodeRelayMessage(message: RelayMessage): string {
  switch (message.kind) {
    case 'request':
      return JSON.stringify({ ...message, command: b64(Command.encode(message.command).finish()) });
    case 'result':
      return JSON.stringify({
        ...message,
        result: b64(CommandResult.encode(message.result).finish()),
      });
    case 'cancel':
    case 'error':
    case 'evict':
      return JSON.stringify(message);
  }
}

/** Parses a PUBLISHed relay message; throws an Error saying what is wrong (the caller logs and drops it). */
export function decodeRelayMessage(text: string): RelayMessage {
  const parsed = Wire.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`malformed relay message\n${z.prettifyError(parsed.error)}`);
  const m = parsed.data;
  switch (m.kind) {
    case 'request': {
      const { luId, actor, ...rest } = m;
      return {
        ...rest,
        command: Command.decode(Buffer.from(m.command, 'base64')),
        ...(luId === undefined ? {} : { luId }),
        ...(actor === undefined ? {} : { actor }),
      };
    }
    case 'result':
      return { ...m, result: CommandResult.decode(Buffer.from(m.result, 'base64')) };
    case 'error': {
      const { reason, domain, metadata, ...rest } = m;
      return {
        ...rest,
        code: m.code as Status,
        ...(reason === undefined ? {} : { reason }),
        ...(domain === undefined ? {} : { domain }),
        ...(metadata === undefined ? {} : { metadata }),
      };
    }
    case 'cancel':
    case 'evict':
      return m;
  }
}

/** Turns a dispatch error on the owning instance into an `error` message (ErrorInfo kept); undefined if not a ServerError. */
export function errorMessageOf(
  id: string,
  error: unknown,
): Extract<RelayMessage, { kind: 'error' }> | undefined {
  if (!(error instanceof ServerError)) return undefined;
  const info =
    error instanceof RichServerError
      ? (error.extra.find((d) => d.$type === ErrorInfo.$type) as ErrorInfo | undefined)
      : undefined;
  return {
    kind: 'error',
    id,
    code: error.code,
    details: error.details,
    ...(info === undefined
      ? {}
      : { reason: info.reason, domain: info.domain, metadata: info.metadata }),
  };
}

/** Rebuilds the ServerError (RichServerError with ErrorInfo when it had one) on the calling instance. */
export function errorFromMessage(message: Extract<RelayMessage, { kind: 'error' }>): ServerError {
  if (message.reason === undefined) return new ServerError(message.code, message.details);
  return new RichServerError(message.code, message.details, [
    ErrorInfo.fromPartial({
      reason: message.reason,
      domain: message.domain ?? '',
      metadata: message.metadata ?? {},
    }),
  ]);
}
