import type { ServerCredentials } from '@grpc/grpc-js';
import type { HealthState } from 'nice-grpc-server-health';
import { peerHeadersFor } from '../auth/mtls.js';
import { peerHost } from '../fair-share.js';
import type { OnePortListener } from '../http/listener.js';
import { registerLongPollLink, verifiedPeerCertificate } from '../http/long-poll.js';
import { createHttpRoutes, sendText, type HttpRoutes } from '../http/routes.js';
import type { ServerDeps } from '../server.js';
import type { Store } from '../store/index.js';
import { createWebView, registerWebView, type WebView } from '../web/index.js';
import type { GrpcServices } from './grpc-services.js';
import type { Routing } from './routing.js';

/** The one port's listener once listen() has run: the HTTP side asks whether it serves TLS, and with what. */
export interface ListenState {
  /** Undefined until listen(). */
  listener: OnePortListener | undefined;
  /** What listen() was given (plaintext until then); long polls name their agent's peer by it. */
  credentials: ServerCredentials;
}

/** The HTTP/1.1 side of the one port: `/healthz`, the long-poll agent link and the web fleet view. */
export function buildHttpRoutes(
  deps: ServerDeps,
  store: Store | undefined,
  routing: Routing,
  grpc: GrpcServices,
  listen: ListenState,
): { readonly http: HttpRoutes; readonly web: WebView } {
  const { config, log } = deps;
  const { agents, router, events } = routing;
  const http = createHttpRoutes({
    log,
    tokens: deps.tokens,
    tls: () => listen.listener?.tls === true,
  });
  registerHealthRoute(http, grpc.health);
  // The long-poll agent link: the same sessions as the Connect stream, carried by HTTP/1.1 (docs/http.md).
  registerLongPollLink(http, {
    sessions: grpc.agentService.sessions,
    registry: agents,
    log,
    peerOf: (req) => peerHeadersFor(listen.credentials, verifiedPeerCertificate(req)),
    schema: grpc.schema,
    ...(config.longPollWaitMs === undefined ? {} : { maxWaitMs: config.longPollWaitMs }),
  });
  // The read-only web fleet view at / (docs/http.md). It reads through the observed router: a unit attention
  // one of its reads consumes is still recorded as an event.
  const web = createWebView({
    registry: agents,
    router,
    store,
    history: store?.history,
    events: events.log,
    tokens: deps.tokens,
    log: log.child({ component: 'web' }),
    // A view's event stream is a watch: it counts against the caller's Watch quota, named as Watch names it.
    openStream: (req, principal) =>
      grpc.fairShare.openWatch(
        principal !== undefined
          ? `token:${principal.name}`
          : `peer:${peerHost(req.socket.remoteAddress ?? '')}`,
      ),
  });
  registerWebView(http, web);
  return { http, web };
}

/**
 * `GET /healthz`: 200 SERVING while the server's overall gRPC health is healthy, else 503 NOT_SERVING (draining,
 * shutting down); `?service=<full name>` asks about one service, as grpc.health.v1 Check does.
 */
function registerHealthRoute(http: HttpRoutes, health: HealthState): void {
  http.register({
    method: 'GET',
    path: '/healthz',
    auth: 'none',
    handler(_req, res, ctx) {
      const service = ctx.url.searchParams.get('service') ?? '';
      const status = health.getStatus(service);
      if (status === 'healthy') sendText(res, 200, 'SERVING');
      else
        sendText(
          res,
          status === 'unknown' ? 404 : 503,
          status === 'unknown' ? 'SERVICE_UNKNOWN' : 'NOT_SERVING',
        );
    },
  });
}
