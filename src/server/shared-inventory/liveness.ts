import type { Redis } from 'ioredis';
import type { InventoryKeys } from './keys.js';

/** What {@link InstanceLiveness} works with. */
export interface LivenessDeps {
  readonly pub: Pick<Redis, 'hset' | 'hgetall' | 'hdel'>;
  readonly keys: Pick<InventoryKeys, 'instances'>;
  readonly instanceId: string;
  /** An instance not refreshed for this long is dead. */
  readonly ttlMs: number;
  /** This instance counts as alive until it closes. */
  readonly isClosed: () => boolean;
}

/**
 * Which server instances are alive: each writes its time into `fleet:instances` every third of the TTL and reads
 * everyone's. Agents held by a dead instance show as disconnected, whatever their record says.
 */
export class InstanceLiveness {
  /** instance → last refresh (ms). */
  private readonly live = new Map<string, number>();

  constructor(private readonly deps: LivenessDeps) {}

  /** Instances known (alive or not), for the ready log line. */
  get size(): number {
    return this.live.size;
  }

  /** True when `id` refreshed its liveness within the TTL (this instance always is, until it closes). */
  isAlive(id: string): boolean {
    if (id === this.deps.instanceId) return !this.deps.isClosed();
    const seen = this.live.get(id);
    return seen !== undefined && Date.now() - seen <= this.deps.ttlMs;
  }

  /** Instances alive now, this one included. */
  liveInstances(): string[] {
    return [...this.live.keys()].filter((id) => this.isAlive(id));
  }

  /** Writes this instance's time and reads everyone's. */
  async refresh(): Promise<void> {
    const { pub, keys, instanceId, ttlMs } = this.deps;
    const now = Date.now();
    await pub.hset(keys.instances, instanceId, String(now));
    const all = await pub.hgetall(keys.instances);
    this.live.clear();
    for (const [id, text] of Object.entries(all)) {
      const seen = Number(text);
      this.live.set(id, seen);
      // Instances dead for long are forgotten (their agents' records stay, as disconnected).
      if (now - seen > 100 * ttlMs) await pub.hdel(keys.instances, id);
    }
  }

  /** Removes this instance from the list (close). */
  async withdraw(): Promise<void> {
    await this.deps.pub.hdel(this.deps.keys.instances, this.deps.instanceId);
  }
}
