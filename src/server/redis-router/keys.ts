/** The Redis keys and channels of one fleet (one prefix); every instance of the fleet derives the same names. */
export interface RelayKeys {
  /** `agent:<id>` → the instance holding its stream (with a TTL). */
  presence(agentId: string): string;
  /** `instance:<id>`: the instance is alive while this key exists. */
  instance(instanceId: string): string;
  /** `inbox:<id>`: the pub/sub channel the instance listens on. */
  inbox(instanceId: string): string;
}

export function relayKeys(prefix: string): RelayKeys {
  return {
    presence: (agentId) => `${prefix}agent:${agentId}`,
    instance: (id) => `${prefix}instance:${id}`,
    inbox: (id) => `${prefix}inbox:${id}`,
  };
}
