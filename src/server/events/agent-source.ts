import type { Logger } from 'pino';
import { EventKind, type FleetEvent } from '../../gen/prfleet/v1/events.js';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import type { AgentRegistry, RegistryEvent } from '../agents/index.js';
import type { Db } from '../store/index.js';
import { appendIn } from './store-log.js';
import type { EventLog, NewFleetEvent } from './types.js';
import { KeyedTurns } from '../../common/keyed-turns.js';
import { systemClock, type Clock } from '../../common/clock.js';

/** An agent's online paths: device node → LU id. */
export type PathSet = ReadonlyMap<string, string>;

/**
 * Each agent's paths as last reported, fleet-wide: `exchange` stores the new set and appends the events the
 * difference makes, in one step, so a restarted or another instance compares against the same last word.
 */
export interface PathBook {
  /** Resolves with the events recorded. */
  exchange(
    agentId: string,
    next: PathSet,
    events: (previous: PathSet | undefined) => NewFleetEvent[],
  ): Promise<FleetEvent[]>;
}

/** In-process path book (memory store). */
export function createMemoryPathBook(log: EventLog): PathBook {
  const book = new Map<string, PathSet>();
  return {
    async exchange(agentId, next, events) {
      const list = events(book.get(agentId));
      book.set(agentId, next);
      return list.length > 0 ? log.append(list) : [];
    },
  };
}

/** Path book in the store (table fleet_agent_paths). */
export function createStorePathBook(db: Db, log: EventLog): PathBook {
  return {
    async exchange(agentId, next, events) {
      const appended = await db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`prfleet.paths:${agentId}`]);
        const r = await tx.query<{ paths: Record<string, string> }>(
          'SELECT paths FROM fleet_agent_paths WHERE agent_id = $1',
          [agentId],
        );
        const previous =
          r.rows[0] === undefined ? undefined : new Map(Object.entries(r.rows[0].paths));
        const list = events(previous);
        await tx.query(
          `INSERT INTO fleet_agent_paths (agent_id, paths, reported_at) VALUES ($1, $2::text::jsonb, now())
           ON CONFLICT (agent_id) DO UPDATE SET paths = EXCLUDED.paths, reported_at = EXCLUDED.reported_at`,
          [agentId, JSON.stringify(Object.fromEntries(next))],
        );
        return list.length === 0 ? [] : appendIn(tx, list);
      });
      if (appended.length > 0) log.wake();
      return appended;
    },
  };
}

/** The online paths of an inventory. */
export function pathSetOf(paths: readonly Path[]): PathSet {
  return new Map(paths.filter((p) => p.online).map((p) => [p.path, p.luId]));
}

/** PATH_APPEARED / PATH_LOST for the difference between two path sets. */
export function pathEvents(
  agentId: string,
  site: string,
  previous: PathSet | undefined,
  next: PathSet,
  loaderOf: (path: string) => string,
): NewFleetEvent[] {
  const out: NewFleetEvent[] = [];
  const before = previous ?? new Map<string, string>();
  for (const [path, luId] of next) {
    if (before.get(path) === luId) continue;
    out.push({
      kind: EventKind.EVENT_KIND_PATH_APPEARED,
      agentId,
      site,
      path,
      luId,
      loaderId: loaderOf(path),
      actor: agentId,
      summary: `path ${path} of ${agentId} to ${luId || 'an LU without identity'} appeared`,
    });
  }
  for (const [path, luId] of before) {
    if (next.get(path) === luId) continue;
    out.push({
      kind: EventKind.EVENT_KIND_PATH_LOST,
      agentId,
      site,
      path,
      luId,
      actor: agentId,
      summary: `path ${path} of ${agentId} to ${luId || 'an LU without identity'} lost`,
    });
  }
  return out;
}

/**
 * Path events one agent may add to the log: a token bucket per agent (a full reconnect of the largest allowed
 * inventory — every path lost, then appeared — fits the burst), and past it one PATHS_CHURNED event per agent per
 * minute with the counts. Without it an agent alternating two large inventories wrote ~117,000 events a second and
 * expired every watcher's cursor (test/hostile/event-flood.test.ts). A full bucket is no entry: an idle fleet
 * (every agent's bucket refilled a moment after its inventory) keeps nothing here.
 */
export class PathEventBudget {
  /** Agents whose bucket is not full: when it will be (epoch ms). */
  private readonly fullAt = new Map<string, number>();
  /** Agents past their budget: what they did since the last PATHS_CHURNED. */
  private readonly churning = new Map<string, Churn>();

  constructor(
    /** Path events an agent may make at once (default: 2 × PRFLEET_MAX_AGENT_PATHS' default). */
    readonly burst = 8192,
    /** Path events an agent earns back per minute. */
    readonly perMinute = 1024,
    /** Refills the buckets (only its `now` is read). */
    private readonly clock: Pick<Clock, 'now'> = systemClock,
  ) {}

  /** The events to record for one inventory's difference: all of them, none, or one PATHS_CHURNED. */
  admit(agentId: string, site: string, events: NewFleetEvent[]): NewFleetEvent[] {
    if (events.length === 0) return events;
    const now = this.clock.now();
    this.forgetFull(now);
    const tokens = this.tokens(agentId, now);
    const churned = this.churning.get(agentId);
    if (churned === undefined && tokens >= events.length) {
      this.setTokens(agentId, tokens - events.length, now);
      return events;
    }
    const churn = churned ?? { appeared: 0, lost: 0, since: now, told: -Infinity };
    this.churning.set(agentId, churn);
    for (const e of events)
      if (e.kind === EventKind.EVENT_KIND_PATH_APPEARED) churn.appeared += 1;
      else churn.lost += 1;
    if (now - churn.told < 60_000) return [];
    churn.told = now;
    const told: NewFleetEvent = {
      kind: EventKind.EVENT_KIND_PATHS_CHURNED,
      agentId,
      site,
      actor: agentId,
      summary: `${agentId}'s paths churned: ${churn.appeared} appeared, ${churn.lost} lost since ${new Date(churn.since).toISOString()} (over ${this.perMinute} path events a minute; ListDevices has its paths)`,
      detail: {
        $case: 'agent',
        value: {
          agentVersion: '',
          reason: `paths churned: ${churn.appeared} appeared, ${churn.lost} lost`,
          paths: events.length,
        },
      },
    };
    churn.appeared = 0;
    churn.lost = 0;
    churn.since = now;
    // Back to single path events once the bucket has refilled past a burst's worth of quiet.
    if (tokens >= this.burst / 2) this.churning.delete(agentId);
    return [told];
  }

  /** Tokens in `agentId`'s bucket at `now`: it refills linearly up to the burst. */
  private tokens(agentId: string, now: number): number {
    const full = this.fullAt.get(agentId);
    if (full === undefined || full <= now) return this.burst;
    return this.burst - ((full - now) * this.perMinute) / 60_000;
  }

  private setTokens(agentId: string, tokens: number, now: number): void {
    this.fullAt.delete(agentId);
    if (tokens < this.burst)
      this.fullAt.set(agentId, now + ((this.burst - tokens) * 60_000) / this.perMinute);
  }

  /**
   * Looks at the two oldest entries: refilled by `now`, dropped; else moved to the back. Amortized cleaning
   * without a timer: every bucket is looked at again as other agents' inventories arrive.
   */
  private forgetFull(now: number): void {
    let looked = 0;
    for (const [agentId, full] of this.fullAt) {
      if (looked++ === 2) return;
      this.fullAt.delete(agentId);
      if (full > now) this.fullAt.set(agentId, full);
    }
  }
}

interface Churn {
  appeared: number;
  lost: number;
  since: number;
  told: number;
}

/**
 * Turns the registry's session events into fleet events: AGENT_CONNECTED / AGENT_DISCONNECTED (a session
 * replaced by a newer one of the same agent is no disconnection) and the path differences of each inventory.
 * Only the instance holding an agent's stream sees its session events, so each is recorded once fleet-wide.
 * Appends run one at a time per agent, in the order the registry reported them. Returns a stop function.
 */
export function recordAgentEvents(
  registry: AgentRegistry,
  events: EventLog,
  paths: PathBook,
  log: Logger,
  budget = new PathEventBudget(),
): () => void {
  const turns = new KeyedTurns();
  const serial = (agentId: string, work: () => Promise<void>) =>
    void turns
      .run(agentId, work)
      .catch((err: unknown) =>
        log.error({ err, agentId }, 'events: recording an agent event failed'),
      );
  const onEvent = (event: RegistryEvent) => {
    const { session } = event;
    const agentId = session.agentId;
    const site = session.hello.site;
    switch (event.kind) {
      case 'opened':
        serial(agentId, () =>
          events
            .append([
              {
                kind: EventKind.EVENT_KIND_AGENT_CONNECTED,
                agentId,
                site,
                actor: agentId,
                summary: `${agentId} connected (agent ${session.hello.version || 'version unknown'})`,
                detail: {
                  $case: 'agent',
                  value: { agentVersion: session.hello.version, reason: '', paths: 0 },
                },
              },
            ])
            .then(() => undefined),
        );
        return;
      case 'closed':
        if (!event.current) return;
        serial(agentId, () =>
          events
            .append([
              {
                kind: EventKind.EVENT_KIND_AGENT_DISCONNECTED,
                agentId,
                site,
                actor: agentId,
                summary: `${agentId} disconnected`,
                detail: {
                  $case: 'agent',
                  value: {
                    agentVersion: '',
                    reason: session.endReason ?? '',
                    paths: registry.get(agentId)?.paths.length ?? 0,
                  },
                },
              },
            ])
            .then(() => undefined),
        );
        return;
      case 'inventory': {
        const next = pathSetOf(event.paths);
        const loaders = new Map(event.paths.map((p) => [p.path, p.loaderId]));
        serial(agentId, () =>
          paths
            .exchange(agentId, next, (previous) =>
              budget.admit(
                agentId,
                site,
                pathEvents(agentId, site, previous, next, (p) => loaders.get(p) ?? ''),
              ),
            )
            .then(() => undefined),
        );
        return;
      }
      case 'heartbeat':
        return;
    }
  };
  return registry.onChange(onEvent);
}
