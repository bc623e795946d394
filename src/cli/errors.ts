/**
 * Turns RPC errors into what an operator needs: the status, the server's words, the field or resource at fault
 * (from the rich error details), what to do next, and the exit code.
 */
import { ClientError, Status } from 'nice-grpc-common';
import { BadRequest, ErrorInfo, ResourceInfo, RichClientError } from 'nice-grpc-error-details';
import { isAbortError } from 'abort-controller-x';
import type { Target } from '../gen/prfleet/v1/control.js';
import { ConnectionConfigError, type TransportContext } from './connection.js';
import { exitCodeForStatus, ExitCode } from './exit-codes.js';
import { stringifyJson } from './json.js';
import { terminalSafe } from './render.js';

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
  /** TLS and token in use, for the hints of connection and authentication errors. */
  readonly transport?: TransportContext;
}

/**
 * The CLI's one error format (every command): `prfleet: CODE (field f): message` and `→ hint` on stderr, and with
 * `-o json` also `{"error": …}` on stdout. Text from the server is {@link terminalSafe}.
 */
export function writeError(
  io: { readonly stdout: (text: string) => void; readonly stderr: (text: string) => void },
  output: string,
  error: DescribedError,
): void {
  if (output === 'json') io.stdout(`${stringifyJson({ error })}\n`);
  const field = error.field ? ` (field ${error.field})` : '';
  io.stderr(terminalSafe(`prfleet: ${error.code}${field}: ${error.message}\n→ ${error.hint}\n`));
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
  if (error instanceof ConnectionConfigError) {
    return {
      code: 'USAGE',
      message: error.message,
      hint: 'fix the connection flag or file named above (`prfleet --help` lists --server, --plaintext, --tls, --ca, --tls-cert, --tls-key, --token, --token-file and their PRFLEET_* variables); nothing was sent',
      exitCode: ExitCode.USAGE,
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
  const tlsHint =
    error.code === Status.UNAVAILABLE ? tlsFailureHint(error.details, context) : undefined;
  if (tlsHint !== undefined) {
    return {
      code: 'UNAVAILABLE',
      message: `TLS handshake with ${context.server} failed: ${connectionError(error.details)}`,
      hint: tlsHint,
      exitCode: ExitCode.TLS_FAILED,
    };
  }
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
        const tlsMismatch =
          context.transport !== undefined &&
          !/ECONNREFUSED|EHOSTUNREACH|ENOTFOUND|ETIMEDOUT/i.test(error.details)
            ? context.transport.tls
              ? ' If it is up, the TLS handshake may have been refused: a server requiring client certificates needs --tls-cert and --tls-key'
              : ' If it is up and serves TLS, drop --plaintext (and give --ca)'
            : '';
        return `cannot reach the prfleet server at ${context.server}: is it running? Set --server or PRFLEET_SERVER.${tlsMismatch}`;
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
      if (details.info?.reason === 'UNSUPPORTED_BY_DEVICE') {
        return "nothing was sent: this device cannot do that; `prfleet devices -o json` shows each LU's profile and capabilities";
      }
      // Other preconditions are the server's (no durable store for history or fleet operations, …): its
      // message names the fix.
      return 'nothing was sent: the server cannot do this as configured (see the message above)';
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
    case Status.UNAUTHENTICATED:
      if (context.transport?.tokenSource === undefined) {
        return 'the server wants a bearer token: pass --token-file <file> (or set PRFLEET_TOKEN / PRFLEET_TOKEN_FILE); an admin creates one with `prfleet-tokens create --role viewer|operator|admin --name <you>`';
      }
      return `the server refused the token from ${context.transport.tokenSource} (unknown, expired or revoked; the server does not say which): check it with \`prfleet-tokens list\` or ask an admin for a new one`;
    case Status.PERMISSION_DENIED:
      return 'the token is valid but may not do this: the message names the role or the key registry owner needed; ask an admin for a token of that role, or for a key allocated to you (`prfleet registry allocate --agent <host> --site <site> --owner <you>`); nothing was sent';
    case Status.RESOURCE_EXHAUSTED:
      return `agent ${agentId ?? ''} has too many commands queued; nothing was sent: retry shortly`.replace(
        '  ',
        ' ',
      );
    default:
      return 'server-side failure; see the prfleet-server log';
  }
}

/** grpc-js's "No connection established. Last error: X. Resolution note: …" reduced to X. */
function connectionError(details: string): string {
  const match =
    /Last error: (?:Error(?: \[[A-Z_0-9]+\])?: )?([\s\S]*?)(?:\s*\(\d{4}-\d\d-\d\dT[^)]*\))?\.?\s*(?:Resolution note:[\s\S]*)?$/.exec(
      details,
    );
  const text = (match?.[1] ?? details).trim();
  // OpenSSL's "80BC…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/…" → the reason.
  const openssl = /error:[0-9A-F]+:SSL routines:[^:]*:([^:]+)/.exec(text);
  return openssl?.[1] ?? text;
}

/**
 * The hint for a failed TLS handshake, or undefined when `details` is not one. The exit code is then
 * {@link ExitCode.TLS_FAILED}: retrying does not help until the certificates or flags change.
 */
function tlsFailureHint(details: string, context: ErrorContext): string | undefined {
  const trust = context.transport?.caSource ?? 'the system roots (no --ca given)';
  if (
    /self[- ]signed certificate|unable to verify the first certificate|unable to get local issuer certificate|certificate verify failed|CERT_UNTRUSTED/i.test(
      details,
    )
  ) {
    return `the server's certificate is not signed by a CA you trust (${trust}): pass the fleet CA that signed it with --ca (ca.crt from \`prfleet-certs init\`) or PRFLEET_TLS_CA; nothing was sent`;
  }
  if (
    /ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames|altnames/i.test(details)
  ) {
    return `the server's certificate does not name the host you dialled: use a --server name it carries (prfleet-certs issue-server --host), or --tls-server-name <name>; nothing was sent`;
  }
  if (/certificate has expired|CERT_HAS_EXPIRED|certificate is not yet valid/i.test(details)) {
    return "the server's certificate is outside its validity period: the server needs a new certificate (`prfleet-certs issue-server`); nothing was sent";
  }
  if (/wrong version number|packet length too long|http request|unknown protocol/i.test(details)) {
    return 'the server does not speak TLS on this port: if it runs with PRFLEET_PLAINTEXT=true (loopback, tests), pass --plaintext; nothing was sent';
  }
  if (
    /certificate required|alert bad certificate|alert unknown ca|alert certificate unknown|alert handshake failure|tlsv1 alert|tlsv13 alert/i.test(
      details,
    )
  ) {
    return context.transport?.clientCert === true
      ? 'the server refused your client certificate (not signed by its CA, expired, or not for client authentication); nothing was sent'
      : 'the server requires a client certificate signed by its CA (PRFLEET_CLIENT_CERTS=require): pass --tls-cert and --tls-key, or use a port that accepts tokens; nothing was sent';
  }
  return undefined;
}

/** True when grpc-js failed to connect at all (as opposed to the server answering UNAVAILABLE). */
function isConnectionFailure(details: string): boolean {
  return /No connection established|ECONNREFUSED|EHOSTUNREACH|ENOTFOUND|failed to connect|Connection dropped/i.test(
    details,
  );
}
