import { sendText, type HttpRoute } from './routes.js';

/** What `/metrics` exposes: a prom-client Registry. */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

/**
 * `GET /metrics` on the main port (Prometheus text format), the same registry PRFLEET_METRICS_PORT serves. Unlike
 * that internal port it is behind the viewer role when tokens are configured (Prometheus sends one with
 * `authorization: { credentials: prf_… }`).
 */
export function metricsRoute(registry: MetricsSource): HttpRoute {
  return {
    method: 'GET',
    path: '/metrics',
    auth: 'viewer',
    async handler(_req, res) {
      let text: string;
      try {
        text = await registry.metrics();
      } catch (error) {
        sendText(res, 500, `metrics failed: ${String(error)}`);
        return;
      }
      res
        .writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' })
        .end(text);
    },
  };
}
