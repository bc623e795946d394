import type { Logger } from 'pino';
import { createAgent, type Agent, type AgentOptions } from './agent.js';
import {
  createEmulatedFabric,
  loadFabric,
  type EmulatedFabric,
  type FabricInput,
  type FabricSpec,
} from './fabric.js';
import { createEmulatedSource } from './sources.js';

/** Options for {@link startEmulatedFleet}. */
export interface EmulatedFleetOptions {
  /** Server address, host:port. */
  readonly address: string;
  /** Fabric file (YAML/JSON), spec object, or an already built fabric (shared, not closed by stop()). */
  readonly fabric: string | FabricSpec | FabricInput | EmulatedFabric;
  /** Hosts to run as agents. @default every host of the fabric */
  readonly hosts?: readonly string[];
  /** pino logger; each agent gets a child with its agentId. */
  readonly log: Logger;
  /** Per-command latency of the emulated transports, ms (ignored for a fabric passed in built). @default 0 */
  readonly latencyMs?: number;
  /** Agent options applied to every agent (server and agentId are filled in). @default { plaintext: true } */
  readonly agentOptions?: Partial<Omit<AgentOptions, 'server' | 'agentId'>>;
  /** Wait until every agent is connected before resolving. @default true */
  readonly waitConnected?: boolean;
  /** Abort the wait for connections. */
  readonly signal?: AbortSignal;
}

/** Every host of one emulated fabric running as an agent in this process. */
export interface EmulatedFleet {
  /** The one fabric all agents share (they contend for the same LUs). */
  readonly fabric: EmulatedFabric;
  /** The agents, in fabric host order. */
  readonly agents: readonly Agent[];
  /** The agent of host `id`; throws when there is none. */
  agent(id: string): Agent;
  /** Stops every agent (draining them) and closes the fabric if the fleet built it. */
  stop(): Promise<void>;
}

function isBuilt(f: EmulatedFleetOptions['fabric']): f is EmulatedFabric {
  return typeof f === 'object' && 'emulator' in f && 'hosts' in f && typeof f.host === 'function';
}

/**
 * Runs hosts of ONE emulated fabric as agents in this process (prfleet-sim, tests, the demo). Resolves when all
 * agents are connected (unless waitConnected is false). Each agent has its own channel (its own connection).
 */
export async function startEmulatedFleet(options: EmulatedFleetOptions): Promise<EmulatedFleet> {
  const owned = !isBuilt(options.fabric);
  const fabric = isBuilt(options.fabric)
    ? options.fabric
    : createEmulatedFabric(
        typeof options.fabric === 'string' ? await loadFabric(options.fabric) : options.fabric,
        options.latencyMs === undefined ? {} : { latencyMs: options.latencyMs },
      );
  const hostIds = options.hosts ?? fabric.hosts.map((h) => h.id);
  const agents = hostIds.map((id) => {
    const host = fabric.host(id);
    return createAgent(
      {
        plaintext: true,
        ...options.agentOptions,
        server: options.address,
        agentId: host.id,
        // Each emulated host reports its own name, not the name of the machine running the sim.
        hostname: options.agentOptions?.hostname ?? host.id,
        site: options.agentOptions?.site ?? host.site,
        labels: { ...host.labels, ...options.agentOptions?.labels },
      },
      { log: options.log, source: createEmulatedSource(host) },
    );
  });
  const fleet: EmulatedFleet = {
    fabric,
    agents,
    agent(id) {
      const agent = agents.find((a) => a.id === id);
      if (!agent)
        throw new Error(
          `no agent ${id} in this fleet (agents: ${agents.map((a) => a.id).join(', ')})`,
        );
      return agent;
    },
    async stop() {
      await Promise.all(agents.map((a) => a.stop()));
      if (owned) fabric.close();
    },
  };
  try {
    await Promise.all(agents.map((a) => a.start()));
    if (options.waitConnected !== false) {
      await Promise.all(agents.map((a) => a.waitForState('connected', options.signal)));
    }
  } catch (e) {
    await fleet.stop();
    throw e;
  }
  return fleet;
}
