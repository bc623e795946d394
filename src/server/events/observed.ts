import { FindingEvent, PrState, type FleetEvent } from '../../gen/prfleet/v1/events.js';
import type { Db } from '../store/index.js';
import { appendIn } from './store-log.js';
import type { EventLog, NewFleetEvent } from './types.js';

/** An LU as last observed: its PR state and the findings standing on it. */
export interface ObservedLu {
  readonly luId: string;
  /** PR state last read (undefined: never read successfully). */
  readonly state: PrState | undefined;
  /** Findings raised and not yet cleared. */
  readonly findings: readonly FindingEvent[];
  readonly observedAt: Date;
}

/**
 * The last observed state of each LU, which change events are computed against. `update` is a compare-and-set
 * on the version read with `get`: instances observing the same change record it (and its events) once.
 */
export interface ObservedStates {
  get(luId: string): Promise<{ observed: ObservedLu | undefined; version: string }>;
  list(luIds?: readonly string[]): Promise<ObservedLu[]>;
  /**
   * Stores `next` if the LU is still at `version`, appending `events` in the same step; resolves with the
   * events as recorded, or undefined when another writer got there first (nothing appended).
   */
  update(
    version: string,
    next: ObservedLu,
    events: readonly NewFleetEvent[],
  ): Promise<FleetEvent[] | undefined>;
}

/** The compare-and-set version of an observed LU (what `get` returns with it). */
export const versionOf = (o: ObservedLu | undefined): string =>
  o === undefined
    ? ''
    : JSON.stringify([
        o.state === undefined ? null : PrState.toJSON(o.state),
        o.findings.map((f) => FindingEvent.toJSON(f)),
      ]);

/** In-process observed states (memory store), appending through `log`. */
export function createMemoryObservedStates(log: EventLog): ObservedStates {
  const states = new Map<string, ObservedLu>();
  return {
    get: (luId) => {
      const observed = states.get(luId);
      return Promise.resolve({ observed, version: versionOf(observed) });
    },
    list: (luIds) =>
      Promise.resolve(
        luIds === undefined ? [...states.values()] : luIds.flatMap((id) => states.get(id) ?? []),
      ),
    async update(version, next, events) {
      if (versionOf(states.get(next.luId)) !== version) return undefined;
      states.set(next.luId, next);
      return log.append(events);
    },
  };
}

interface ObservedRow {
  lu_id: string;
  state: unknown;
  findings: unknown[];
  observed_at: Date;
}

function observedOfRow(row: ObservedRow): ObservedLu {
  return {
    luId: row.lu_id,
    state: row.state === null ? undefined : PrState.fromJSON(row.state),
    findings: row.findings.map((f) => FindingEvent.fromJSON(f)),
    observedAt: row.observed_at,
  };
}

/** Observed states in the store (table fleet_lu_observed), shared by the instances; events go to `log`. */
export function createStoreObservedStates(db: Db, log: EventLog): ObservedStates {
  return {
    async get(luId) {
      const r = await db.query<ObservedRow>(
        'SELECT lu_id, state, findings, observed_at FROM fleet_lu_observed WHERE lu_id = $1',
        [luId],
      );
      const observed = r.rows[0] === undefined ? undefined : observedOfRow(r.rows[0]);
      return { observed, version: versionOf(observed) };
    },
    async list(luIds) {
      const r =
        luIds === undefined
          ? await db.query<ObservedRow>(
              'SELECT lu_id, state, findings, observed_at FROM fleet_lu_observed ORDER BY lu_id',
            )
          : await db.query<ObservedRow>(
              'SELECT lu_id, state, findings, observed_at FROM fleet_lu_observed WHERE lu_id = ANY($1) ORDER BY lu_id',
              [luIds],
            );
      return r.rows.map(observedOfRow);
    },
    async update(version, next, events) {
      const recorded = await db.transaction(async (tx) => {
        // Serialises writers of one LU, also before its first row exists (FOR UPDATE locks no missing row).
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
          `prfleet.observed:${next.luId}`,
        ]);
        const current = await tx.query<ObservedRow>(
          'SELECT lu_id, state, findings, observed_at FROM fleet_lu_observed WHERE lu_id = $1',
          [next.luId],
        );
        const now = current.rows[0] === undefined ? undefined : observedOfRow(current.rows[0]);
        if (versionOf(now) !== version) return undefined;
        await tx.query(
          `INSERT INTO fleet_lu_observed (lu_id, state, findings, observed_at)
           VALUES ($1, $2::text::jsonb, $3::text::jsonb, $4)
           ON CONFLICT (lu_id) DO UPDATE SET state = EXCLUDED.state, findings = EXCLUDED.findings,
             observed_at = EXCLUDED.observed_at`,
          [
            next.luId,
            next.state === undefined ? 'null' : JSON.stringify(PrState.toJSON(next.state)),
            JSON.stringify(next.findings.map((f) => FindingEvent.toJSON(f))),
            next.observedAt,
          ],
        );
        return events.length === 0 ? [] : appendIn(tx, events);
      });
      if (recorded !== undefined && recorded.length > 0) log.wake();
      return recorded;
    },
  };
}
