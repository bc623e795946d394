import {
  EventKind,
  eventKindFromJSON,
  eventKindToJSON,
  FleetEvent,
  ProutEvent,
} from '../../gen/prfleet/v1/events.js';
import { outcomeFromJSON, Outcome, proutActionFromJSON } from '../../gen/prfleet/v1/scsi.js';
import type { Db } from '../store/index.js';
import { SubscriptionHub } from './hub.js';
import {
  CursorAheadError,
  CursorExpiredError,
  EVENT_LOG_DEFAULTS,
  type EventFilter,
  type EventLog,
  type EventLogLimits,
  type EventPage,
  type NewFleetEvent,
} from './types.js';

interface EventRow {
  seq: number;
  at: Date;
  kind: string;
  lu_id: string;
  agent_id: string;
  body: Record<string, unknown>;
}

/** A history row as the migration-3 trigger stores it (to_jsonb of the row, without the hashes). */
export interface HistoryJson {
  seq: number;
  actor: string;
  agent_id: string;
  path: string;
  lu_id: string;
  action: string;
  reservation_key: string;
  service_action_key: string;
  pr_type: number | null;
  outcome: string;
  status: number | null;
  idempotency_key: string | null;
  reason: string | null;
}

const hexKey = (hex: string) => BigInt(`0x${hex}`);

/** The PROUT event of a history entry: what was sent, by whom, through which nexus, and what came of it. */
export function proutEventOf(kind: EventKind, h: HistoryJson): Partial<FleetEvent> {
  const verdict = kind === EventKind.EVENT_KIND_PROUT_VERDICT;
  const outcome = verdict ? Outcome.OUTCOME_GOOD : outcomeFromJSON(h.outcome);
  const prout = ProutEvent.fromPartial({
    action: proutActionFromJSON(h.action),
    reservationKey: hexKey(h.reservation_key),
    serviceActionKey: hexKey(h.service_action_key),
    type: h.pr_type ?? 0,
    outcome,
    status: h.status ?? 0,
    idempotencyKey: h.idempotency_key ?? '',
    reason: h.reason ?? '',
    historySeq: BigInt(h.seq),
    verdict: verdict ? h.outcome : '',
  });
  return {
    luId: h.lu_id,
    agentId: h.agent_id,
    path: h.path,
    actor: h.actor,
    summary: verdict
      ? `${h.action.replace('PROUT_ACTION_', '')} settled: ${h.outcome} (it had run)`
      : `${h.action.replace('PROUT_ACTION_', '')} → ${h.outcome.replace('OUTCOME_', '')}`,
    detail: { $case: 'prout', value: prout },
  };
}

/** A stored row as the FleetEvent it records. */
export function eventOfRow(row: EventRow): FleetEvent {
  const kind = eventKindFromJSON(row.kind);
  const history = row.body['history'] as HistoryJson | undefined;
  const body = history !== undefined ? proutEventOf(kind, history) : FleetEvent.fromJSON(row.body);
  return FleetEvent.fromPartial({
    ...body,
    cursor: BigInt(row.seq),
    time: row.at,
    kind,
  });
}

/**
 * The durable event log over the store's database (PostgreSQL or PGlite, migration 3). Every instance sharing
 * the database reads every event; appends take their cursors from `fleet_events_head` under its row lock, so
 * cursors commit in order. PROUT events are written by a trigger on the history table, in the history's own
 * transaction.
 */
export function createStoreEventLog(db: Db, limits: Partial<EventLogLimits> = {}): EventLog {
  const settings = { ...EVENT_LOG_DEFAULTS, ...limits };

  async function headRow(): Promise<{ seq: number; pruned_through: number }> {
    const r = await db.query<{ seq: number; pruned_through: number }>(
      'SELECT seq, pruned_through FROM fleet_events_head WHERE id = 1',
    );
    return r.rows[0]!;
  }

  async function readAfter(cursor: number, filter?: EventFilter, limit = 500): Promise<EventPage> {
    // The head read first: every event up to it is committed, so an empty tail below it is truly empty.
    const before = await headRow();
    const where = ['seq > $1'];
    const params: unknown[] = [cursor];
    const add = (column: string, values: readonly unknown[] | undefined) => {
      if (!values?.length) return;
      params.push(values);
      where.push(`${column} = ANY($${params.length})`);
    };
    add(
      'kind',
      filter?.kinds?.map((k) => eventKindToJSON(k)),
    );
    add('lu_id', filter?.luIds);
    add('agent_id', filter?.agentIds);
    params.push(limit);
    const rows = await db.query<EventRow>(
      `SELECT seq, at, kind, lu_id, agent_id, body FROM fleet_events WHERE ${where.join(' AND ')}
       ORDER BY seq LIMIT $${params.length}`,
      params,
    );
    // Checked after the read: pruning only moves forward, so a cursor still resumable now was when read.
    const after = await headRow();
    if (cursor < after.pruned_through) throw new CursorExpiredError(cursor, after.pruned_through);
    if (cursor > after.seq) throw new CursorAheadError(cursor, after.seq);
    const events = rows.rows.map(eventOfRow);
    // Cursors commit in order, so every event up to the last one returned was visible to the read too.
    const last = events.length > 0 ? Number(events[events.length - 1]!.cursor) : cursor;
    const scannedThrough = events.length >= limit ? last : Math.max(cursor, before.seq, last);
    return { events, scannedThrough };
  }

  async function append(batch: readonly NewFleetEvent[]): Promise<FleetEvent[]> {
    if (batch.length === 0) return [];
    const recorded = await db.transaction(async (tx) => appendIn(tx, batch));
    hub.wake();
    return recorded;
  }

  async function prune(): Promise<number> {
    return db.transaction(async (tx) => {
      const head = await tx.query<{ seq: number; pruned_through: number }>(
        'SELECT seq, pruned_through FROM fleet_events_head WHERE id = 1 FOR UPDATE',
      );
      const { seq } = head.rows[0]!;
      const byAge = await tx.query<{ s: number | null }>(
        'SELECT max(seq) AS s FROM fleet_events WHERE at < $1',
        [new Date(Date.now() - settings.maxAgeMs)],
      );
      const cut = Math.max(seq - settings.maxEvents, byAge.rows[0]?.s ?? 0);
      if (cut <= head.rows[0]!.pruned_through) return 0;
      const removed = await tx.query('DELETE FROM fleet_events WHERE seq <= $1', [cut]);
      await tx.query('UPDATE fleet_events_head SET pruned_through = $1 WHERE id = 1', [cut]);
      return removed.rowCount;
    });
  }

  const log: EventLog = {
    kind: 'store',
    append,
    readAfter,
    head: async () => (await headRow()).seq,
    oldestResumable: async () => (await headRow()).pruned_through,
    subscribe: (options) => hub.subscribe(options),
    prune,
    wake: () => hub.wake(),
    close: () => hub.close(),
  };
  const hub = new SubscriptionHub(log, settings);
  return log;
}

/**
 * Appends `batch` inside the caller's transaction `tx` (e.g. with the observed-state update it reports):
 * cursors are taken under the head's row lock, held until `tx` commits.
 */
export async function appendIn(tx: Db, batch: readonly NewFleetEvent[]): Promise<FleetEvent[]> {
  const head = await tx.query<{ seq: number }>(
    'UPDATE fleet_events_head SET seq = seq + $1 WHERE id = 1 RETURNING seq',
    [batch.length],
  );
  const first = head.rows[0]!.seq - batch.length + 1;
  const out: FleetEvent[] = [];
  for (const [i, e] of batch.entries()) {
    const event = FleetEvent.fromPartial({ ...e, cursor: BigInt(first + i) });
    const body = FleetEvent.toJSON({ ...event, cursor: 0n, time: undefined }) as Record<
      string,
      unknown
    >;
    const r = await tx.query<{ at: Date }>(
      `INSERT INTO fleet_events (seq, kind, lu_id, agent_id, body) VALUES ($1, $2, $3, $4, $5::text::jsonb)
       RETURNING at`,
      [first + i, eventKindToJSON(event.kind), event.luId, event.agentId, JSON.stringify(body)],
    );
    out.push({ ...event, time: r.rows[0]!.at });
  }
  return out;
}
