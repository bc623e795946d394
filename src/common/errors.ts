import { ClientError, ServerError, Status } from 'nice-grpc-common';
import {
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  ResourceInfo,
  RichClientError,
  RichServerError,
} from 'nice-grpc-error-details';
import { UNPRINTABLE } from './printable.js';

/** ErrorInfo.domain of every prfleet error. */
export const ERROR_DOMAIN = 'prfleet.v1';

/** ErrorInfo.reason values the server sends (stable: clients branch on them). */
export const ErrorReason = {
  /** The agent has no open stream; nothing was sent, retry is safe. */
  AGENT_OFFLINE: 'AGENT_OFFLINE',
  /** The agent's outbox is full; nothing was sent. */
  AGENT_BUSY: 'AGENT_BUSY',
  /** The server is draining (SIGTERM); nothing was sent, retry (on another instance) is safe. */
  SERVER_DRAINING: 'SERVER_DRAINING',
  /** No connected agent has an online path to the logical unit. */
  NO_ONLINE_PATH: 'NO_ONLINE_PATH',
  /** The device's profile lacks the service action, type or bit. */
  UNSUPPORTED_BY_DEVICE: 'UNSUPPORTED_BY_DEVICE',
  /** A PROUT precondition (generation, holder) did not hold. */
  PRECONDITION_MISMATCH: 'PRECONDITION_MISMATCH',
  /** The server takes no client tokens, so CreateToken/ListTokens/RevokeToken have nothing to manage. */
  TOKENS_NOT_MANAGED: 'TOKENS_NOT_MANAGED',
  /** The caller holds its share of sessions or commands in flight (fair share); nothing was sent. */
  PRINCIPAL_QUOTA: 'PRINCIPAL_QUOTA',
  /** A CommandSession request reuses the id of a command still in flight; nothing was sent. */
  DUPLICATE_REQUEST_ID: 'DUPLICATE_REQUEST_ID',
  /** The store could not record the command, so nothing was sent (retry is safe). */
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
} as const;

/** One of {@link ErrorReason}. */
export type ErrorReasonValue = (typeof ErrorReason)[keyof typeof ErrorReason];

/** Longest prefix of caller input quoted in an error (characters). */
export const QUOTED_INPUT_MAX = 64;

/**
 * Caller input as an error may quote it: at most `max` characters, JSON-escaped (control characters too) and in
 * quotes, with "… (N bytes)" when cut, so that no request can make an error (and the trailers carrying it) long.
 */
export function quoteInput(value: string, max = QUOTED_INPUT_MAX): string {
  let cut = value.length > max ? value.slice(0, max) : value;
  if (/[\ud800-\udbff]$/.test(cut) && cut.length < value.length) cut = cut.slice(0, -1);
  const quoted = JSON.stringify(cut).replace(
    UNPRINTABLE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return cut.length < value.length ? `${quoted}… (${Buffer.byteLength(value)} bytes)` : quoted;
}

/** Caller input as a name in an error: as it is when short and plain, else {@link quoteInput}. */
export function shownInput(value: string, max = QUOTED_INPUT_MAX): string {
  return value.length <= max && value.search(UNPRINTABLE) < 0 && !/^\s|\s$|"/.test(value)
    ? value
    : quoteInput(value, max);
}

/** INVALID_ARGUMENT with a BadRequest naming `field` (proto field path, e.g. `target.agent_id`). */
export function invalidArgument(field: string, description: string): RichServerError {
  return new RichServerError(Status.INVALID_ARGUMENT, `${field}: ${description}`, [
    BadRequest.fromPartial({ fieldViolations: [{ field, description }] }),
  ]);
}

/**
 * NOT_FOUND with a ResourceInfo (`resourceType` 'agent' | 'logical unit' | 'path'); the name is what the caller
 * sent, shown through {@link shownInput} (the description must use it too).
 */
export function notFound(
  resourceType: string,
  resourceName: string,
  description: string,
): RichServerError {
  return new RichServerError(Status.NOT_FOUND, description, [
    ResourceInfo.fromPartial({ resourceType, resourceName: shownInput(resourceName), description }),
  ]);
}

/** FAILED_PRECONDITION with a PreconditionFailure and an ErrorInfo carrying `reason`. */
export function failedPrecondition(
  reason: ErrorReasonValue,
  violation: { type: string; subject: string; description: string },
): RichServerError {
  return new RichServerError(Status.FAILED_PRECONDITION, violation.description, [
    ErrorInfo.fromPartial({
      reason,
      domain: ERROR_DOMAIN,
      metadata: { subject: violation.subject },
    }),
    PreconditionFailure.fromPartial({ violations: [violation] }),
  ]);
}

/** UNAVAILABLE (nothing sent; retry is safe) with an ErrorInfo `reason`. */
export function unavailable(
  reason: ErrorReasonValue,
  message: string,
  metadata: Record<string, string> = {},
): RichServerError {
  return new RichServerError(Status.UNAVAILABLE, message, [
    ErrorInfo.fromPartial({ reason, domain: ERROR_DOMAIN, metadata }),
  ]);
}

/** RESOURCE_EXHAUSTED (nothing sent) with an ErrorInfo `reason`, e.g. AGENT_BUSY. */
export function resourceExhausted(
  reason: ErrorReasonValue,
  message: string,
  metadata: Record<string, string> = {},
): RichServerError {
  return new RichServerError(Status.RESOURCE_EXHAUSTED, message, [
    ErrorInfo.fromPartial({ reason, domain: ERROR_DOMAIN, metadata }),
  ]);
}

/** What a caller needs from an RPC error, flattened from ServerError/ClientError and their rich details. */
export interface RpcErrorSummary {
  /** gRPC status code. */
  readonly code: Status;
  /** Status name, e.g. 'NOT_FOUND'. */
  readonly codeName: string;
  /** The status message. */
  readonly message: string;
  /** BadRequest field, for INVALID_ARGUMENT. */
  readonly field?: string;
  /** ErrorInfo reason, e.g. 'AGENT_BUSY'. */
  readonly reason?: string;
  /** ResourceInfo resource name, for NOT_FOUND. */
  readonly resource?: string;
}

/**
 * Summarises a ServerError/RichServerError (server side) or ClientError/RichClientError (client side); returns
 * undefined for anything else (a bug, an AbortError).
 */
export function summarizeRpcError(error: unknown): RpcErrorSummary | undefined {
  if (!(error instanceof ServerError) && !(error instanceof ClientError)) return undefined;
  const extra =
    error instanceof RichServerError || error instanceof RichClientError ? error.extra : [];
  let field: string | undefined;
  let reason: string | undefined;
  let resource: string | undefined;
  for (const detail of extra) {
    if (detail.$type === BadRequest.$type) field ??= detail.fieldViolations[0]?.field;
    else if (detail.$type === ErrorInfo.$type) reason ??= detail.reason;
    else if (detail.$type === ResourceInfo.$type) resource ??= detail.resourceName;
  }
  return {
    code: error.code,
    codeName: Status[error.code],
    message: error.details,
    ...(field === undefined ? {} : { field }),
    ...(reason === undefined ? {} : { reason }),
    ...(resource === undefined ? {} : { resource }),
  };
}
