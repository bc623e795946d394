import type { ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  composeServerMiddleware,
  ServerError,
  Status,
  type ServerMiddleware,
} from 'nice-grpc-common';
import type { AgentRegistry } from '../agents/index.js';
import {
  createAuthMiddleware,
  createStoreBoundAuth,
  refuseAgentCertificates,
  refuseRevokedPeers,
  serverCredentials,
  watchRevocationList,
  type AuthCallContextExt,
  type RevokedCertificates,
  type SecurityConfig,
  type StoreBoundAuth,
} from '../auth/index.js';

/** Who may call what, built from the security settings (docs/security.md). */
export interface ClientSecurity {
  /** Client tokens bound to the store once it is open; undefined without client tokens. */
  readonly auth: StoreBoundAuth | undefined;
  /** What guards ControlService and FleetService (revoked certificates, then tokens or client certificates). */
  readonly controlMiddleware: ServerMiddleware<AuthCallContextExt> | undefined;
  /** The watched revocation list (PRFLEET_TLS_REVOKED_FILE); undefined without one. */
  readonly revoked: RevokedCertificates | undefined;
  /** TLS with agent identity, or plaintext when explicitly asked for; undefined for in-process callers. */
  readonly credentials: ServerCredentials | undefined;
}

/** Builds the client-facing guards and the listener's credentials from `security`. */
export function buildClientSecurity(
  security: SecurityConfig | undefined,
  log: Logger,
): ClientSecurity {
  const auth =
    security?.tokenSource === undefined
      ? undefined
      : createStoreBoundAuth({
          tokenSource: security.tokenSource,
          ...(security.tokensFile === undefined ? {} : { tokensFile: security.tokensFile }),
          log,
        });
  const tokenMiddleware =
    auth === undefined
      ? undefined
      : createAuthMiddleware({
          tokens: auth.tokens,
          isOperatorKeyAllowed: auth.isOperatorKeyAllowed,
          log,
        });
  const revoked =
    security?.revokedFile === undefined
      ? undefined
      : watchRevocationList(security.revokedFile, {
          log,
          ...(security.revocationPollMs === undefined ? {} : { pollMs: security.revocationPollMs }),
        });
  // A revoked certificate calls nothing: with tokens its holder is refused before the token check, without them
  // (TLS alone) this is the only check the client-facing services make.
  const refuseRevoked = revoked === undefined ? undefined : refuseRevokedPeers(log);
  // TLS without tokens: the certificate is the only credential, and an agent's must not reach the client side.
  const certificateOnly =
    security?.credentials.tls !== undefined && tokenMiddleware === undefined
      ? refuseAgentCertificates(log)
      : undefined;
  const guards = [refuseRevoked, certificateOnly ?? tokenMiddleware].filter(
    (m): m is ServerMiddleware => m !== undefined,
  );
  const controlMiddleware = guards.reduce<ServerMiddleware | undefined>(
    (composed, next) => (composed === undefined ? next : composeServerMiddleware(composed, next)),
    undefined,
  );
  const credentials =
    security === undefined
      ? undefined
      : serverCredentials({
          ...security.credentials,
          ...(revoked === undefined ? {} : { revoked }),
        });
  return { auth, controlMiddleware, revoked, credentials };
}

/** Ends the stream of every agent whose certificate a change of the revocation list revokes. */
export function endRevokedAgentStreams(
  agents: AgentRegistry,
  revoked: RevokedCertificates,
  log: Logger,
): void {
  revoked.onChange(() => {
    for (const session of agents.sessions()) {
      if (session.certificate === undefined || !revoked.has(session.certificate)) continue;
      log.warn(
        { agentId: session.agentId, certificate: session.certificate.fingerprint256 },
        'agent certificate revoked: ending its stream',
      );
      agents.close(
        session,
        'agent certificate revoked',
        new ServerError(
          Status.UNAUTHENTICATED,
          `the agent certificate (SHA-256 ${session.certificate.fingerprint256}) was revoked`,
        ),
      );
    }
  });
}
