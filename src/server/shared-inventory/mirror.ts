import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AgentRecord } from '../agents/index.js';
import type { Background } from '../redis-router/connection.js';
import { agentFromHash, type CachedAgent } from './agent-hash.js';
import type { InventoryKeys } from './keys.js';
import type { InstanceLiveness } from './liveness.js';

/** Agent records read per pipeline (bounds one round trip). */
const FETCH_CHUNK = 500;
/** Change notices arriving within this long are fetched together. */
const FETCH_COALESCE_MS = 5;

/** What a {@link FleetMirror} works with. */
export interface MirrorDeps {
  readonly pub: Redis;
  readonly keys: InventoryKeys;
  readonly instanceId: string;
  /** This instance's own record of an agent (the registry's), shared instead of decoded again. */
  readonly localRecord: (agentId: string) => AgentRecord | undefined;
  readonly liveness: InstanceLiveness;
  readonly background: Background;
  readonly log: Logger;
}

/**
 * This instance's copy of the fleet's agent records: updated from the change notices (fetched in coalesced
 * batches) and fully reloaded by `resync` (pub/sub is at most once: a lost notice is repaired there).
 */
export class FleetMirror {
  private readonly cache = new Map<string, CachedAgent>();
  private readonly toFetch = new Set<string>();
  private fetchScheduled = false;

  constructor(private readonly deps: MirrorDeps) {}

  get size(): number {
    return this.cache.size;
  }

  list(): AgentRecord[] {
    return [...this.cache.values()].map((entry) => this.view(entry));
  }

  get(agentId: string): AgentRecord | undefined {
    const entry = this.cache.get(agentId);
    return entry === undefined ? undefined : this.view(entry);
  }

  /** A change notice for `agentId`: its record is read again soon. */
  scheduleFetch(agentId: string): void {
    this.toFetch.add(agentId);
    if (this.fetchScheduled) return;
    this.fetchScheduled = true;
    // Coalesce announcements arriving together (a failover re-attaches hundreds at once) into one pipeline.
    setTimeout(() => {
      this.fetchScheduled = false;
      const ids = [...this.toFetch];
      this.toFetch.clear();
      this.deps.background(() => this.fetchAgents(ids), 'inventory fetch');
    }, FETCH_COALESCE_MS).unref();
  }

  /** Reloads every record, and forgets agents whose records are gone. */
  async resync(): Promise<void> {
    const ids = await this.deps.pub.smembers(this.deps.keys.agents);
    await this.fetchAgents(ids);
    const known = new Set(ids);
    for (const id of this.cache.keys()) if (!known.has(id)) this.cache.delete(id);
  }

  private async fetchAgents(agentIds: readonly string[]): Promise<void> {
    for (let i = 0; i < agentIds.length; i += FETCH_CHUNK) {
      const chunk = agentIds.slice(i, i + FETCH_CHUNK);
      const batch = this.deps.pub.pipeline();
      for (const id of chunk) batch.hgetall(this.deps.keys.agent(id));
      const replies = (await batch.exec()) ?? [];
      chunk.forEach((id, j) => {
        const [err, hash] = replies[j] ?? [null, {}];
        if (err !== null) return;
        const entry = this.read(id, hash as Record<string, string>);
        if (entry === undefined) this.cache.delete(id);
        else this.cache.set(id, entry);
      });
    }
  }

  private read(agentId: string, hash: Record<string, string>): CachedAgent | undefined {
    try {
      return agentFromHash(hash, this.deps.instanceId, () => this.deps.localRecord(agentId));
    } catch (err) {
      this.deps.log.warn({ err, agentId }, 'shared inventory: unreadable agent record ignored');
      return undefined;
    }
  }

  /** The record as other code should see it now (remoteInstance follows the holder's liveness). */
  private view(entry: CachedAgent): AgentRecord {
    if (entry.local) return entry.record; // held here, or was: never another instance's
    const { instanceId, liveness } = this.deps;
    const holder =
      entry.connected && entry.instance !== instanceId && liveness.isAlive(entry.instance)
        ? entry.instance
        : undefined;
    entry.record.remoteInstance = holder;
    return entry.record;
  }
}
