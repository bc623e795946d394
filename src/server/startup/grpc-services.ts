import type { Clock } from '../../common/clock.js';
import { createServer, ServerError, Status, type Server } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { AgentServiceDefinition } from '../../gen/prfleet/v1/agent.js';
import { ControlServiceDefinition } from '../../gen/prfleet/v1/control.js';
import {
  FleetServiceDefinition,
  type FleetServiceImplementation,
} from '../../gen/prfleet/v1/fleet.js';
import { directServiceDefinition } from '../../common/service-definition.js';
import { loadAgentPolicy } from '../agents/inventory-screen.js';
import { createAgentService, exceptConnect, type AgentService } from '../agents/service.js';
import { createControlService } from '../control-service.js';
import type { CommandSessionHandle } from '../command-session.js';
import { deadlineInterceptor } from '../deadline.js';
import {
  agentRequestDeserializer,
  edgeDeserializer,
  edgeMiddleware,
  loadEdgeSchema,
  type EdgeSchema,
} from '../edge.js';
import type { FleetEvents } from '../events/fleet-events.js';
import { createFairShare, fairSharePrincipalOf, type FairShare } from '../fair-share.js';
import { registerFleetService } from '../fleet/index.js';
import { RegistrationReconciler } from '../fleet/registration-reconciler.js';
import { rpcMiddleware } from '../middleware.js';
import { reflectionServices } from './reflection-services.js';
import type { ServerDeps } from '../server.js';
import type { Store } from '../store/index.js';
import type { Webhooks } from '../webhooks/index.js';
import type { CommandPath } from './command-path.js';
import type { Routing } from './routing.js';

/**
 * grpc-js server options. Channelz (no channelz service is served here) would keep per connection and per call
 * trackers and closures: ~2 KiB of every idle agent's connection (bench/scale, issue 7).
 */
export const SERVER_CHANNEL_OPTIONS = { 'grpc.enable_channelz': 0 } as const;

/** See ServerConfig.connectionIdleMs. */
export const DEFAULT_CONNECTION_IDLE_MS = 300_000;

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

/** The gRPC side of a built server, not yet listening. */
export interface GrpcServices {
  /** The nice-grpc server with every service added. */
  readonly server: Server;
  /** Health state (grpc.health.v1) of every served service. */
  readonly health: HealthState;
  /** Names of the served services (health reports each, and '' for the server as a whole). */
  readonly services: readonly string[];
  /** Open CommandSessions, which drain and shutdown end. */
  readonly sessions: Set<CommandSessionHandle>;
  /** The agents' Connect stream and its session logic (the long-poll link shares it). */
  readonly agentService: AgentService;
  /** Per-principal limits (Watch streams and the web view's event streams count against the same share). */
  readonly fairShare: FairShare;
  /** The registration reconciler, when PRFLEET_RECONCILER is dry-run or on (and the store is durable). */
  readonly reconciler: RegistrationReconciler | undefined;
  /** The edge's descriptors (the long-poll link checks a Hello's UTF-8 with them, as the stream's decoding does). */
  readonly schema: EdgeSchema;
}

/** What the gRPC services are built from. */
interface GrpcParts {
  readonly deps: ServerDeps;
  readonly store: Store | undefined;
  readonly routing: Routing;
  readonly path: CommandPath;
  readonly webhooks: Webhooks | undefined;
  /** The descriptor set (src/gen/protoset.binpb, or PRFLEET_PROTOSET): reflection serves it. */
  readonly descriptorSet: Buffer;
  /** The server's clock (command deadlines). */
  readonly clock: Clock;
}

/** The edge's request checks: the schema, and the decoding every client-facing service definition uses. */
interface EdgeChecks {
  readonly schema: EdgeSchema;
  readonly definition: Parameters<typeof directServiceDefinition>[1];
}

/** Where client-facing services are added: behind the token middleware (when configured) and the edge checks. */
type ClientRegistrar = Pick<Server, 'add'>;

/** Builds the gRPC server: AgentService, ControlService, FleetService, health and (when on) reflection. */
export function buildGrpcServices(parts: GrpcParts): GrpcServices {
  const { deps, routing } = parts;
  const { config, log } = deps;
  // The edge checks every client request against the descriptors (lengths, UTF-8, durations, required fields),
  // as generated into src/gen/edge-table.ts by `make gen`: nothing is decoded at start.
  const schema = loadEdgeSchema();
  const edge: EdgeChecks = {
    schema,
    definition: { requestDeserializer: edgeDeserializer(schema) },
  };
  const agentService = createAgentService({
    registry: routing.agents,
    router: routing.router,
    instanceId: config.instanceId,
    maxAgentPaths: config.maxAgentPaths,
    ...(config.agentPolicyFile === undefined
      ? {}
      : { agentPolicy: loadAgentPolicy(config.agentPolicyFile) }),
    log,
    observe: deps.observeRpc,
    schema,
  });
  const server = createGrpcServer(deps, agentService, parts.clock);
  // Tokens guard the client-facing services only; agents authenticate with their certificates.
  const control: ClientRegistrar = (
    deps.controlMiddleware === undefined ? server : server.with(deps.controlMiddleware)
  ).with(edgeMiddleware(schema));
  const health = HealthState();
  server.add(HealthDefinition, HealthServiceImpl(health));
  const fairShare = createFairShare(config.principalLimits);
  const sessions = new Set<CommandSessionHandle>();
  addControlService(control, parts, edge, { sessions, fairShare });
  // Agents' streams are answered by agentService.interceptor (below nice-grpc); this registers the method. The
  // server middlewares (RPC logging and metrics aside, which Connect does itself) and tracing do not see Connect:
  // a span for a stream that lives for days says nothing; each command carries its own trace context.
  server.add(
    directServiceDefinition(AgentServiceDefinition, {
      requestDeserializer: agentRequestDeserializer(schema),
    }),
    agentService.implementation,
  );
  const watch = watchWithinShare(routing.events.watch, fairShare);
  const reconciler = addFleetService(control, parts, edge, watch);
  const services: string[] = [...REFLECTED_SERVICES, FleetServiceDefinition.fullName];
  if (config.reflection) {
    for (const { definition, implementation } of reflectionServices(parts.descriptorSet, services))
      server.add(definition, implementation);
  }
  for (const name of [...services, '']) health.setStatus('healthy', name);
  return { server, health, services, sessions, agentService, fairShare, reconciler, schema };
}

/** The nice-grpc server with the agent stream's interceptor, the RPC middleware and ServerDeps.middlewares. */
function createGrpcServer(deps: ServerDeps, agentService: AgentService, clock: Clock): Server {
  const { config, log } = deps;
  return (deps.middlewares ?? []).reduce(
    (built, middleware) => built.use(middleware),
    createServer({
      interceptors: [agentService.interceptor, exceptConnect(deadlineInterceptor(clock))],
      ...SERVER_CHANNEL_OPTIONS,
      // Without it grpc-js keeps a connection that opens no call for ~24 days (docs/http.md).
      'grpc.max_connection_idle_ms': config.connectionIdleMs ?? DEFAULT_CONNECTION_IDLE_MS,
    }).use(rpcMiddleware(log, deps.observeRpc)),
  );
}

/** ControlService: inventory queries, and every command RPC through the executor. */
function addControlService(
  control: ClientRegistrar,
  { deps, store, routing, path, clock }: GrpcParts,
  edge: EdgeChecks,
  shared: Pick<GrpcServices, 'sessions' | 'fairShare'>,
): void {
  const { config, log } = deps;
  // Results and agent messages are complete: encode them without nice-grpc's per-message fromPartial deep copy.
  control.add(
    directServiceDefinition(ControlServiceDefinition, edge.definition),
    createControlService({
      registry: routing.agents,
      router: routing.router,
      executor: path.executor,
      instanceId: config.instanceId,
      sessionConcurrency: config.sessionConcurrency,
      sessions: shared.sessions,
      fairShare: shared.fairShare,
      log,
      schema: edge.schema,
      history: store?.history,
      principalOf: deps.principalOf,
      tokens: deps.tokens,
      pageBytes: config.listPageBytes,
      clock,
    }),
  );
}

/**
 * The fleet engine journals every step and reads the key registry, so it needs the durable store; with the
 * memory store every FleetService call says so instead of a bare UNIMPLEMENTED. Starts the registration
 * reconciler when it is on, and returns it.
 */
function addFleetService(
  control: ClientRegistrar,
  { deps, store, routing, path, webhooks, clock }: GrpcParts,
  edge: EdgeChecks,
  watch: FleetEvents['watch'],
): RegistrationReconciler | undefined {
  const { config, log } = deps;
  if (store === undefined) {
    control.add(FleetServiceDefinition, fleetServiceWithoutStore(watch));
    return undefined;
  }
  const { agents, holds, events } = routing;
  registerFleetService(
    control,
    {
      devices: agents,
      store,
      log,
      instanceId: config.instanceId,
      commands: path.commands,
      clock,
      watch,
      ...(holds === undefined ? {} : { holds }),
      ...(config.takeoverRules === undefined ? {} : { takeoverRules: config.takeoverRules }),
      onAuditComplete: events.onAudit,
      pageBytes: config.listPageBytes,
      ...(webhooks === undefined ? {} : { webhooks: webhooks.rpcs }),
      ...(deps.onAuditFindings === undefined ? {} : { onAuditFindings: deps.onAuditFindings }),
    },
    edge.definition,
  );
  if ((config.reconciler?.mode ?? 'off') === 'off' || config.reconciler === undefined)
    return undefined;
  const reconciler = new RegistrationReconciler(
    { devices: agents, store, log, instanceId: config.instanceId, commands: path.commands },
    config.reconciler,
  );
  routing.noteResultsTo(reconciler);
  reconciler.start();
  return reconciler;
}

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
