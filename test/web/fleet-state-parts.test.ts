/** The web view's fleet picture in parts: which fleet events re-read what, and the recent-PROUT list. */
import { describe, expect, it } from 'vitest';
import { EventKind, FleetEvent, ProutEvent } from '../../src/gen/prfleet/v1/events.js';
import { Outcome, PrType, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import type { HistoryEntry, HistoryFilter, PRoutHistory } from '../../src/server/store/index.js';
import { applyFleetEvent } from '../../src/server/web/fleet-events.js';
import { createRecentProuts } from '../../src/server/web/recent-prouts.js';
import type { HistoryView } from '../../src/server/web/model.js';

/** The calls applyFleetEvent makes, in order. */
function route(event: Partial<FleetEvent>): string[] {
  const calls: string[] = [];
  applyFleetEvent(FleetEvent.fromPartial(event), {
    agentChanged: (agentId) => calls.push(`agent ${agentId}`),
    prout: (row) => calls.push(`prout ${row.action} ${row.outcome}`),
    luChanged: (luId, prefer) =>
      calls.push(`lu ${luId}${prefer === undefined ? '' : ` via ${prefer}`}`),
  });
  return calls;
}

describe('fleet events in the web view', () => {
  it('updates the agents and re-reads the LU of a path change', () => {
    expect(
      route({ kind: EventKind.EVENT_KIND_PATH_LOST, agentId: 'host-a', luId: 'naa.1' }),
    ).toEqual(['agent host-a', 'lu naa.1']);
    expect(route({ kind: EventKind.EVENT_KIND_AGENT_CONNECTED, agentId: 'host-b' })).toEqual([
      'agent host-b',
    ]);
  });

  it("shows a PROUT and re-reads its LU through the sender's path", () => {
    const detail = {
      $case: 'prout' as const,
      value: ProutEvent.fromPartial({
        action: ProutAction.PROUT_ACTION_PREEMPT,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        outcome: Outcome.OUTCOME_GOOD,
        historySeq: 4n,
      }),
    };
    expect(
      route({ kind: EventKind.EVENT_KIND_PROUT, agentId: 'host-a', luId: 'naa.2', detail }),
    ).toEqual(['prout PREEMPT GOOD', 'lu naa.2 via host-a']);
  });

  it('re-reads the LU of an observed change and ignores an unknown kind', () => {
    expect(route({ kind: EventKind.EVENT_KIND_RESERVATION_CHANGED, luId: 'naa.3' })).toEqual([
      'lu naa.3',
    ]);
    expect(route({ kind: EventKind.EVENT_KIND_UNSPECIFIED, luId: 'naa.3' })).toEqual([]);
  });
});

function entry(seq: number, luId: string): HistoryEntry {
  return {
    seq,
    at: new Date(0),
    actor: 'ops',
    agentId: 'host-a',
    path: '/dev/sg1',
    luId,
    action: 'PROUT_ACTION_RESERVE',
    reservationKey: 0xaaaan,
    serviceActionKey: 0n,
    prType: 1,
    outcome: 'OUTCOME_GOOD',
    status: 0,
    sense: null,
    commandId: null,
    idempotencyKey: null,
    reason: null,
    prevHash: '0'.repeat(64),
    hash: '1'.repeat(64),
  };
}

/** A history of `entries` answering list() as the store does (afterSeq, newestFirst, limit). */
function historyOf(entries: HistoryEntry[]): PRoutHistory {
  const list = (filter: HistoryFilter = {}) => {
    const after = entries.filter((e) => e.seq > (filter.afterSeq ?? 0));
    const ordered = filter.newestFirst === true ? [...after].reverse() : after;
    return Promise.resolve(ordered.slice(0, filter.limit ?? 1000));
  };
  return { list } as unknown as PRoutHistory;
}

describe('recent PROUTs of the web view', () => {
  it('keeps the newest, shows each once, and polls only what is new', async () => {
    const entries = [entry(1, 'naa.1'), entry(2, 'naa.2'), entry(3, 'naa.1')];
    const recent = createRecentProuts(historyOf(entries), 2);
    await recent.loadTail();
    expect(recent.list().map((h) => h.seq)).toEqual([3, 2]);
    entries.push(entry(4, 'naa.2'), entry(5, ''));
    const added: number[] = [];
    const touched: string[] = [];
    await recent.poll(
      (row) => added.push(row.seq),
      (luId, agentId) => touched.push(`${luId} ${agentId}`),
    );
    expect(added).toEqual([4, 5]);
    expect(touched).toEqual(['naa.2 host-a']);
    expect(recent.list().map((h) => h.seq)).toEqual([5, 4]);
    const again = { ...(recent.list()[1] as HistoryView) };
    expect(recent.add(again)).toBe(false);
    await recent.poll(
      (row) => added.push(row.seq),
      () => undefined,
    );
    expect(added).toEqual([4, 5]);
  });

  it('shows PROUTs only as they happen without a history', async () => {
    const recent = createRecentProuts(undefined, 20);
    await recent.loadTail();
    expect(recent.list()).toEqual([]);
    await recent.poll(
      () => expect.unreachable(),
      () => expect.unreachable(),
    );
  });
});
