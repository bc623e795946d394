/**
 * The read-only web fleet view as an HTTP/1.1 handler (docs/http.md, "Web fleet view"): `/` the page (or the
 * login form), `/assets/*` its script and stylesheet, `/api/v1/fleet` the JSON snapshot, `/api/v1/fleet/events`
 * the Server-Sent Events stream of changes, `/login` and `/logout`. `handle` answers those paths and returns
 * false for every other one, so the server's one-port dispatcher can route the rest (gRPC, health, metrics).
 */
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Principal } from '../auth/tokens.js';
import {
  checkAccess,
  checkToken,
  isTls,
  presentedToken,
  readLoginToken,
  sameOrigin,
  tokenCookie,
  type WebAccess,
  type WebAuthOptions,
} from './auth.js';
import { createFleetState, type FleetState, type FleetStateDeps } from './fleet-state.js';
import { fleetPage, loginPage } from './pages.js';
import { openEventStream } from './sse.js';

/** The words of a quota error (a ServerError's details), for a text answer. */
function errorText(err: unknown): string {
  const details = (err as { details?: unknown }).details;
  return typeof details === 'string' ? details : String(err);
}

/** What {@link createWebView} needs. */
export interface WebViewDeps extends FleetStateDeps, WebAuthOptions {
  readonly log: Logger;
  /**
   * The built front end (app.js, style.css: `make build` writes dist/web). @default found next to this module
   * (findWebAssets), or PRFLEET_WEB_ASSETS
   */
  readonly assetsDir?: string | undefined;
  /** An open event stream checks its token again this often (revoked, expired: `logout`). @default 30000 */
  readonly tokenRecheckMs?: number;
  /** The live fleet picture, when the caller builds it. @default createFleetState(deps) */
  readonly state?: FleetState;
  /**
   * Takes one of the caller's event-stream slots (the server's per-principal Watch quota) and returns its
   * release, or throws an Error saying which limit is reached (answered 429). @default unlimited
   */
  readonly openStream?: (req: IncomingMessage, principal: Principal | undefined) => () => void;
}

/** The web view handler. */
export interface WebView {
  /**
   * Answers a request of the view; resolves false (nothing written) for a path that is not the view's. An event
   * stream ends when `signal` aborts (server shutdown) or the client leaves.
   */
  handle(req: IncomingMessage, res: ServerResponse, signal?: AbortSignal): Promise<boolean>;
  /** The live fleet picture (tests, and the event log's subscriber: invalidate()). */
  readonly state: FleetState;
  /** Ends every open event stream and stops the fleet picture's timers. */
  close(): void;
}

/** Headers of every answer: nothing from elsewhere runs, frames or is sniffed; nothing is cached. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // same-origin, not no-referrer: with no-referrer a browser posts the login form with `Origin: null`.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
} as const;

const ASSETS: Record<string, string> = {
  '/assets/app.js': 'text/javascript; charset=utf-8',
  '/assets/style.css': 'text/css; charset=utf-8',
};

/**
 * Where the built front end is: PRFLEET_WEB_ASSETS, else dist/web found from this module whether it runs from
 * src/server/web (vitest), dist/src/server/web (tsc output) or dist/bundle/server (the bundle). Undefined when
 * not built.
 */
export function findWebAssets(explicit = process.env['PRFLEET_WEB_ASSETS']): string | undefined {
  if (explicit !== undefined && explicit !== '') return existsSync(explicit) ? explicit : undefined;
  for (const relative of ['../../../dist/web', '../../../web', '../../web']) {
    const dir = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(join(dir, 'app.js'))) return dir;
  }
  return undefined;
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  extra: Record<string, string> = {},
): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': type,
    'content-length': String(Buffer.byteLength(body)),
    ...extra,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

const HTML = 'text/html; charset=utf-8';
const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

/** Creates the web view over the server's registry, router, store and tokens. */
export function createWebView(deps: WebViewDeps): WebView {
  const state = deps.state ?? createFleetState(deps);
  const assets = loadAssets(deps.assetsDir ?? findWebAssets(), deps.log);
  const streams = new Set<() => void>();
  const context: RouteContext = { deps, state, assets, streams };
  return {
    state,
    async handle(req, res, signal) {
      const path = new URL(req.url ?? '/', 'http://view').pathname;
      if (!PATHS.has(path)) return false;
      try {
        await route(context, req, res, path, signal);
      } catch (err) {
        deps.log.error({ err, path }, 'web view: request failed');
        if (!res.headersSent) send(res, 500, TEXT, 'internal error\n');
        else res.destroy();
      }
      return true;
    },
    close() {
      for (const end of [...streams]) end();
      state.close();
    },
  };
}

/** The paths the view answers; every other one is left to the server's dispatcher. */
const PATHS = new Set([
  '/',
  '/login',
  '/logout',
  '/api/v1/fleet',
  '/api/v1/fleet/events',
  ...Object.keys(ASSETS),
]);

/** What answering a request needs. */
interface RouteContext {
  readonly deps: WebViewDeps;
  readonly state: FleetState;
  /** The built front end by path; missing files are answered 503. */
  readonly assets: ReadonlyMap<string, Buffer>;
  /** The ends of the open event streams (close() ends them all). */
  readonly streams: Set<() => void>;
}

/** Reads the built front end; the view still answers the API without it, and says so in the log. */
function loadAssets(assetsDir: string | undefined, log: Logger): Map<string, Buffer> {
  const assets = new Map<string, Buffer>();
  if (assetsDir !== undefined) {
    for (const path of Object.keys(ASSETS)) {
      const file = join(assetsDir, path.slice('/assets/'.length));
      if (existsSync(file)) assets.set(path, readFileSync(file));
    }
  }
  if (assets.size < Object.keys(ASSETS).length) {
    log.warn(
      { assetsDir },
      'web view: front end not built (make build writes dist/web); / answers 503',
    );
  }
  return assets;
}

/** Answers a request the access check did not allow; the page gets the login form, the API a JSON error. */
function refuse(
  res: ServerResponse,
  access: Exclude<WebAccess, { kind: 'allowed' }>,
  api: boolean,
): void {
  const status = access.kind === 'login' ? 401 : access.status;
  const reason =
    access.kind === 'login' ? access.reason || 'log in with a bearer token' : access.reason;
  if (api) send(res, status, JSON_TYPE, JSON.stringify({ error: reason }));
  else if (access.kind === 'login') send(res, status, HTML, loginPage(access.reason));
  else send(res, status, TEXT, `${reason}\n`);
}

/** POST /login: checks the posted token and keeps it in a cookie. */
async function login(req: IncomingMessage, res: ServerResponse, deps: WebViewDeps): Promise<void> {
  if (!sameOrigin(req)) {
    send(res, 403, TEXT, "refused: the login form must be posted from this server's own page\n");
    return;
  }
  const token = await readLoginToken(req);
  const access =
    token === undefined || token === ''
      ? ({ kind: 'login', reason: 'no token given' } as const)
      : await checkToken(token, deps);
  if (access.kind !== 'allowed') {
    refuse(res, access, false);
    return;
  }
  // Without tokens there is nothing to keep (and a posted text never becomes a cookie unchecked).
  if (access.principal === undefined) {
    send(res, 303, TEXT, 'no login needed\n', { location: '/' });
    return;
  }
  deps.log.info(
    { principal: access.principal?.name, role: access.principal?.role },
    'web view: logged in',
  );
  send(res, 303, TEXT, 'logged in\n', {
    location: '/',
    'set-cookie': tokenCookie(token as string, isTls(req)),
  });
}

/** POST /logout: clears the token cookie. */
function logout(req: IncomingMessage, res: ServerResponse): void {
  if (!sameOrigin(req)) return send(res, 403, TEXT, 'refused: cross-origin logout\n');
  send(res, 303, TEXT, 'logged out\n', {
    location: '/login',
    'set-cookie': tokenCookie('', isTls(req)),
  });
}

/** Answers one of the view's paths (the dispatcher has checked it is one). */
async function route(
  context: RouteContext,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { deps, assets } = context;
  const method = req.method ?? 'GET';
  const reading = method === 'GET' || method === 'HEAD';
  if (path === '/login' && method === 'POST') return login(req, res, deps);
  if (path === '/logout' && method === 'POST') return logout(req, res);
  if (!reading) return send(res, 405, TEXT, 'method not allowed\n', { allow: 'GET, HEAD' });
  const asset = ASSETS[path];
  if (asset !== undefined) {
    const body = assets.get(path);
    return body === undefined
      ? send(res, 503, TEXT, 'front end not built: run make build\n')
      : send(res, 200, asset, body, { 'cache-control': 'no-cache' });
  }
  if (path === '/login') return send(res, 200, HTML, loginPage(''));
  const api = path.startsWith('/api/');
  const access = await checkAccess(req, deps);
  if (access.kind !== 'allowed') return refuse(res, access, api);
  if (path === '/') {
    return assets.size === 0
      ? send(res, 503, TEXT, 'front end not built: run make build\n')
      : send(res, 200, HTML, fleetPage());
  }
  if (path === '/api/v1/fleet') return sendSnapshot(context, res);
  return openStream(context, req, res, access.principal, signal);
}

/** GET /api/v1/fleet: the JSON snapshot. */
async function sendSnapshot(context: RouteContext, res: ServerResponse): Promise<void> {
  let view: unknown;
  try {
    view = await context.state.snapshot();
  } catch (err) {
    // The key registry or the history could not be read (store down): say so, retryable.
    context.deps.log.warn({ err }, 'web view: snapshot failed');
    return send(
      res,
      503,
      JSON_TYPE,
      JSON.stringify({ error: 'the fleet could not be read right now; retry' }),
    );
  }
  send(res, 200, JSON_TYPE, JSON.stringify(view));
}

/**
 * GET /api/v1/fleet/events: the SSE stream, within the caller's stream quota; it ends when the token stops
 * being valid, the client leaves or `signal` aborts.
 */
async function openStream(
  context: RouteContext,
  req: IncomingMessage,
  res: ServerResponse,
  principal: Principal | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { deps, streams } = context;
  let release: () => void = () => {};
  try {
    release = deps.openStream?.(req, principal) ?? release;
  } catch (err) {
    return send(res, 429, TEXT, `${errorText(err)}\n`);
  }
  const token = presentedToken(req);
  const stillAllowed = async () =>
    token === undefined || (await checkToken(token, deps)).kind === 'allowed';
  const end = await openEventStream(req, res, {
    state: context.state,
    stillAllowed,
    log: deps.log,
    headers: SECURITY_HEADERS,
    events: deps.events,
    ...(deps.tokenRecheckMs === undefined ? {} : { recheckMs: deps.tokenRecheckMs }),
    onEnd: (ended) => {
      streams.delete(ended);
      release();
    },
    ...(signal === undefined ? {} : { signal }),
  }).catch((err: unknown) => {
    release();
    throw err;
  });
  streams.add(end);
}
