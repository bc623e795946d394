import type { Logger } from 'pino';
import {
  ServerError,
  Status,
  type CallContext,
  type ServerMiddleware,
  type ServerMiddlewareCall,
} from 'nice-grpc-common';
import { BadRequest, RichServerError } from 'nice-grpc-error-details';
import { formatKey } from '../../scsi/keys.js';
import type { CommandSessionRequest } from '../../gen/prfleet/v1/control.js';
import {
  METHOD_ROLES,
  REASON_FIELDS,
  SESSION_COMMAND_METHODS,
  roleForMethod,
  roleSatisfies,
  type Role,
} from './roles.js';
import { verifyToken, type Principal, type TokenStore } from './tokens.js';

/** What the auth middleware adds to the call context of every ControlService handler. */
export interface AuthCallContextExt {
  /** The authenticated caller. */
  readonly principal: Principal;
  /**
   * The checks the middleware ran (role table, key registry hook), for handlers that check more per message:
   * CommandSession passes them to {@link authorizeSessionCommand}.
   */
  readonly authorization?: AuthorizeOptions;
}

/** How an operator means to use a key: take or keep something with it, or give it up. */
export interface OperatorKeyUse {
  /** The RPC (or the unary RPC a CommandSession command stands for): Register, Reserve, Release. */
  readonly method: string;
  /**
   * `acquire`: register it as the new key, or reserve with it. `relinquish`: the current key of a REGISTER
   * that unregisters or replaces it, or the key of a RELEASE (a revoked key may still be cleaned up).
   */
  readonly purpose: 'acquire' | 'relinquish';
}

/** The key registry's answer: true to allow; false, or a refusal whose reason is the PERMISSION_DENIED message. */
export type OperatorKeyVerdict = boolean | { readonly allowed: false; readonly reason: string };

/**
 * Decides whether an operator may act with a reservation key (the key registry's answer). Admins are not asked.
 * Return false (or a refusal naming why) to refuse with PERMISSION_DENIED.
 */
export type OperatorKeyCheck = (
  principal: Principal,
  key: bigint,
  use: OperatorKeyUse,
) => OperatorKeyVerdict | Promise<OperatorKeyVerdict>;

/** Per-request checks shared by the middleware (unary RPCs) and the CommandSession handler (each command). */
export interface AuthorizeOptions {
  /** Method → role; missing methods need admin. @default METHOD_ROLES (ControlService + FleetService) */
  readonly methodRoles?: Readonly<Partial<Record<string, Role>>>;
  /** The key registry hook for operators. @default every key allowed */
  readonly isOperatorKeyAllowed?: OperatorKeyCheck;
  /**
   * For commands on a stream opened earlier: is the caller's token still valid (not revoked or expired since)?
   * Set by the middleware per call; the token store's cache makes it cheap. @default always
   */
  readonly tokenStillValid?: () => Promise<boolean>;
}

/** Options for {@link createAuthMiddleware}. */
export interface AuthMiddlewareOptions extends AuthorizeOptions {
  /** Where token hashes are looked up. */
  readonly tokens: TokenStore;
  /** Logs refusals at info (a refusal is news, not a bug). @default no logging */
  readonly log?: Logger;
  /** Clock for token expiry. @default () => new Date() */
  readonly now?: () => Date;
}

/** Metadata key carrying `Bearer <token>`. */
export const AUTHORIZATION_HEADER = 'authorization';

/** The checks the auth middleware ran on this call (pass them to {@link authorizeSessionCommand}); {} without auth. */
export function authorizeOptionsOf(ctx: CallContext): AuthorizeOptions {
  return (ctx as CallContext & Partial<AuthCallContextExt>).authorization ?? {};
}

/** The principal the auth middleware put into `ctx`, or undefined when the server runs without auth. */
export function principalOf(ctx: CallContext): Principal | undefined {
  return (ctx as CallContext & Partial<AuthCallContextExt>).principal;
}

/** Log fields naming a caller: `{ principal: 'alice', role: 'operator', tokenId }`. */
export function principalLogFields(principal: Principal | undefined): Record<string, string> {
  if (principal === undefined) return {};
  return { principal: principal.name, role: principal.role, tokenId: principal.tokenId };
}

/** Returns the bearer token of the call, or undefined when there is none or the header is malformed. */
export function bearerTokenOf(ctx: Pick<CallContext, 'metadata'>): string | undefined {
  const header = ctx.metadata.get(AUTHORIZATION_HEADER);
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

interface KeyedRequest {
  key?: bigint;
  newKey?: bigint;
  ignoreExistingKey?: boolean;
  reason?: string;
  options?: { reason?: string } | undefined;
}

/** Keys an operator acts with in `methodName` (those the key registry must grant), and how each is used. */
function operatorKeysOf(
  methodName: string,
  request: KeyedRequest,
): { key: bigint; use: OperatorKeyUse }[] {
  const acquire = { method: methodName, purpose: 'acquire' } as const;
  const relinquish = { method: methodName, purpose: 'relinquish' } as const;
  switch (methodName) {
    case 'Register': {
      const keys: { key: bigint; use: OperatorKeyUse }[] = [];
      if (request.newKey !== undefined && request.newKey !== 0n)
        keys.push({ key: request.newKey, use: acquire });
      if (!request.ignoreExistingKey && request.key !== undefined && request.key !== 0n) {
        keys.push({ key: request.key, use: relinquish });
      }
      return keys;
    }
    case 'Reserve':
      return request.key === undefined ? [] : [{ key: request.key, use: acquire }];
    case 'Release':
      return request.key === undefined ? [] : [{ key: request.key, use: relinquish }];
    default:
      return [];
  }
}

/**
 * Checks that `principal` may call `methodName` with `request`: role (PERMISSION_DENIED), the reason on
 * destructive methods (INVALID_ARGUMENT naming `options.reason`, or `reason` for RevokeKey), and for operators the key registry hook
 * (PERMISSION_DENIED). Throws ServerError / RichServerError; resolves when allowed.
 */
export async function authorizeRequest(
  principal: Principal,
  methodName: string,
  request: unknown,
  options: AuthorizeOptions = {},
): Promise<void> {
  const needed = roleForMethod(methodName, options.methodRoles ?? METHOD_ROLES);
  if (!roleSatisfies(principal.role, needed)) {
    throw new ServerError(
      Status.PERMISSION_DENIED,
      `${methodName} needs role ${needed}; ${principal.name} has ${principal.role}`,
    );
  }
  const keyed = (request ?? {}) as KeyedRequest;
  const reasonField = REASON_FIELDS[methodName];
  const reason = reasonField === 'reason' ? keyed.reason : keyed.options?.reason;
  if (reasonField !== undefined && (reason ?? '').trim() === '') {
    const description = `${methodName} is destructive: say why in ${reasonField} (it goes into the history)`;
    throw new RichServerError(Status.INVALID_ARGUMENT, `${reasonField}: ${description}`, [
      BadRequest.fromPartial({ fieldViolations: [{ field: reasonField, description }] }),
    ]);
  }
  if (principal.role === 'operator' && options.isOperatorKeyAllowed !== undefined) {
    if (methodName === 'Register' && keyed.ignoreExistingKey === true) {
      // REGISTER AND IGNORE EXISTING KEY replaces whatever key the nexus holds (someone else's, even the
      // reservation holder's) without naming it, so the key registry cannot vouch for what is given up.
      throw new ServerError(
        Status.PERMISSION_DENIED,
        `${principal.name} may not REGISTER AND IGNORE EXISTING KEY: it replaces a key the key registry cannot check; name the current key instead (key, 0 when the nexus is not registered), or ask an admin`,
      );
    }
    for (const { key, use } of operatorKeysOf(methodName, keyed)) {
      let verdict: OperatorKeyVerdict;
      try {
        verdict = await options.isOperatorKeyAllowed(principal, key, use);
      } catch (error) {
        // The registry could not answer (database down): refuse, and say a retry may work. Nothing was sent.
        throw new ServerError(
          Status.UNAVAILABLE,
          `cannot check who owns key ${formatKey(key)} right now (key registry unavailable: ${(error as Error).message}); nothing was sent, retry later`,
        );
      }
      if (verdict === true) continue;
      throw new ServerError(
        Status.PERMISSION_DENIED,
        verdict === false
          ? `${principal.name} may not use key ${formatKey(key)}: the key registry does not assign it to them`
          : verdict.reason,
      );
    }
  }
}

/**
 * The check a CommandSession handler runs per command (a unary call's checks, same table, same key registry
 * hook: pass `authorizeOptionsOf(ctx)`). Throws like {@link authorizeRequest}; the handler turns the error into
 * a SessionError and keeps the session open.
 */
export async function authorizeSessionCommand(
  principal: Principal,
  command: NonNullable<CommandSessionRequest['command']>,
  options: AuthorizeOptions = {},
): Promise<void> {
  if (options.tokenStillValid !== undefined && !(await options.tokenStillValid())) {
    throw new ServerError(
      Status.UNAUTHENTICATED,
      'the token this session was opened with has been revoked or has expired: nothing sent; open a new session with a valid token',
    );
  }
  await authorizeRequest(principal, SESSION_COMMAND_METHODS[command.$case], command.value, options);
}

/**
 * nice-grpc server middleware for ControlService and FleetService: reads `authorization: Bearer prf_…`, verifies it against
 * the token store, checks the role table and destructive-operation reasons, and passes `principal` on in the
 * call context. Missing/invalid token → UNAUTHENTICATED; wrong role or key → PERMISSION_DENIED; no reason →
 * INVALID_ARGUMENT. Attach it to those two services only (agents authenticate with certificates, health probes
 * with nothing): `server.with(auth).add(ControlServiceDefinition, impl)`, same for FleetServiceDefinition.
 */
export function createAuthMiddleware(
  options: AuthMiddlewareOptions,
): ServerMiddleware<AuthCallContextExt> {
  const now = options.now ?? (() => new Date());
  return async function* authMiddleware<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthCallContextExt>,
    context: CallContext,
  ): AsyncGenerator<Response, Response | void, undefined> {
    const methodName = call.method.path.slice(call.method.path.lastIndexOf('/') + 1);
    const token = bearerTokenOf(context);
    let principal: Principal | undefined;
    try {
      principal = token === undefined ? undefined : await verifyToken(options.tokens, token, now());
    } catch (error) {
      // The token store could not answer (database down, unreadable file): refuse, retryable, and log why.
      options.log?.error(
        { err: error, method: call.method.path },
        'token store unavailable: call refused',
      );
      throw new ServerError(
        Status.UNAVAILABLE,
        'cannot check the bearer token right now (token store unavailable); retry later',
      );
    }
    if (principal === undefined) {
      options.log?.info(
        { method: call.method.path, peer: context.peer, hasToken: token !== undefined },
        'unauthenticated call refused',
      );
      throw new ServerError(
        Status.UNAUTHENTICATED,
        token === undefined
          ? 'missing bearer token (metadata authorization: Bearer prf_…)'
          : 'invalid, expired or revoked token',
      );
    }
    try {
      // Streams are checked per message by their handler (authorizeSessionCommand); here only the method role.
      await authorizeRequest(
        principal,
        methodName,
        call.requestStream ? undefined : call.request,
        options,
      );
    } catch (error) {
      if (error instanceof ServerError) {
        options.log?.info(
          {
            method: call.method.path,
            peer: context.peer,
            ...principalLogFields(principal),
            code: Status[error.code],
            details: error.details,
          },
          'call refused',
        );
      }
      throw error;
    }
    const authorization: AuthorizeOptions = {
      ...(options.methodRoles === undefined ? {} : { methodRoles: options.methodRoles }),
      ...(options.isOperatorKeyAllowed === undefined
        ? {}
        : { isOperatorKeyAllowed: options.isOperatorKeyAllowed }),
      // Streams outlive a revocation: their per-message checks ask again (token is defined: principal is).
      ...(call.requestStream && token !== undefined
        ? {
            tokenStillValid: async () =>
              (await verifyToken(options.tokens, token, now())) !== undefined,
          }
        : {}),
    };
    return yield* call.next(call.request, { ...context, principal, authorization });
  };
}
