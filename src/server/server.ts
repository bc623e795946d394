import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ServerMiddleware } from 'nice-grpc';
import type { HealthState } from 'nice-grpc-server-health';
import type { RegistrationReconciler } from './fleet/registration-reconciler.js';
import type { AgentRegistry } from './agents/index.js';
import type { AuthCallContextExt } from './auth/index.js';
import type { TokenStore } from './auth/tokens.js';
import type { ServerConfig } from './config.js';
import { systemClock, type Clock } from '../common/clock.js';
import {
  maxPendingMs,
  openConfiguredStore,
  recordMissingHistory,
  recoverPendingOperations,
} from './durable.js';
import type { PrincipalOf, ProutRecorder } from './history.js';
import type { CommandJournal } from './journal.js';
import type { RpcObserver } from './middleware.js';
import type { CommandRouter } from './router.js';
import type { Store } from './store/index.js';
import type { EventsObserver, FleetEvents } from './events/fleet-events.js';
import type { HttpRoutes } from './http/routes.js';
import type { WebView } from './web/index.js';
import { createWebhooks, type WebhookObserver, type Webhooks } from './webhooks/index.js';
import { buildCommandPath } from './startup/command-path.js';
import { buildGrpcServices } from './startup/grpc-services.js';
import { buildHttpRoutes, type ListenState } from './startup/http-routes.js';
import { serverLifecycle } from './startup/lifecycle.js';
import { buildRouting, type Routing } from './startup/routing.js';

/** What {@link createPrfleetServer} needs. */
export interface ServerDeps {
  /** Logger (pino). */
  readonly log: Logger;
  /** Configuration (loadConfig(env), or defaultServerConfig() with overrides in tests). */
  readonly config: ServerConfig;
  /**
   * An open store to use instead of opening `config.store` (tests sharing one database between servers). The
   * server does not close a store it was given. @default opened from config.store, closed on shutdown
   */
  readonly store?: Store | undefined;
  /** Idempotency journal. @default over the store's operation journal, or in-memory without a store */
  readonly journal?: CommandJournal | undefined;
  /** Who the caller is, for the PROUT history. @default the auth principal's name, else 'anonymous' */
  readonly principalOf?: PrincipalOf | undefined;
  /** Client tokens ControlService's token RPCs manage (the auth middleware's store). @default none */
  readonly tokens?: TokenStore | undefined;
  /** Router factory, for a multi-instance router. @default the in-process router */
  readonly createRouter?: ((registry: AgentRegistry) => CommandRouter) | undefined;
  /** Server-wide middlewares (tracing), inside the RPC middleware (errors, logging, metrics). @default none */
  readonly middlewares?: readonly ServerMiddleware[] | undefined;
  /** Sees every finished RPC's method, code and duration (the Prometheus metrics). @default none */
  readonly observeRpc?: RpcObserver | undefined;
  /** Receives each audit's finding counts by kind (the Prometheus gauge). @default none */
  readonly onAuditFindings?: ((countsByKind: Readonly<Record<string, number>>) => void) | undefined;
  /** Counts events recorded and watchers (the Prometheus metrics). @default none */
  readonly eventsObserver?: EventsObserver | undefined;
  /** Counts webhook deliveries and their latency (the Prometheus metrics). @default none */
  readonly webhookObserver?: WebhookObserver | undefined;
  /** Bearer-token middleware for ControlService and FleetService (not the agent stream). @default none */
  readonly controlMiddleware?: ServerMiddleware<AuthCallContextExt> | undefined;
  /** Time of liveness, stream rotation and command deadlines (tests pass a manual clock). @default systemClock */
  readonly clock?: Clock | undefined;
}

/** A built prfleet server: listen, drain and shut down; its router and agent registry are exposed for tests. */
export interface PrfleetServer {
  /**
   * Starts listening on `address` (default `${config.host}:${config.port}`); resolves with the bound port. The
   * one port serves gRPC and HTTP/1.1 ({@link http} routes): TLS by ALPN, plaintext by the HTTP/2 preface.
   */
  listen(address?: string, credentials?: ServerCredentials): Promise<number>;
  /**
   * The HTTP/1.1 routes of the main port (docs/http.md): `/healthz`, the agent long-poll link, and whatever
   * other modules register (`/metrics`, the web view). Routes may be added before or after listen().
   */
  readonly http: HttpRoutes;
  /** The web fleet view on the HTTP routes (its live picture: `web.state`). */
  readonly web: WebView;
  /**
   * Graceful drain (SIGTERM): health NOT_SERVING, new dispatches and agent sessions refused with UNAVAILABLE,
   * Reconnect sent to every agent, up to `graceMs` waiting for in-flight results, then agent streams and
   * command sessions ended with OK (leftover in-flight commands become UNKNOWN).
   */
  drain(graceMs?: number): Promise<void>;
  /** gRPC shutdown: waits for calls to finish, forced after `timeoutMs` (default config.shutdownTimeoutMs). */
  shutdown(timeoutMs?: number): Promise<void>;
  /** The command router (as createRouter made it; the server's own commands pass the event sources first). */
  readonly router: CommandRouter;
  /** Agents and their sessions. */
  readonly agents: AgentRegistry;
  /** The idempotency journal. */
  readonly journal: CommandJournal;
  /** The durable store, or undefined with the memory store. */
  readonly store: Store | undefined;
  /**
   * Appends PROUT results to the history (records nothing with the memory store). Other senders of PROUTs (the
   * fleet engine) record through it too, so shutdown waits for their appends before closing the store.
   */
  readonly history: ProutRecorder;
  /** Health state (grpc.health.v1). */
  readonly health: HealthState;
  /** Id of this server instance. */
  readonly instanceId: string;
  /** The fleet event log, its sources and Watch (docs/events.md); webhooks subscribe to `events.log`. */
  readonly events: FleetEvents;
  /** The registration reconciler, when PRFLEET_RECONCILER is dry-run or on (and the store is durable). */
  readonly reconciler?: RegistrationReconciler | undefined;
  /** Webhook subscriptions and this instance's deliveries; undefined with the memory store. */
  readonly webhooks: Webhooks | undefined;
}

/**
 * Finds src/gen/protoset.binpb (written by `make gen`) relative to this module, whether it runs from src/server
 * (tsx, vitest) or from dist/src/server (tsc output; the protoset is not copied into dist, so it is read from
 * the source tree next to it). `explicitPath` (PRFLEET_PROTOSET) wins.
 */
export function findProtoset(explicitPath?: string): string | undefined {
  if (explicitPath !== undefined) return existsSync(explicitPath) ? explicitPath : undefined;
  const candidates = [
    '../gen/protoset.binpb',
    '../../../src/gen/protoset.binpb',
    '../../gen/protoset.binpb',
  ];
  for (const relative of candidates) {
    const path = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(path)) return path;
  }
  return undefined;
}

/**
 * Builds the prfleet server (services, middleware, health, reflection) without listening. Opens the configured
 * store first (StoreOpenError, with advice, when it cannot) and marks journal entries a crashed predecessor
 * left pending as UNKNOWN.
 */
export async function createPrfleetServer(deps: ServerDeps): Promise<PrfleetServer> {
  const { config } = deps;
  const log = deps.log;
  const ownsStore = deps.store === undefined;
  const store = deps.store ?? (await openConfiguredStore(config.store, log));
  try {
    return await buildServer(deps, store, ownsStore);
  } catch (error) {
    if (ownsStore) await store?.close();
    throw error;
  }
}

/**
 * The server's parts in the order each needs the ones before: the store's leftovers settled, the agents and
 * router, webhooks, the command path, the gRPC services, the HTTP routes, then what listen, drain and shutdown do.
 */
async function buildServer(
  deps: ServerDeps,
  store: Store | undefined,
  ownsStore: boolean,
): Promise<PrfleetServer> {
  const { config } = deps;
  if (store !== undefined) await recoverStore(store, deps);
  // One clock for liveness, rotation and every deadline.
  const clock = deps.clock ?? systemClock;
  const routing = buildRouting(deps, store, clock);
  const webhooks = store === undefined ? undefined : buildWebhooks(deps, store, routing);
  const path = buildCommandPath(deps, store, routing, clock);
  const grpc = buildGrpcServices({
    deps,
    store,
    routing,
    path,
    webhooks,
    descriptorSet: readDescriptorSet(config),
    clock,
  });
  const listen: ListenState = {
    listener: undefined,
    credentials: ServerCredentials.createInsecure(),
  };
  const { http, web } = buildHttpRoutes(deps, store, routing, grpc, listen);
  return {
    router: routing.baseRouter,
    agents: routing.agents,
    journal: path.journal,
    store,
    reconciler: grpc.reconciler,
    history: path.recorder,
    health: grpc.health,
    instanceId: config.instanceId,
    events: routing.events,
    webhooks,
    http,
    web,
    ...serverLifecycle({
      deps,
      store,
      ownsStore,
      routing,
      path,
      grpc,
      webhooks,
      http,
      web,
      listen,
    }),
  };
}

/** Marks journal entries a crashed predecessor left pending as UNKNOWN, and writes the history they lack. */
async function recoverStore(store: Store, { config, log }: ServerDeps): Promise<void> {
  // PGlite's directory lock keeps other servers out, so every pending entry there is a crash leftover.
  const exclusive = !store.location.startsWith('postgres');
  await recoverPendingOperations(store, {
    instanceId: config.instanceId,
    exclusive,
    staleAfterMs: maxPendingMs(config.resultSlackMs),
    log,
  });
  await recordMissingHistory(store, log);
}

/** Webhook deliveries only read the event log: a slow receiver never touches the command path. */
function buildWebhooks(deps: ServerDeps, store: Store, routing: Routing): Webhooks {
  return createWebhooks({
    store,
    events: routing.events.log,
    registry: routing.agents,
    settings: deps.config.webhooks,
    instanceId: deps.config.instanceId,
    log: deps.log.child({ component: 'webhooks' }),
    observer: deps.webhookObserver,
  });
}

/** The descriptor set reflection serves (the edge checks requests against src/gen/edge-table.ts). */
function readDescriptorSet(config: ServerConfig): Buffer {
  const descriptors = findProtoset(config.protosetPath);
  if (descriptors === undefined) {
    throw new Error(
      `reflection needs the descriptor set src/gen/protoset.binpb (make gen) or PRFLEET_PROTOSET${config.protosetPath === undefined ? '' : ` (${config.protosetPath} not found)`}`,
    );
  }
  return readFileSync(descriptors);
}
