import type { Logger } from 'pino';
import type { AgentRegistry } from '../agents/index.js';
import type { CommandPipeline } from '../commands/pipeline.js';
import type { Clock } from '../../common/clock.js';
import type { Store } from '../store/index.js';
import type { ElementView } from './loaders.js';
import type { Finding } from '../../gen/prfleet/v1/fleet.js';
import type { WatchRequest, WatchResponse } from '../../gen/prfleet/v1/events.js';
import type { CallContext } from 'nice-grpc-common';
import type { TakeoverRules } from './takeover-rules.js';
import type { HoldMemory } from './holds.js';
import type { WebhookRpcs } from '../webhooks/service.js';

/** The durable store's parts the fleet engine uses (key registry, journal, history, desired state). */
export type FleetStore = Pick<Store, 'keys' | 'journal' | 'history' | 'desired'>;

/** The findings of one finished audit. */
export interface AuditFindings {
  /** Every audited LU with its findings (possibly none). */
  readonly units: readonly { luId: string; loaderId: string; findings: readonly Finding[] }[];
  /** Loader-level findings (deadlocks, stranded cartridges, conflicting identities). */
  readonly loaderFindings: readonly Finding[];
}

/** What the fleet engine and FleetService need. */
export interface FleetDeps {
  /** Agents and their inventories (the agent registry): the source of LUs and paths. */
  readonly devices: AgentRegistry;
  /** Durable state: keys, idempotency journal, PROUT history, desired state. */
  readonly store: FleetStore;
  /** Logger. */
  readonly log: Logger;
  /** Server instance id, recorded as the journal owner. @default 'fleet' */
  readonly instanceId?: string;
  /**
   * The command pipeline every command goes through, shared with ControlService: PROUTs and resets through `run`
   * (journal, LU turn, precondition, history), reads (audits, observation) through `read`.
   */
  readonly commands: CommandPipeline;
  /** Time for the engine's waits (reconciling an UNKNOWN step). @default systemClock */
  readonly clock?: Clock;
  /** Changers' element views by LU id: written by audits, reused by ListLoaders while fresh. */
  readonly elementViews?: { set(luId: string, view: ElementView): void };
  /** MEDIUM REMOVAL PREVENTED reports seen on command results (fed by the server's router tap). */
  readonly holds?: HoldMemory;
  /** What proves a Takeover victim failed or greedy, and the preempt policy. @default DEFAULT_TAKEOVER_RULES */
  readonly takeoverRules?: TakeoverRules;
  /** Told each finished audit's finding counts by kind name (e.g. `unknown_key`): the metrics gauge. */
  readonly onAuditFindings?: (countsByKind: Readonly<Record<string, number>>) => void;
  /**
   * Told every finished audit's findings: per audited LU (all kinds), and the loader-level ones, so the event log
   * can raise and clear findings (src/server/events). Called once, after the summary is queued.
   */
  readonly onAuditComplete?: (audit: AuditFindings) => void;
  /** FleetService.Watch (src/server/events/watch.ts). @default FAILED_PRECONDITION: no event log */
  readonly watch?: (request: WatchRequest, ctx: CallContext) => AsyncIterable<WatchResponse>;
  /**
   * Byte budget of one listing page (ListKeys, ListLoaders) and of one `reports` message of an audit
   * (batch_reports): PRFLEET_LIST_PAGE_BYTES. @default DEFAULT_PAGE_BYTES
   */
  readonly pageBytes?: number;
  /** AddWebhook, ListWebhooks, RemoveWebhook (src/server/webhooks/). @default FAILED_PRECONDITION */
  readonly webhooks?: WebhookRpcs;
}
