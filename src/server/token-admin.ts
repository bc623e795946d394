import type { Logger } from 'pino';
import { ServerError, Status, type CallContext } from 'nice-grpc-common';
import { durationToMs } from '../common/command.js';
import {
  ErrorReason,
  failedPrecondition,
  invalidArgument,
  notFound,
  shownInput,
} from '../common/errors.js';
import {
  TokenRole,
  type CreateTokenRequest,
  type CreateTokenResponse,
  type ListTokensResponse,
  type RevokeTokenRequest,
  type RevokeTokenResponse,
  type TokenInfo,
} from '../gen/prfleet/v1/control.js';
import { principalOf as authPrincipalOf } from './auth/middleware.js';
import type { Role } from './auth/roles.js';
import {
  createToken,
  MAX_TOKEN_LIFETIME_DAYS,
  TOKEN_ID_PATTERN,
  TOKEN_NAME_PATTERN,
  type TokenRecord,
  type TokenStore,
} from './auth/tokens.js';
import { MAX_REASON_LENGTH, type PrincipalOf } from './history.js';

const TOKEN_ROLE_OF: Readonly<Record<Role, TokenRole>> = {
  viewer: TokenRole.TOKEN_ROLE_VIEWER,
  operator: TokenRole.TOKEN_ROLE_OPERATOR,
  admin: TokenRole.TOKEN_ROLE_ADMIN,
};
const ROLE_OF: ReadonlyMap<TokenRole, Role> = new Map(
  Object.entries(TOKEN_ROLE_OF).map(([role, tokenRole]) => [tokenRole, role as Role]),
);

const MAX_LIFETIME_MS = MAX_TOKEN_LIFETIME_DAYS * 24 * 3_600_000;

/** A stored token as the API shows it (no salt, no hash). */
export function tokenInfoOf(record: TokenRecord): TokenInfo {
  return {
    id: record.id,
    name: record.name,
    role: TOKEN_ROLE_OF[record.role],
    createdAt: new Date(record.createdAt),
    expiresAt: record.expiresAt === undefined ? undefined : new Date(record.expiresAt),
    revokedAt: record.revokedAt === undefined ? undefined : new Date(record.revokedAt),
  };
}

/** ErrorInfo.reason when the server has no token store an RPC could change. */
export const TOKENS_NOT_MANAGED = ErrorReason.TOKENS_NOT_MANAGED;

/**
 * ControlService CreateToken / ListTokens / RevokeToken over the server's token store (the database's
 * `auth_tokens`, or the token file), so tokens change while the server runs, also with the embedded PGlite
 * store whose directory the `prfleet-tokens` tool cannot open then. Admin only (roles.ts). Without a token
 * store every call is FAILED_PRECONDITION {TOKENS_NOT_MANAGED}.
 */
export function createTokenAdmin(deps: {
  readonly tokens: TokenStore | undefined;
  readonly principalOf: PrincipalOf;
  readonly log: Logger;
}) {
  const store = (ctx: CallContext): TokenStore => {
    if (deps.tokens !== undefined) {
      // The auth middleware already asked for admin (roles.ts); a server wired without it must not mint tokens.
      if (authPrincipalOf(ctx)?.role !== 'admin') {
        throw new ServerError(
          Status.PERMISSION_DENIED,
          'token administration needs an admin token (authorization: Bearer prf_…)',
        );
      }
      return deps.tokens;
    }
    throw failedPrecondition(TOKENS_NOT_MANAGED, {
      type: 'TOKENS',
      subject: 'auth_tokens',
      description:
        'this server takes no client tokens (PRFLEET_TOKENS=off, or plaintext without a token store): there are none to manage',
    });
  };
  return {
    async createToken(request: CreateTokenRequest, ctx: CallContext): Promise<CreateTokenResponse> {
      const tokens = store(ctx);
      const role = ROLE_OF.get(request.role);
      if (role === undefined) throw invalidArgument('role', 'viewer, operator or admin');
      if (!TOKEN_NAME_PATTERN.test(request.name))
        throw invalidArgument('name', '1-64 printable ASCII characters, not starting with a space');
      let expiresInMs: number | undefined;
      if (request.expiresIn !== undefined) {
        expiresInMs = durationToMs(request.expiresIn);
        if (!(expiresInMs > 0 && expiresInMs <= MAX_LIFETIME_MS))
          throw invalidArgument('expires_in', 'more than 0 and at most 10 years');
      }
      const { token, record } = await createToken(tokens, {
        name: request.name,
        role,
        ...(expiresInMs === undefined ? {} : { expiresInMs }),
      });
      deps.log.info(
        { by: deps.principalOf(ctx), tokenId: record.id, name: record.name, role },
        'token created',
      );
      return { token, info: tokenInfoOf(record) };
    },
    async listTokens(ctx: CallContext): Promise<ListTokensResponse> {
      return { tokens: (await store(ctx).list()).map(tokenInfoOf) };
    },
    async revokeToken(request: RevokeTokenRequest, ctx: CallContext): Promise<RevokeTokenResponse> {
      const tokens = store(ctx);
      if (!TOKEN_ID_PATTERN.test(request.id))
        throw invalidArgument('id', 'the 12 hex digits of the token id (prf_<id>_…)');
      if (request.reason.trim() === '' || request.reason.length > MAX_REASON_LENGTH)
        throw invalidArgument('reason', `required, at most ${MAX_REASON_LENGTH} characters`);
      const record = (await tokens.revoke(request.id)) ? await tokens.find(request.id) : undefined;
      if (record === undefined)
        throw notFound('token', request.id, `no token with id ${shownInput(request.id)}`);
      deps.log.info(
        { by: deps.principalOf(ctx), tokenId: request.id, reason: request.reason },
        'token revoked',
      );
      return { info: tokenInfoOf(record) };
    },
  };
}
