/**
 * The web view on the server's one port: its paths in the HTTP route table (src/server/http/routes.ts). The
 * routes are `auth: 'none'` for the table because the view authenticates itself (the same tokens, but a browser
 * without one gets the login form, not a 401 line; docs/http.md "The web fleet view").
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WebView } from './view.js';

/** The part of the route table the view uses (HttpRoutes.register). */
export interface WebRouteTable {
  register(route: {
    readonly method: string | readonly string[];
    readonly path?: string;
    readonly prefix?: string;
    readonly auth: 'none';
    readonly timeoutMs?: number;
    handler(
      req: IncomingMessage,
      res: ServerResponse,
      ctx: { readonly signal: AbortSignal },
    ): void | Promise<void>;
  }): () => void;
}

/** Registers the view's paths; returns the function that removes them. */
export function registerWebView(http: WebRouteTable, view: WebView): () => void {
  const handler = async (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: { readonly signal: AbortSignal },
  ): Promise<void> => {
    if (!(await view.handle(req, res, ctx.signal)) && !res.headersSent) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    }
  };
  const removals = [
    http.register({ method: 'GET', path: '/', auth: 'none', handler }),
    http.register({ method: ['GET', 'POST'], path: '/login', auth: 'none', handler }),
    http.register({ method: 'POST', path: '/logout', auth: 'none', handler }),
    http.register({ method: 'GET', prefix: '/assets/', auth: 'none', handler }),
    http.register({ method: 'GET', path: '/api/v1/fleet', auth: 'none', handler }),
    // An event stream lives as long as the page: no timeout; shutdown aborts ctx.signal and ends it.
    http.register({
      method: 'GET',
      path: '/api/v1/fleet/events',
      auth: 'none',
      timeoutMs: 0,
      handler,
    }),
  ];
  return () => {
    for (const remove of removals) remove();
  };
}
