/**
 * Turns RPC errors into what an operator needs: the status, the server's words, the field or resource at fault
 * (from the rich error details), what to do next, and the exit code.
 */
import { ClientError, Status } from 'nice-grpc-common';
import { BadRequest, ErrorInfo, ResourceInfo, RichClientError } from 'nice-grpc-error-details';
import { isAbortError } from 'abort-controller-x';
import type { Target } from '../gen/prfleet/v1/control.js';
import { exitCodeForStatus, ExitCode } from './exit-codes.js';

/** An RPC error described for the operator. */
export interface DescribedError {
  /** Status name, e.g. "UNAVAILABLE". */
  readonly code: string;
  /** What the server (or the channel) said. */
  readonly message: string;
  /** What to do next. */
  readonly hint: string;
  /** The request field at fault (INVALID_ARGUMENT). */
  readonly field?: string;
  /** ErrorInfo reason, e.g. "AGENT_OFFLINE". */
  readonly reason?: string;
  /** Process exit code. */
  readonly exitCode: number;
}

/** What the CLI was doing when the error came, for the hint. */
export interface ErrorContext {
  /** Server address dialled. */
  readonly server: string;
  /** Target of the command, when it had one. */
  readonly target?: Target;
  /** How long the CLI waited for the answer (the RPC deadline), in milliseconds. */
  readonly deadlineMs?: number;
}

/** Describes any error thrown by a ControlService call; non-RPC errors become "internal" with exit code 85. */
export function describeRpcError(error: unknown, context: ErrorContext): DescribedError {
  if (isAbortError(error)) {
    return {
      code: 'CANCELLED',
      message: 'the call was cancelled',
      hint: 'the command may still have run: re-read the LU with `prfleet keys` / `prfleet reservation`',
      exitCode: ExitCode.RPC_DEADLINE_EXCEEDED,
    };
  }
  if (!(error instanceof ClientError)) {
    const message = error instanceof Error ? error.message : String(error);
    return {
      code: 'CLIENT',
      message,
      hint: 'this is a bug in prfleet; please report it',
      exitCode: ExitCode.RPC_OTHER,
    };
  }
  const extra = error instanceof RichClientError ? error.extra : [];
  const info = extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
  const badRequest = extra.find((d): d is BadRequest => d.$type === BadRequest.$type);
  const resource = extra.find((d): d is ResourceInfo => d.$type === ResourceInfo.$type);
  const field = badRequest?.fieldViolations[0]?.field;
  const base = {
    code: Status[error.code] ?? `status ${error.code}`,
    message: error.details,
    exitCode: exitCodeForStatus(error.code),
    ...(field !== undefined && field !== '' ? { field } : {}),
    ...(info?.reason ? { reason: info.reason } : {}),
  };
  return { ...base, hint: hintFor(error, context, { info, resource, field }) };
}

function hintFor(
  error: ClientError,
  context: ErrorContext,
  details: {
    info: ErrorInfo | undefined;
    resource: ResourceInfo | undefined;
    field: string | undefined;
  },
): string {
  const agentId =
    details.info?.metadata['agent_id'] ??
    details.info?.metadata['agentId'] ??
    context.target?.agentId;
  switch (error.code) {
    case Status.UNAVAILABLE:
      if (isConnectionFailure(error.details)) {
        return `cannot reach the prfleet server at ${context.server}: is it running? Set --server or PRFLEET_SERVER`;
      }
      if (/drain/i.test(error.details) || details.info?.reason === 'SERVER_DRAINING') {
        return 'the server is shutting down; nothing was sent, so retrying (against another instance) is safe';
      }
      if (agentId)
        return `agent ${agentId} is offline; check \`prfleet agents\` (nothing was sent; retry is safe)`;
      return 'nothing was sent; retry is safe once the server and the agent are back (`prfleet agents`)';
    case Status.NOT_FOUND: {
      const what = details.resource
        ? `${details.resource.resourceType} ${details.resource.resourceName}`
        : 'it';
      return `${what} is not known to the server: \`prfleet devices\` lists LU ids and agent:path targets`;
    }
    case Status.FAILED_PRECONDITION:
      if (details.info?.reason === 'PRECONDITION_MISMATCH') {
        return 'nothing was sent: the LU changed since you looked; re-read it (`prfleet keys`, `prfleet reservation`) and decide again';
      }
      return "nothing was sent: this device cannot do that; `prfleet devices -o json` shows each LU's profile and capabilities";
    case Status.INVALID_ARGUMENT:
      return details.field
        ? `fix ${details.field} and try again (nothing was sent)`
        : 'fix the request (nothing was sent)';
    case Status.DEADLINE_EXCEEDED:
    case Status.CANCELLED: {
      const waited =
        context.deadlineMs !== undefined ? ` within ${context.deadlineMs / 1000}s` : ' in time';
      return `no answer${waited} (raise --deadline/--timeout, or check \`prfleet agents\`); the command may still have run on the device: re-read with \`prfleet keys\` / \`prfleet reservation\` before retrying`;
    }
    case Status.RESOURCE_EXHAUSTED:
      return `agent ${agentId ?? ''} has too many commands queued; nothing was sent: retry shortly`.replace(
        '  ',
        ' ',
      );
    default:
      return 'server-side failure; see the prfleet-server log';
  }
}

/** True when grpc-js failed to connect at all (as opposed to the server answering UNAVAILABLE). */
function isConnectionFailure(details: string): boolean {
  return /No connection established|ECONNREFUSED|EHOSTUNREACH|ENOTFOUND|failed to connect|Connection dropped/i.test(
    details,
  );
}
