/**
 * Who may see the web view: the same bearer tokens as the gRPC API (any role: viewer, operator, admin), from an
 * `Authorization: Bearer` header or from the cookie the login form sets (HttpOnly, SameSite=Strict, Secure over
 * TLS). Anonymous only on a plaintext server without tokens (the loopback demo). The view has no write action;
 * the login POST, the one request that changes anything (the browser's cookie), must come from the view's own
 * origin.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { verifyToken, type Principal, type TokenStore } from '../auth/tokens.js';
import { cookieOf, TOKEN_COOKIE } from '../http/cookies.js';

/** Longest login form body read (a token is ~60 characters). */
export const MAX_LOGIN_BODY = 4096;

/** How the view authenticates. */
export interface WebAuthOptions {
  /** Client tokens; undefined = the server runs without tokens. */
  readonly tokens?: TokenStore | undefined;
  /**
   * The server speaks plaintext (no TLS): only then may a server without tokens show the view to anyone.
   * @default judged per request: not over TLS
   */
  readonly plaintext?: boolean | undefined;
  /** Clock for token expiry. @default () => new Date() */
  readonly now?: () => Date;
}

/** The verdict on one request. */
export type WebAccess =
  | { readonly kind: 'allowed'; readonly principal: Principal | undefined }
  /** No token or a bad one: show the login form. */
  | { readonly kind: 'login'; readonly reason: string }
  /** The server cannot authenticate anyone (TLS without tokens), or the token store failed. */
  | { readonly kind: 'refused'; readonly status: number; readonly reason: string };

/** True when the request came over TLS. */
export function isTls(req: IncomingMessage): boolean {
  return (req.socket as Partial<TLSSocket>).encrypted === true;
}

/** The token a request presents: the Authorization header first, else the cookie. */
export function presentedToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    return match?.[1];
  }
  const cookie = cookieOf(req, TOKEN_COOKIE);
  return cookie === undefined || cookie === '' ? undefined : cookie;
}

/** Decides whether `req` may see the view. Never throws. */
export async function checkAccess(
  req: IncomingMessage,
  options: WebAuthOptions,
): Promise<WebAccess> {
  if (options.tokens === undefined) {
    return (options.plaintext ?? !isTls(req))
      ? { kind: 'allowed', principal: undefined }
      : {
          kind: 'refused',
          status: 403,
          reason:
            'the web view needs client tokens (PRFLEET_TOKENS_FILE or PRFLEET_TOKENS=database): a TLS server without them shows it to nobody',
        };
  }
  const token = presentedToken(req);
  if (token === undefined) return { kind: 'login', reason: '' };
  return checkToken(token, options);
}

/** Checks one token (the login form's, or a presented one). Never throws. */
export async function checkToken(token: string, options: WebAuthOptions): Promise<WebAccess> {
  if (options.tokens === undefined) return { kind: 'allowed', principal: undefined };
  try {
    const principal = await verifyToken(options.tokens, token, options.now?.() ?? new Date());
    // Every role may look: viewer is the least.
    return principal === undefined
      ? { kind: 'login', reason: 'invalid, expired or revoked token' }
      : { kind: 'allowed', principal };
  } catch {
    return {
      kind: 'refused',
      status: 503,
      reason: 'cannot check the token right now (token store unavailable); retry later',
    };
  }
}

/** The Set-Cookie value that keeps `token` for this browser session ('' clears it). */
export function tokenCookie(token: string, secure: boolean): string {
  const attributes = ['Path=/', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])];
  if (token === '') attributes.push('Max-Age=0');
  return [`${TOKEN_COOKIE}=${token}`, ...attributes].join('; ');
}

/**
 * True when a state-changing request (the login and logout POSTs) comes from the view's own page: its Origin
 * header names this server as the browser reached it (scheme and Host). A missing Origin is refused: every
 * browser sends it on a POST, and a non-browser client has no use for these forms.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (origin === undefined || host === undefined) return false;
  if (req.headers['sec-fetch-site'] === 'cross-site') return false;
  return origin === `${isTls(req) ? 'https' : 'http'}://${host}`;
}

/** Reads a urlencoded login body (at most MAX_LOGIN_BODY bytes) and returns its `token` field. */
export async function readLoginToken(req: IncomingMessage): Promise<string | undefined> {
  const type = req.headers['content-type'] ?? '';
  if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_LOGIN_BODY) return undefined;
    chunks.push(chunk);
  }
  const token = new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('token');
  return token === null ? undefined : token.trim();
}
