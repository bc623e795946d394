import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RelayKeys } from './keys.js';
import type { RelayMessage } from './protocol.js';

// Refresh only a presence that is ours, or claim one that expired: never take an agent that re-attached to
// another instance (a newer session wins; see attach, which overwrites unconditionally). One call refreshes
// many agents (KEYS): a thousand idle agents cost a couple of commands per refresh, not a thousand.
const REFRESH_PRESENCE = `
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2])
  elseif not v then redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
end
return #KEYS`;
/** Agents refreshed per script call (bounds how long one call holds Redis). */
const REFRESH_CHUNK = 500;
// A claim is withdrawn only by the instance it names: the agent may have re-attached elsewhere meanwhile.
const DELETE_IF_OWNER = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** What the presence needs to know about this instance's agent sessions (see LocalSessions). */
export interface PresenceSessions {
  sessions(): readonly { readonly agentId: string; readonly sessionId: string }[];
  readonly sessionsVersion?: number;
}

/** What {@link Presence} works with. */
export interface PresenceDeps {
  readonly pub: Redis;
  readonly keys: RelayKeys;
  readonly instanceId: string;
  /** Lifetime of a presence key. */
  readonly ttlMs: number;
  readonly sessions: PresenceSessions;
  readonly log: Logger;
  /** Publishes on an instance's inbox (the evict notice to an agent's previous holder). */
  readonly publish: (target: string, message: RelayMessage) => Promise<number>;
}

/**
 * Presence and claims: which instance holds which agent's stream, as `agent:<id> → <instance>` with a TTL.
 * This instance publishes the sessions it holds (attach overwrites: the newest session wins, and the previous
 * holder is told to end its stale one), withdraws them when they close, keeps them alive, and reads others'.
 */
export class Presence {
  /** agentId → sessionId announced by this instance. */
  private readonly published = new Map<string, string>();
  private syncing: Promise<void> | undefined;
  private syncAgain: Promise<void> | undefined;
  /** sessions.sessionsVersion at the last complete sync. */
  private syncedVersion: number | undefined;

  constructor(private readonly deps: PresenceDeps) {}

  /** The instance holding `agentId`'s stream according to Redis, or null. */
  owner(agentId: string): Promise<string | null> {
    return this.deps.pub.get(this.deps.keys.presence(agentId));
  }

  /** Publishes attach/detach of the local sessions; concurrent calls coalesce into at most one more run. */
  sync(): Promise<void> {
    if (this.syncing !== undefined) {
      // A sync in progress may have read the sessions before the caller's change: run once more after it.
      this.syncAgain ??= this.syncing.then(() => {
        this.syncAgain = undefined;
        return this.sync();
      });
      return this.syncAgain;
    }
    this.syncing = this.syncOnce().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  /** Extends the TTL of every presence this instance published (every third of the TTL). */
  async refresh(): Promise<void> {
    const { pub, keys, instanceId, ttlMs } = this.deps;
    const all = [...this.published.keys()].map((agentId) => keys.presence(agentId));
    for (let i = 0; i < all.length; i += REFRESH_CHUNK) {
      const chunk = all.slice(i, i + REFRESH_CHUNK);
      await pub.eval(REFRESH_PRESENCE, chunk.length, ...chunk, instanceId, ttlMs);
    }
  }

  /** Removes `owner`'s claim on `agentId` (an instance found dead), unless another instance claimed it since. */
  async releaseClaim(agentId: string, owner: string): Promise<void> {
    await this.deps.pub.eval(DELETE_IF_OWNER, 1, this.deps.keys.presence(agentId), owner);
  }

  /** Withdraws every presence this instance published (close). */
  async withdrawAll(): Promise<void> {
    for (const agentId of this.published.keys()) await this.detach(agentId);
    this.published.clear();
  }

  private async syncOnce(): Promise<void> {
    const { sessions } = this.deps;
    const version = sessions.sessionsVersion;
    if (version !== undefined && version === this.syncedVersion) return; // no session opened or closed since
    const current = new Map(sessions.sessions().map((s) => [s.agentId, s.sessionId]));
    // Concurrent commands share the connection (one round trip for a batch): a failover attaches hundreds at once.
    const changes: Promise<void>[] = [];
    for (const [agentId, sessionId] of current) {
      if (this.published.get(agentId) === sessionId) continue;
      this.published.set(agentId, sessionId);
      changes.push(this.attach(agentId));
    }
    for (const agentId of [...this.published.keys()]) {
      if (current.has(agentId)) continue;
      this.published.delete(agentId);
      changes.push(this.detach(agentId));
    }
    await Promise.all(changes);
    this.syncedVersion = version; // not reached when a change failed: the next sync compares again
  }

  private async attach(agentId: string): Promise<void> {
    const { pub, keys, instanceId, ttlMs, log } = this.deps;
    const previous = (await pub.call(
      'SET',
      keys.presence(agentId),
      instanceId,
      'PX',
      String(ttlMs),
      'GET',
    )) as string | null;
    log.debug({ agentId, previous }, 'agent presence published');
    if (previous !== null && previous !== instanceId) {
      await this.deps.publish(previous, { kind: 'evict', agentId, by: instanceId });
    }
  }

  private async detach(agentId: string): Promise<void> {
    await this.releaseClaim(agentId, this.deps.instanceId);
    this.deps.log.debug({ agentId }, 'agent presence withdrawn');
  }
}
