import type { FleetEvent } from '../../gen/prfleet/v1/events.js';
import type { AgentRegistry } from '../agents/index.js';
import { pathsByLu } from '../devices.js';

/** Where an event sits in the fleet: the site of its agent, the loader and sites of its LU (current inventory). */
export interface FleetContext {
  /** The agent's site label ('' when unknown). */
  siteOf(agentId: string): string;
  /** The LU's loader ('' when unknown). */
  loaderOf(luId: string): string;
  /** Sites of the agents that see the LU. */
  sitesOf(luId: string): readonly string[];
}

/** A context over the agent registry (its LU grouping is cached by the registry's inventories). */
export function registryContext(registry: AgentRegistry): FleetContext {
  return {
    siteOf: (agentId) => registry.get(agentId)?.hello.site ?? '',
    loaderOf: (luId) =>
      pathsByLu(registry)
        .get(luId)
        ?.find((p) => p.path.loaderId !== '')?.path.loaderId ?? '',
    sitesOf: (luId) => [
      ...new Set((pathsByLu(registry).get(luId) ?? []).map((p) => p.agent.hello.site)),
    ],
  };
}

/**
 * Fills the site and loader of an event recorded without them (PROUT events come from the history, which
 * names agent and LU only), from the inventory as it is now.
 */
export function enrich(event: FleetEvent, context: FleetContext): FleetEvent {
  if (
    (event.site !== '' || (event.agentId === '' && event.luId === '')) &&
    (event.loaderId !== '' || event.luId === '')
  )
    return event;
  const site =
    event.site !== ''
      ? event.site
      : event.agentId !== ''
        ? context.siteOf(event.agentId)
        : (context.sitesOf(event.luId)[0] ?? '');
  const loaderId =
    event.loaderId !== '' || event.luId === '' ? event.loaderId : context.loaderOf(event.luId);
  return { ...event, site, loaderId };
}
