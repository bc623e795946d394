import type { Clock } from '../../common/clock.js';
import { AgentRegistry } from '../agents/index.js';
import { createFleetEvents, observeResults, type FleetEvents } from '../events/fleet-events.js';
import { HoldMemory } from '../fleet/holds.js';
import type { RegistrationReconciler } from '../fleet/registration-reconciler.js';
import { createLuSerializer, type LuSerializer } from '../lu-serializer.js';
import { createInProcessRouter, tapResults, type CommandRouter } from '../router.js';
import type { ServerDeps } from '../server.js';
import type { Store } from '../store/index.js';

/** The agents, the router every command of this server goes through, and the fleet events it feeds. */
export interface Routing {
  /** Agents and their sessions. */
  readonly agents: AgentRegistry;
  /** The router as ServerDeps.createRouter made it (what PrfleetServer.router exposes). */
  readonly baseRouter: CommandRouter;
  /** The router the server's own commands use: every result is shown to the holds, reconciler and events. */
  readonly router: CommandRouter;
  /** MEDIUM REMOVAL PREVENTED answers the audit remembers; undefined with the memory store. */
  readonly holds: HoldMemory | undefined;
  /** One turn per logical unit, shared by the command path and the event sources' reads. */
  readonly luSerializer: LuSerializer;
  /** The fleet event log, its sources and Watch. */
  readonly events: FleetEvents;
  /** From now on `reconciler` hears of unit attentions on any command's result (when the store is durable). */
  noteResultsTo(reconciler: RegistrationReconciler): void;
}

/** Builds the agent registry and the router, with the result taps the audit, reconciler and events need. */
export function buildRouting(deps: ServerDeps, store: Store | undefined, clock: Clock): Routing {
  const { config, log } = deps;
  const agents = new AgentRegistry({
    heartbeatMs: config.heartbeatMs,
    missedHeartbeats: config.missedHeartbeats,
    outboxCapacity: config.agentQueueCapacity,
    log,
    clock,
  });
  const baseRouter =
    deps.createRouter?.(agents) ??
    createInProcessRouter({
      registry: agents,
      log,
      instanceId: config.instanceId,
      resultSlackMs: config.resultSlackMs,
    });
  // Every result this instance dispatches is shown to the event sources (unit attentions, PROUTs); bound late
  // because the observation reads through this same router.
  let onResult: FleetEvents['onResult'] = () => {};
  // The registration reconciler (when on) hears of unit attentions on any command's result; the audit remembers
  // MEDIUM REMOVAL PREVENTED answers (holds.ts). The reconciler starts once the services exist: bound late too.
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
  return {
    agents,
    baseRouter,
    router,
    holds,
    luSerializer,
    events,
    noteResultsTo(next) {
      reconciler = next;
    },
  };
}
