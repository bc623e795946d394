/** The shared inventory's Redis keys and channel (the fleet's prefix: the Redis router's). */
export interface InventoryKeys {
  /** `fleet:agent:<id>`: a hash, the agent's record. */
  agent(agentId: string): string;
  /** `fleet:agents`: the set of every agent id with a record. */
  readonly agents: string;
  /** `fleet:instances`: instance id → its last liveness refresh (ms). */
  readonly instances: string;
  /** `fleet:changes`: pub/sub channel; each message is the id of an agent whose record changed. */
  readonly changes: string;
}

export function inventoryKeys(prefix: string): InventoryKeys {
  return {
    agent: (agentId) => `${prefix}fleet:agent:${agentId}`,
    agents: `${prefix}fleet:agents`,
    instances: `${prefix}fleet:instances`,
    changes: `${prefix}fleet:changes`,
  };
}
