import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { createServer, ServerError, Status, type ServerMiddleware } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { AgentServiceDefinition } from '../gen/prfleet/v1/agent.js';
import { ControlServiceDefinition } from '../gen/prfleet/v1/control.js';
import {
  FleetServiceDefinition,
  type FleetServiceImplementation,
} from '../gen/prfleet/v1/fleet.js';
import { directServiceDefinition } from '../common/service-definition.js';
import { registerFleetService } from './fleet/index.js';
import { RegistrationReconciler } from './fleet/registration-reconciler.js';
import { HoldMemory } from './fleet/holds.js';
import { AgentRegistry } from './agents/index.js';
import type { AuthCallContextExt } from './auth/index.js';
import type { TokenStore } from './auth/tokens.js';
import { createAgentService } from './agents/service.js';
import { loadAgentPolicy } from './agents/inventory-screen.js';
import { createCommandExecutor } from './command-executor.js';
import { createCommandPipeline } from './commands/pipeline.js';
import type { ServerConfig } from './config.js';
import { createControlService, type CommandSessionHandle } from './control-service.js';
import { deadlineInterceptor } from './deadline.js';
import { systemClock, type Clock } from '../common/clock.js';
import { reflectionServices } from './reflection.js';
import { createFairShare, fairSharePrincipalOf, peerHost, type FairShare } from './fair-share.js';
import { edgeDeserializer, edgeMiddleware, loadEdgeSchema } from './edge.js';
import {
  maxPendingMs,
  openConfiguredStore,
  recordMissingHistory,
  recoverPendingOperations,
} from './durable.js';
import {
  createProutRecorder,
  createWriteTracker,
  type PrincipalOf,
  type ProutRecorder,
} from './history.js';
import { createMemoryJournal, type CommandJournal } from './journal.js';
import { rpcMiddleware, type RpcObserver } from './middleware.js';
import { createLuSerializer } from './lu-serializer.js';
import { createInProcessRouter, tapResults, type CommandRouter } from './router.js';
import { createStoreCommandJournal, type Store } from './store/index.js';
import {
  createFleetEvents,
  observeResults,
  type EventsObserver,
  type FleetEvents,
} from './events/fleet-events.js';
import { journalWithProutEvents } from './events/prout-events.js';
import { buildUnbound } from './http/grpc-unbound.js';
import { listenOnePort, type OnePortListener } from './http/listener.js';
import { createHttpRoutes, sendText, type HttpRoutes } from './http/routes.js';
import { registerLongPollLink, verifiedPeerCertificate } from './http/long-poll.js';
import { createWebView, registerWebView, type WebView } from './web/index.js';
import { peerHeadersFor } from './auth/mtls.js';
import { createWebhooks, type WebhookObserver, type Webhooks } from './webhooks/index.js';

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

/**
 * grpc-js server options. Channelz (no channelz service is served here) would keep per connection and per call
 * trackers and closures: ~2 KiB of every idle agent's connection (bench/scale, issue 7).
 */
export const SERVER_CHANNEL_OPTIONS = { 'grpc.enable_channelz': 0 } as const;

/** See ServerConfig.connectionIdleMs. */
const DEFAULT_CONNECTION_IDLE_MS = 300_000;

/** Watch counted against its caller's share of open watches (PRFLEET_PRINCIPAL_MAX_WATCHES). */
function watchWithinShare(watch: FleetEvents['watch'], share: FairShare): FleetEvents['watch'] {
  return async function* (request, ctx) {
    const release = share.openWatch(fairSharePrincipalOf(ctx));
    try {
      yield* watch(request, ctx);
    } finally {
      release();
    }
  };
}

/**
 * FleetService on a server without a durable store: every call answers FAILED_PRECONDITION naming the fix, but
 * Watch, which serves the in-memory event log.
 */
function fleetServiceWithoutStore(watch: FleetEvents['watch']): FleetServiceImplementation {
  const refuse = () =>
    new ServerError(
      Status.FAILED_PRECONDITION,
      'fleet operations (audit, key registry, desired state, plan/apply/takeover) need the durable store: run the server with PRFLEET_STORE=pglite (the default) or DATABASE_URL, not PRFLEET_STORE=memory',
    );
  const refusing = Object.fromEntries(
    Object.entries(FleetServiceDefinition.methods).map(([name, method]) => [
      name,
      method.responseStream
        ? // refuses before yielding anything
          async function* () {
            throw refuse();
          }
        : async () => {
            throw refuse();
          },
    ]),
  ) as unknown as FleetServiceImplementation & { watch: FleetEvents['watch'] };
  return { ...refusing, watch };
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
 * Service names listed by reflection (only those whose files are in the descriptor set, grpc-ts-notes §2.4;
 * FleetService is added where it is served). The reflection services themselves are not listed: their
 * descriptors are not in the set.
 */
export const REFLECTED_SERVICES = [
  ControlServiceDefinition.fullName,
  AgentServiceDefinition.fullName,
  HealthDefinition.fullName,
] as const;

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

async function buildServer(
  deps: ServerDeps,
  store: Store | undefined,
  ownsStore: boolean,
): Promise<PrfleetServer> {
  const { config } = deps;
  const log = deps.log;
  if (store !== undefined) {
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
  const clock = deps.clock ?? systemClock;
  const agents = new AgentRegistry({
    heartbeatMs: config.heartbeatMs,
    missedHeartbeats: config.missedHeartbeats,
    outboxCapacity: config.agentQueueCapacity,
    log,
    clock,
  });
  // Every result this instance dispatches is shown to the event sources (unit attentions, PROUTs); bound late
  // because the observation reads through this same router.
  let onResult: FleetEvents['onResult'] = () => {};
  const baseRouter =
    deps.createRouter?.(agents) ??
    createInProcessRouter({
      registry: agents,
      log,
      instanceId: config.instanceId,
      resultSlackMs: config.resultSlackMs,
    });
  // The registration reconciler (when on) hears of unit attentions on any command's result; the audit remembers
  // MEDIUM REMOVAL PREVENTED answers (holds.ts).
  const reconcile = store !== undefined && (config.reconciler?.mode ?? 'off') !== 'off';
  let reconciler: RegistrationReconciler | undefined;
  const holds = store === undefined ? undefined : new HoldMemory();
  const tapped =
    holds === undefined
      ? baseRouter
      : tapResults(baseRouter, (result) => {
          holds.note(result);
          reconciler?.noteResult(result);
        });
  const router = observeResults(tapped, (...args) => onResult(...args));
  const luSerializer = createLuSerializer();
  const events = createFleetEvents({
    store,
    registry: agents,
    router,
    config: config.events,
    log: log.child({ component: 'events' }),
    observer: deps.eventsObserver,
    luSerializer,
  });
  onResult = events.onResult;
  // Deliveries only read the event log: a slow receiver never touches the command path.
  const webhooks =
    store === undefined
      ? undefined
      : createWebhooks({
          store,
          events: events.log,
          registry: agents,
          settings: config.webhooks,
          instanceId: config.instanceId,
          log: log.child({ component: 'webhooks' }),
          observer: deps.webhookObserver,
        });
  const journal =
    deps.journal ??
    journalWithProutEvents(
      store === undefined
        ? createMemoryJournal()
        : createStoreCommandJournal(store.journal, { owner: config.instanceId }),
      events.onHistory,
    );
  const recorder = createProutRecorder(store?.history, log);
  const writes = createWriteTracker();
  const commands = createCommandPipeline({
    router,
    journal,
    marginMs: config.deadlineMarginMs,
    log,
    luSerializer,
    writes,
    clock,
  });
  const executor = createCommandExecutor({
    registry: agents,
    pipeline: commands,
    journal,
    budget: { defaultTimeoutMs: config.commandTimeoutMs, marginMs: config.deadlineMarginMs },
    log,
    clock,
  });
  const sessions = new Set<CommandSessionHandle>();
  const health = HealthState();

  // The edge checks every client request against the descriptors (lengths, UTF-8, durations, required fields).
  const descriptors = findProtoset(config.protosetPath);
  if (descriptors === undefined) {
    throw new Error(
      `request checks need the descriptor set src/gen/protoset.binpb (make gen) or PRFLEET_PROTOSET${config.protosetPath === undefined ? '' : ` (${config.protosetPath} not found)`}`,
    );
  }
  const schema = loadEdgeSchema(readFileSync(descriptors));
  const agentService = createAgentService({
    registry: agents,
    router,
    instanceId: config.instanceId,
    maxAgentPaths: config.maxAgentPaths,
    ...(config.agentPolicyFile === undefined
      ? {}
      : { agentPolicy: loadAgentPolicy(config.agentPolicyFile) }),
    log,
    observe: deps.observeRpc,
    schema,
  });
  const edgeDefinition = { requestDeserializer: edgeDeserializer(schema) };
  const server = (deps.middlewares ?? []).reduce(
    (built, middleware) => built.use(middleware),
    createServer({
      interceptors: [agentService.interceptor, deadlineInterceptor(clock)],
      ...SERVER_CHANNEL_OPTIONS,
      // Without it grpc-js keeps a connection that opens no call for ~24 days (docs/http.md).
      'grpc.max_connection_idle_ms': config.connectionIdleMs ?? DEFAULT_CONNECTION_IDLE_MS,
    }).use(rpcMiddleware(log, deps.observeRpc)),
  );
  // Tokens guard the client-facing services only; agents authenticate with their certificates.
  const control = (
    deps.controlMiddleware === undefined ? server : server.with(deps.controlMiddleware)
  ).with(edgeMiddleware(schema));
  server.add(HealthDefinition, HealthServiceImpl(health));
  const fairShare = createFairShare(config.principalLimits);
  const watch = watchWithinShare(events.watch, fairShare);
  // Results and agent messages are complete: encode them without nice-grpc's per-message fromPartial deep copy.
  control.add(
    directServiceDefinition(ControlServiceDefinition, edgeDefinition),
    createControlService({
      registry: agents,
      router,
      executor,
      instanceId: config.instanceId,
      sessionConcurrency: config.sessionConcurrency,
      sessions,
      fairShare,
      log,
      schema,
      history: store?.history,
      principalOf: deps.principalOf,
      tokens: deps.tokens,
      pageBytes: config.listPageBytes,
      clock,
    }),
  );
  // Agents' streams are answered by agentService.interceptor (below nice-grpc); this registers the method. The
  // server middlewares (RPC logging and metrics aside, which Connect does itself) and tracing do not see Connect:
  // a span for a stream that lives for days says nothing; each command carries its own trace context.
  server.add(directServiceDefinition(AgentServiceDefinition), agentService.implementation);
  // The fleet engine journals every step and reads the key registry, so it needs the durable store; with the
  // memory store every FleetService call says so instead of a bare UNIMPLEMENTED.
  const services: string[] = [...REFLECTED_SERVICES, FleetServiceDefinition.fullName];
  if (store !== undefined) {
    registerFleetService(
      control,
      {
        devices: agents,
        store,
        log,
        instanceId: config.instanceId,
        commands,
        clock,
        watch,
        ...(holds === undefined ? {} : { holds }),
        ...(config.takeoverRules === undefined ? {} : { takeoverRules: config.takeoverRules }),
        onAuditComplete: events.onAudit,
        pageBytes: config.listPageBytes,
        ...(webhooks === undefined ? {} : { webhooks: webhooks.rpcs }),
        ...(deps.onAuditFindings === undefined ? {} : { onAuditFindings: deps.onAuditFindings }),
      },
      edgeDefinition,
    );
    if (reconcile && config.reconciler !== undefined) {
      reconciler = new RegistrationReconciler(
        { devices: agents, store, log, instanceId: config.instanceId, commands },
        config.reconciler,
      );
      reconciler.start();
    }
  } else {
    control.add(FleetServiceDefinition, fleetServiceWithoutStore(watch));
  }
  if (config.reflection) {
    const protoset = findProtoset(config.protosetPath);
    if (protoset === undefined) {
      log.warn(
        { protosetPath: config.protosetPath },
        'reflection off: protoset.binpb not found (run make gen)',
      );
    } else {
      for (const { definition, implementation } of reflectionServices(
        readFileSync(protoset),
        services,
      )) {
        server.add(definition, implementation);
      }
    }
  }
  for (const name of [...services, '']) health.setStatus('healthy', name);

  const http = createHttpRoutes({
    log,
    tokens: deps.tokens,
    tls: () => listener?.tls === true,
  });
  registerHealthRoute(http, health);
  let listener: OnePortListener | undefined;
  let listenCredentials: ServerCredentials = ServerCredentials.createInsecure();
  // The long-poll agent link: the same sessions as the Connect stream, carried by HTTP/1.1 (docs/http.md).
  registerLongPollLink(http, {
    sessions: agentService.sessions,
    registry: agents,
    log,
    peerOf: (req) => peerHeadersFor(listenCredentials, verifiedPeerCertificate(req)),
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
      fairShare.openWatch(
        principal !== undefined
          ? `token:${principal.name}`
          : `peer:${peerHost(req.socket.remoteAddress ?? '')}`,
      ),
  });
  registerWebView(http, web);

  let drained: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;

  async function drainOnce(graceMs: number): Promise<void> {
    const started = Date.now();
    for (const name of [...services, '']) health.setStatus('unhealthy', name);
    router.startDraining();
    // Watches end first (UNAVAILABLE SERVER_DRAINING): their clients resume on another instance by cursor.
    await events.drain();
    await reconciler?.stop();
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
    for (const handle of sessions) handle.finish();
    for (const session of agents.sessions())
      agents.close(session, 'server shut down before the result came back');
    agents.stopLivenessChecks();
    log.info({ ms: Date.now() - started }, 'drained');
  }

  return {
    router: baseRouter,
    agents,
    journal,
    store,
    reconciler,
    history: recorder,
    health,
    instanceId: config.instanceId,
    events,
    webhooks,
    http,
    web,
    async listen(address = `${config.host}:${config.port}`, credentials?: ServerCredentials) {
      if (listener !== undefined) throw new Error('listen() called twice');
      const grpc = await buildUnbound(server);
      listenCredentials = credentials ?? listenCredentials;
      listener = await listenOnePort(address, {
        grpc,
        credentials: listenCredentials,
        http: http.handle,
        log,
        sniffTimeoutMs: Math.min(10_000, config.connectionIdleMs ?? DEFAULT_CONNECTION_IDLE_MS),
      });
      agents.startLivenessChecks();
      events.start();
      webhooks?.start();
      return listener.port;
    },
    drain(graceMs = config.drainGraceMs) {
      drained ??= drainOnce(graceMs);
      return drained;
    },
    shutdown(timeoutMs = config.shutdownTimeoutMs) {
      stopped ??= (async () => {
        agents.stopLivenessChecks();
        await events.drain(); // open watches would make a graceful shutdown wait forever
        await reconciler?.stop();
        await webhooks?.close();
        // Agent streams left open would make a graceful shutdown wait forever (grpc-ts-notes pitfall 6).
        for (const handle of sessions) handle.finish();
        for (const session of agents.sessions()) agents.close(session, 'server shut down');
        // Long polls and event streams end now (their sessions are closed above); idle keep-alives close.
        web.close();
        http.abortAll('server shut down');
        const closing = listener?.close();
        const timer = setTimeout(() => {
          log.warn({ timeoutMs }, 'graceful shutdown too slow: forcing');
          server.forceShutdown();
          listener?.destroyHttp();
        }, timeoutMs);
        timer.unref();
        try {
          await Promise.all([server.shutdown(), closing]);
        } finally {
          clearTimeout(timer);
          // Results that settled during drain are still being written; the store closes after them.
          await Promise.all([writes.idle(), recorder.idle(), events.idle()]);
          if (ownsStore && store !== undefined) {
            await store.close().then(
              () => log.info({ location: store.location }, 'store closed'),
              (e: unknown) => log.error({ err: e }, 'store close failed'),
            );
          }
        }
      })();
      return stopped;
    },
  };
}
