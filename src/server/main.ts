#!/usr/bin/env node
/**
 * prfleet-server: wires config, logger, store, the scale-out/security/operability extras (Redis routing, TLS and
 * tokens, /metrics, tracing), listen and SIGTERM/SIGINT drain; everything else is in server.ts and scale-out.ts.
 */
import { createLogger } from '../common/logger.js';
import { loadConfig, loggableConfig, type ServerConfig } from './config.js';
import { StoreOpenError } from './durable.js';
import { createServerExtras, loadScaleOutConfig, type ScaleOutConfig } from './scale-out.js';
import { createPrfleetServer, type PrfleetServer } from './server.js';
import { metricsRoute } from './http/metrics-route.js';
import { traceLogMixin } from '../common/command-trace.js';

let config: ServerConfig;
let scaleOut: ScaleOutConfig;
try {
  config = loadConfig(process.env);
  scaleOut = loadScaleOutConfig(process.env);
} catch (e) {
  process.stderr.write(`prfleet-server: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
// The server writes nothing other local users should read or change (the PGlite data directory, token files):
// owner-only whatever umask it was started with.
process.umask(process.umask() | 0o077);
const log = createLogger({
  level: config.logLevel,
  name: 'prfleet-server',
  ...(scaleOut.tracing === undefined ? {} : { mixin: traceLogMixin }),
});
log.info(
  {
    config: loggableConfig(config),
    redis:
      scaleOut.redis.redisUrl === undefined ? 'off (single instance)' : scaleOut.redis.keyPrefix,
    maxStreamAgeMs: scaleOut.maxStreamAgeMs,
    metrics: scaleOut.metrics ?? 'off',
    tracing: scaleOut.tracing === undefined ? 'off' : 'on',
    tokens: scaleOut.security?.tokenSource ?? 'off',
  },
  'effective config',
);
// A rejected promise nobody awaited is a bug, but it must not end a server that fences shared devices (one
// client's cancel once did): logged with its stack, and the server keeps serving. An uncaught exception still
// ends the process (the state it left is unknown), logged as a JSON line first.
process.on('unhandledRejection', (reason) => {
  log.error({ err: reason }, 'unhandled rejection (a bug; the server keeps serving)');
});
process.on('uncaughtExceptionMonitor', (error) => {
  log.fatal({ err: error }, 'uncaught exception: exiting');
});
if (scaleOut.security?.credentials.plaintext === true) {
  log.warn('plaintext: PRFLEET_PLAINTEXT=true was asked for (no TLS, no agent certificates)');
}
if (config.store.kind === 'postgres' && process.env['PRFLEET_INSTANCE_ID'] === undefined) {
  log.warn(
    'PRFLEET_INSTANCE_ID is not set: after a crash, the idempotency keys this instance left pending become UNKNOWN only once stale (hours); give each instance a stable id to settle them at restart',
  );
}

// The OpenTelemetry SDK is loaded only when tracing is configured (it is a fifth of the cold start).
const tracing =
  scaleOut.tracing === undefined
    ? undefined
    : (await import('./tracing.js')).setupTracing({
        ...scaleOut.tracing,
        instanceId: config.instanceId,
      });
const extras = await createServerExtras(scaleOut, {
  log,
  instanceId: config.instanceId,
  resultSlackMs: config.resultSlackMs,
  tracing,
});
let server: PrfleetServer;
try {
  server = await createPrfleetServer({
    log,
    config,
    createRouter: extras.createRouter,
    middlewares: extras.middlewares,
    observeRpc: extras.observeRpc,
    onAuditFindings: extras.onAuditFindings,
    eventsObserver: extras.eventsObserver,
    webhookObserver: extras.webhookObserver,
    controlMiddleware: extras.controlMiddleware,
    tokens: extras.tokens,
  });
} catch (e) {
  // A store that cannot open is an operator problem with a known fix: say it plainly, once, and exit.
  if (e instanceof StoreOpenError) {
    log.fatal({ err: e.cause }, e.message);
    process.stderr.write(`prfleet-server: ${e.message}\n`);
    process.exit(1);
  }
  throw e;
}
extras.useStore(server.store); // token table and key registry of the auth middleware
// /metrics is also served on the main port (HTTP/1.1), besides PRFLEET_METRICS_PORT.
if (extras.metrics !== undefined) server.http.register(metricsRoute(extras.metrics.registry));
let port: number;
try {
  port = await server.listen(`${config.host}:${config.port}`, extras.credentials);
} catch (e) {
  // A port in use or a host that does not resolve is a setting to fix: said plainly, not as a crash trace.
  const message = `cannot listen on ${config.host}:${config.port} (PRFLEET_HOST, PORT): ${e instanceof Error ? e.message : String(e)}`;
  log.fatal({ err: e }, message);
  process.stderr.write(`prfleet-server: ${message}\n`);
  process.exit(1);
}
await extras.start(server);
log.info({ host: config.host, port, instanceId: config.instanceId }, 'listening');

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping');
  try {
    await server.drain(config.drainGraceMs);
    await server.shutdown(config.shutdownTimeoutMs);
    await extras.close();
    log.info('stopped');
    process.exitCode = 0;
  } catch (e) {
    log.error({ err: e }, 'shutdown failed');
    process.exitCode = 1;
  }
  // Whatever still holds the event loop (a client's idle connection) must not keep a stopped server alive.
  setTimeout(() => process.exit(), 500).unref();
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
