import type { IncomingMessage, ServerResponse } from 'node:http';
import { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { ServerError, Status } from 'nice-grpc-common';
import type { Logger } from 'pino';
import { identityFromCertificate } from '../auth/mtls.js';
import { roleSatisfies, type Role } from '../auth/roles.js';
import { verifyToken, type Principal, type TokenStore } from '../auth/tokens.js';
import { createRouteTable, methodsOf, type RouteTable } from './route-table.js';
import { cookieOf, TOKEN_COOKIE } from './cookies.js';

/**
 * Who may reach a route: 'none' (anyone: health, metrics, the agent link, which authenticates agents itself), or
 * the least role a bearer token must hold (the same tokens and roles as ControlService).
 */
export type HttpRouteAuth = 'none' | Role;

/** What a handler gets besides the request and response. */
export interface HttpContext {
  /** The request URL (path and query), parsed. */
  readonly url: URL;
  /** For a `prefix` route: the path after the prefix ('' for the prefix itself). */
  readonly rest: string;
  /** The caller, when the route needs a role and tokens are configured; undefined otherwise. */
  readonly principal: Principal | undefined;
  /** Aborted when the client goes away, the route's timeout passes, or the server shuts down. */
  readonly signal: AbortSignal;
  /** Reads the whole request body (at most the route's maxBodyBytes, else 413). */
  body(): Promise<Buffer>;
  /** The server's logger. */
  readonly log: Logger;
}

/** One HTTP/1.1 route of the main port. */
export interface HttpRoute {
  /** Method(s) served, upper case ('GET' also answers HEAD). */
  readonly method: string | readonly string[];
  /** Exact path ('/healthz'), or … */
  readonly path?: string;
  /** … every path under a prefix ('/agent/v1/'); the longest matching prefix wins, an exact path first. */
  readonly prefix?: string;
  /** Who may call it. */
  readonly auth: HttpRouteAuth;
  /** Largest request body, bytes. @default 65536 */
  readonly maxBodyBytes?: number;
  /**
   * Longest the handler may take to end the response, ms: then 503 (or the connection closes when the response
   * has begun) and ctx.signal aborts; 0 = no limit (event streams). @default 30000
   */
  readonly timeoutMs?: number;
  /** Answers the request: must end `res` (or keep it open, with timeoutMs 0, and end it when ctx.signal aborts). */
  handler(req: IncomingMessage, res: ServerResponse, ctx: HttpContext): void | Promise<void>;
}

/** The route table of one server: routes are added before or after listen, by any module. */
export interface HttpRoutes {
  /** Adds a route; throws when one with the same method and path (or prefix) exists. Returns its removal. */
  register(route: HttpRoute): () => void;
  /** The node:http request handler the one-port listener uses. */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  /** Aborts every handler's signal (server shutdown): long polls and event streams end. */
  abortAll(reason: string): void;
}

/** Options of {@link createHttpRoutes}. */
export interface HttpRoutesOptions {
  /** Logger. */
  readonly log: Logger;
  /**
   * Client tokens: routes with a role need `Authorization: Bearer prf_…` (or the `prfleet_token` cookie on
   * GET/HEAD) with that role. Undefined: no tokens are configured and role routes are open, as the gRPC
   * services are (on TLS a verified client certificate that is not an agent's is then required, as on gRPC).
   */
  readonly tokens?: TokenStore | undefined;
  /** True when the server serves TLS (see `tokens`; known once it listens). @default never */
  readonly tls?: () => boolean;
}

/** Header on every answer of the server itself. */
export const ANSWERED_BY = 'prfleet-server';

const DEFAULT_MAX_BODY = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

/** An HTTP error a handler may throw: answered with `status` and `message` as text/plain. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** HTTP status for a gRPC status code (ServerErrors thrown by shared code, such as the agent Hello checks). */
export function httpStatusOf(code: Status): number {
  switch (code) {
    case Status.INVALID_ARGUMENT:
    case Status.FAILED_PRECONDITION:
    case Status.OUT_OF_RANGE:
      return 400;
    case Status.UNAUTHENTICATED:
      return 401;
    case Status.PERMISSION_DENIED:
      return 403;
    case Status.NOT_FOUND:
      return 404;
    case Status.ALREADY_EXISTS:
    case Status.ABORTED:
      return 409;
    case Status.RESOURCE_EXHAUSTED:
      return 429;
    case Status.UNAVAILABLE:
      return 503;
    case Status.DEADLINE_EXCEEDED:
      return 504;
    case Status.UNIMPLEMENTED:
      return 501;
    default:
      return 500;
  }
}

/** Sends a short text answer (unless the response has begun), with the gRPC status name when there is one. */
export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  grpcStatus?: Status,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${text}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(grpcStatus === undefined ? {} : { 'prfleet-status': Status[grpcStatus] }),
  });
  res.end(body);
}

function bearerOf(req: IncomingMessage, allowCookie: boolean): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) return /^Bearer[ ]+(\S+)\s*$/i.exec(header)?.[1];
  if (!allowCookie) return undefined;
  // Tokens need no percent-encoding (the view sets the cookie raw): the value is taken as it is, and one that is
  // not a token is a bad token (401), whatever bytes it holds.
  return cookieOf(req, TOKEN_COOKIE);
}

/** Reads a body of at most `limit` bytes (413 beyond, before reading more). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit)
    return Promise.reject(new HttpError(413, `request body over ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new HttpError(413, `request body over ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('aborted', () => reject(new HttpError(400, 'request aborted')));
  });
}

/** The principal for a role route; throws HttpError 401/403 (or 503 when the token store fails). */
async function authorize(
  req: IncomingMessage,
  needed: Role,
  options: HttpRoutesOptions,
): Promise<Principal | undefined> {
  if (options.tokens === undefined) {
    if (options.tls?.() === true) requireClientCertificate(req);
    return undefined;
  }
  const readOnly = req.method === 'GET' || req.method === 'HEAD';
  // A cookie rides along with any request a browser makes: accepted only where nothing can change (CSRF).
  const token = bearerOf(req, readOnly);
  let principal: Principal | undefined;
  try {
    principal =
      token === undefined ? undefined : await verifyToken(options.tokens, token, new Date());
  } catch (error) {
    options.log.error(
      { err: error, path: req.url },
      'token store unavailable: HTTP request refused',
    );
    throw new HttpError(
      503,
      'cannot check the bearer token right now (token store unavailable); retry later',
    );
  }
  if (principal === undefined) {
    throw new HttpError(
      401,
      token === undefined
        ? 'missing bearer token (Authorization: Bearer prf_…)'
        : 'invalid, expired or revoked token',
    );
  }
  if (!roleSatisfies(principal.role, needed))
    throw new HttpError(
      403,
      `this needs the ${needed} role; token ${principal.tokenId} is ${principal.role}`,
    );
  return principal;
}

/**
 * Why a request target is not in normal form (empty, `.` or `..` segments, also percent-encoded; an encoded
 * slash, backslash or NUL), or undefined. A proxy in front and URL parsing here could read such a target as
 * different paths, so that a path a proxy refuses reaches its route spelled another way: refused instead.
 */
export function oddTarget(target: string): string | undefined {
  const path = target.startsWith('/')
    ? target.replace(/[?#].*$/s, '')
    : /^https?:\/\/[^/?#]*([^?#]*)/is.exec(target)?.[1];
  if (path === undefined) return 'neither a path nor an http(s) URL';
  if (path === '') return undefined; // absolute form without a path: '/'
  if (/%(2f|5c|00)|\\/i.test(path)) return 'encoded slash, backslash or NUL in the path';
  const segments = path.replace(/%2e/gi, '.').split('/').slice(1);
  const last = segments.length - 1;
  if (segments.some((s, i) => s === '.' || s === '..' || (s === '' && i < last)))
    return 'empty, "." or ".." segment in the path (send it normalized)';
  return undefined;
}

/** The route table and its dispatcher: 404 for unknown paths, 405 for a known path's other methods. */
export function createHttpRoutes(options: HttpRoutesOptions): HttpRoutes {
  const { log } = options;
  const table = createRouteTable();
  const live = new Set<AbortController>();
  return {
    register: (route) => table.register(route),
    handle(req, res) {
      dispatch(req, res, table, live, options).catch((error: unknown) => {
        if (error instanceof HttpError) return sendText(res, error.status, error.message);
        if (error instanceof ServerError)
          return sendText(res, httpStatusOf(error.code), error.details, error.code);
        log.error({ err: error, path: req.url, method: req.method }, 'HTTP handler failed');
        sendText(res, 500, 'internal error');
      });
    },
    abortAll(reason) {
      for (const controller of live) controller.abort(new HttpError(503, reason));
    },
  };
}

/**
 * Answers one request: the target checked, its route found and authorized, then the handler run with a signal
 * that aborts on timeout, on the client going away, or on {@link HttpRoutes.abortAll} (`live`).
 */
async function dispatch(
  req: IncomingMessage,
  res: ServerResponse,
  table: RouteTable,
  live: Set<AbortController>,
  options: HttpRoutesOptions,
): Promise<void> {
  // Tells a client the answer is the server's own, not a proxy's (a 502-504 from nginx may be retried).
  res.setHeader(ANSWERED_BY, 'prfleet');
  const target = req.url ?? '/';
  const odd = oddTarget(target);
  if (odd !== undefined) return sendText(res, 400, `request target refused: ${odd}`);
  // Origin form is appended to a base, never resolved against it: `//x/y` stays a path, not a host.
  const url = URL.parse(target.startsWith('/') ? `http://prfleet.invalid${target}` : target);
  if (url === null) return sendText(res, 400, 'request target refused: not a URL');
  const found = table.find(url.pathname);
  if (found === undefined) return sendText(res, 404, `no such path: ${url.pathname}`);
  const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
  const route = found.routes.find((r) => methodsOf(r).includes(method));
  if (route === undefined) {
    res.setHeader('allow', [...new Set(found.routes.flatMap(methodsOf))].join(', '));
    return sendText(res, 405, `${req.method ?? ''} not allowed on ${url.pathname}`);
  }
  const principal = route.auth === 'none' ? undefined : await authorize(req, route.auth, options);
  const controller = new AbortController();
  live.add(controller);
  const timeoutMs = route.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timer =
    timeoutMs > 0
      ? setTimeout(() => {
          controller.abort(new HttpError(503, `no answer within ${timeoutMs} ms`));
          sendText(res, 503, `no answer within ${timeoutMs} ms`);
        }, timeoutMs)
      : undefined;
  const done = () => {
    clearTimeout(timer);
    live.delete(controller);
    if (!controller.signal.aborted)
      controller.abort(new HttpError(499, 'client closed the request'));
  };
  res.once('close', done);
  await route.handler(req, res, {
    url,
    rest: found.rest,
    principal,
    signal: controller.signal,
    log: options.log,
    body: () => readBody(req, route.maxBodyBytes ?? DEFAULT_MAX_BODY),
  });
}

/**
 * TLS without tokens: a verified client certificate is the credential, and an agent's certificate is not a
 * client's (as refuseAgentCertificates does for gRPC).
 */
function requireClientCertificate(req: IncomingMessage): void {
  const socket = req.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized)
    throw new HttpError(401, 'a client certificate signed by the fleet CA is required');
  const raw = socket.getPeerCertificate().raw;
  const agent = identityFromCertificate(new X509Certificate(raw));
  if (agent !== undefined)
    throw new HttpError(
      403,
      `the certificate of agent ${JSON.stringify(agent.agentId)} may only connect that agent; use a client certificate (prfleet-certs issue-client) or a token`,
    );
}
