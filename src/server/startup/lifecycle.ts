import type { ServerCredentials } from '@grpc/grpc-js';
import { buildUnbound } from '../http/grpc-unbound.js';
import { listenOnePort } from '../http/listener.js';
import type { HttpRoutes } from '../http/routes.js';
import type { PrfleetServer, ServerDeps } from '../server.js';
import type { Store } from '../store/index.js';
import type { WebView } from '../web/index.js';
import type { Webhooks } from '../webhooks/index.js';
import type { CommandPath } from './command-path.js';
import { DEFAULT_CONNECTION_IDLE_MS, type GrpcServices } from './grpc-services.js';
import type { ListenState } from './http-routes.js';
import type { Routing } from './routing.js';

/** Everything a built server starts, drains and stops. */
export interface LifecycleParts {
  readonly deps: ServerDeps;
  readonly store: Store | undefined;
  /** Whether shutdown closes the store (it opened it). */
  readonly ownsStore: boolean;
  readonly routing: Routing;
  readonly path: CommandPath;
  readonly grpc: GrpcServices;
  readonly webhooks: Webhooks | undefined;
  readonly http: HttpRoutes;
  readonly web: WebView;
  readonly listen: ListenState;
}

/** listen, drain and shutdown of a built server; drain and shutdown run once, later calls share the first. */
export function serverLifecycle(
  parts: LifecycleParts,
): Pick<PrfleetServer, 'listen' | 'drain' | 'shutdown'> {
  const { config } = parts.deps;
  let drained: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;
  return {
    listen: (address = `${config.host}:${config.port}`, credentials?: ServerCredentials) =>
      listen(parts, address, credentials),
    drain(graceMs = config.drainGraceMs) {
      drained ??= drain(parts, graceMs);
      return drained;
    },
    shutdown(timeoutMs = config.shutdownTimeoutMs) {
      stopped ??= shutdown(parts, timeoutMs);
      return stopped;
    },
  };
}

async function listen(
  { deps, routing, grpc, webhooks, http, listen: state }: LifecycleParts,
  address: string,
  credentials: ServerCredentials | undefined,
): Promise<number> {
  const { config, log } = deps;
  if (state.listener !== undefined) throw new Error('listen() called twice');
  const unbound = await buildUnbound(grpc.server);
  state.credentials = credentials ?? state.credentials;
  state.listener = await listenOnePort(address, {
    grpc: unbound,
    credentials: state.credentials,
    http: http.handle,
    log,
    sniffTimeoutMs: Math.min(10_000, config.connectionIdleMs ?? DEFAULT_CONNECTION_IDLE_MS),
  });
  routing.agents.startLivenessChecks();
  routing.events.start();
  webhooks?.start();
  return state.listener.port;
}

async function drain(
  { deps, routing, grpc, webhooks }: LifecycleParts,
  graceMs: number,
): Promise<void> {
  const { log } = deps;
  const { agents, router, events } = routing;
  const started = Date.now();
  for (const name of [...grpc.services, '']) grpc.health.setStatus('unhealthy', name);
  router.startDraining();
  // Watches end first (UNAVAILABLE SERVER_DRAINING): their clients resume on another instance by cursor.
  await events.drain();
  await grpc.reconciler?.stop();
  // Deliveries stop and leases are released: another instance carries on from the durable cursors.
  await webhooks?.close();
  const open = agents.sessions();
  log.info({ graceMs, agents: open.length, inFlight: router.inFlight }, 'draining');
  for (const session of open) {
    session.askToReconnect('server shutting down');
  }
  const idle = await router.whenIdle(graceMs);
  if (!idle)
    log.warn(
      { inFlight: router.inFlight, graceMs },
      'drain grace over: ending streams with commands in flight',
    );
  for (const handle of grpc.sessions) handle.finish();
  for (const session of agents.sessions())
    agents.close(session, 'server shut down before the result came back');
  agents.stopLivenessChecks();
  log.info({ ms: Date.now() - started }, 'drained');
}

async function shutdown(parts: LifecycleParts, timeoutMs: number): Promise<void> {
  const { deps, routing, grpc, webhooks, http, web, listen: state } = parts;
  const { log } = deps;
  const { agents, events } = routing;
  agents.stopLivenessChecks();
  await events.drain(); // open watches would make a graceful shutdown wait forever
  await grpc.reconciler?.stop();
  await webhooks?.close();
  // Agent streams left open would make a graceful shutdown wait forever (grpc-ts-notes pitfall 6).
  for (const handle of grpc.sessions) handle.finish();
  for (const session of agents.sessions()) agents.close(session, 'server shut down');
  // Long polls and event streams end now (their sessions are closed above); idle keep-alives close.
  web.close();
  http.abortAll('server shut down');
  const closing = state.listener?.close();
  const timer = setTimeout(() => {
    log.warn({ timeoutMs }, 'graceful shutdown too slow: forcing');
    grpc.server.forceShutdown();
    state.listener?.destroyHttp();
  }, timeoutMs);
  timer.unref();
  try {
    await Promise.all([grpc.server.shutdown(), closing]);
  } finally {
    clearTimeout(timer);
    await closeStore(parts);
  }
}

/** Results that settled during drain are still being written; the store closes after them. */
async function closeStore({
  deps,
  store,
  ownsStore,
  path,
  routing,
}: LifecycleParts): Promise<void> {
  path.healer?.stop();
  await Promise.all([path.writes.idle(), path.recorder.idle(), routing.events.idle()]);
  if (ownsStore && store !== undefined) {
    await store.close().then(
      () => deps.log.info({ location: store.location }, 'store closed'),
      (e: unknown) => deps.log.error({ err: e }, 'store close failed'),
    );
  }
}
