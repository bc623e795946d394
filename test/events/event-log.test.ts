import { describe, expect, it } from 'vitest';
import { EventKind, type FleetEvent } from '../../src/gen/prfleet/v1/events.js';
import {
  createMemoryEventLog,
  createStoreEventLog,
  CursorAheadError,
  CursorExpiredError,
  WatcherTooSlowError,
  type EventLog,
  type EventLogLimits,
  type NewFleetEvent,
} from '../../src/server/events/index.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import type { HistoryEntryInput } from '../../src/server/store/index.js';
import { storeBackends } from '../store/backends.js';

const backends = await storeBackends();

const connected = (agentId: string, luId = ''): NewFleetEvent => ({
  kind: EventKind.EVENT_KIND_AGENT_CONNECTED,
  agentId,
  luId,
  summary: `${agentId} connected`,
});

const prout = (n: number, over: Partial<HistoryEntryInput> = {}): HistoryEntryInput => ({
  at: new Date(),
  actor: 'alice',
  agentId: 'host-a',
  path: `/dev/sg${n}`,
  luId: 'naa.1',
  action: 'PROUT_ACTION_REGISTER',
  reservationKey: 0n,
  serviceActionKey: BigInt(0xa0 + n),
  outcome: 'OUTCOME_GOOD',
  status: 0,
  commandId: `cmd-${n}`,
  ...over,
});

/** Reads `n` events from a subscription, then stops it. */
async function take(iterable: AsyncIterable<FleetEvent>, n: number): Promise<FleetEvent[]> {
  const out: FleetEvent[] = [];
  if (n === 0) return out;
  for await (const e of iterable) {
    out.push(e);
    if (out.length >= n) break;
  }
  return out;
}

interface Subject {
  readonly name: string;
  readonly skip: string | undefined;
  open(limits?: Partial<EventLogLimits>): Promise<{
    log: EventLog;
    history?: (e: HistoryEntryInput) => Promise<unknown>;
    sibling?: () => Promise<EventLog>;
  }>;
}

const subjects: Subject[] = [
  {
    name: 'memory',
    skip: undefined,
    open: (limits) => Promise.resolve({ log: createMemoryEventLog(limits) }),
  },
  ...backends.map((b): Subject => ({
    name: b.name,
    skip: b.skipReason,
    async open(limits) {
      const store = await b.open();
      return {
        log: createStoreEventLog(store.db, { pollMs: 50, ...limits }),
        history: (e) => store.history.append(e),
        sibling: async () =>
          createStoreEventLog((await b.openSibling(store)).db, { pollMs: 50, ...limits }),
      };
    },
  })),
];

describe.each(subjects)('event log on $name', (subject) => {
  describe.skipIf(subject.skip !== undefined)('', () => {
    it('assigns increasing cursors and reads after a cursor, filtered, in order', async () => {
      const { log } = await subject.open();
      expect(await log.head()).toBe(0);
      const recorded = await log.append([
        connected('a', 'lu1'),
        connected('b', 'lu2'),
        connected('a', 'lu2'),
      ]);
      expect(recorded.map((e) => Number(e.cursor))).toEqual([1, 2, 3]);
      expect(recorded[0]!.time).toBeInstanceOf(Date);
      const all = await log.readAfter(0);
      expect(all.events.map((e) => e.agentId)).toEqual(['a', 'b', 'a']);
      expect(all.events[1]).toMatchObject({
        kind: EventKind.EVENT_KIND_AGENT_CONNECTED,
        luId: 'lu2',
        summary: 'b connected',
      });
      expect(all.scannedThrough).toBe(3);
      const a = await log.readAfter(0, { agentIds: ['a'] });
      expect(a.events.map((e) => Number(e.cursor))).toEqual([1, 3]);
      const lu2 = await log.readAfter(1, { luIds: ['lu2'], agentIds: ['a'] });
      expect(lu2.events.map((e) => Number(e.cursor))).toEqual([3]);
      const none = await log.readAfter(0, { kinds: [EventKind.EVENT_KIND_PATH_LOST] });
      expect(none).toEqual({ events: [], scannedThrough: 3 });
      const page = await log.readAfter(0, undefined, 2);
      expect(page.scannedThrough).toBe(2);
      await expect(log.readAfter(4)).rejects.toBeInstanceOf(CursorAheadError);
      log.close();
    });

    it('expires cursors older than the retention and says where to resume', async () => {
      const { log } = await subject.open({ maxEvents: 3 });
      for (let i = 0; i < 6; i += 1) await log.append([connected(`h${i}`)]);
      await log.prune();
      expect(await log.oldestResumable()).toBe(3);
      const err = await log.readAfter(1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CursorExpiredError);
      expect(err).toMatchObject({ cursor: 1, oldestResumable: 3 });
      expect((await log.readAfter(3)).events.map((e) => e.agentId)).toEqual(['h3', 'h4', 'h5']);
      log.close();
    });

    it('subscribers get the backlog after their cursor, then live events; from the head only new ones', async () => {
      const { log } = await subject.open();
      await log.append([connected('old')]);
      const ac = new AbortController();
      const fromStart = take(log.subscribe({ after: 0, signal: ac.signal }), 3);
      const fromNow = take(log.subscribe({ signal: ac.signal, filter: { agentIds: ['b'] } }), 1);
      await new Promise((r) => setTimeout(r, 100));
      await log.append([connected('a')]);
      await log.append([connected('b')]);
      expect((await fromStart).map((e) => e.agentId)).toEqual(['old', 'a', 'b']);
      expect((await fromNow).map((e) => e.agentId)).toEqual(['b']);
      ac.abort();
      log.close();
    });

    it('ends a subscriber that falls too far behind, telling it where to resume', async () => {
      const { log } = await subject.open({ maxLag: 5 });
      const iterator = log.subscribe({})[Symbol.asyncIterator]();
      const first = iterator.next();
      await new Promise((r) => setTimeout(r, 100));
      await log.append([connected('x0')]);
      expect((await first).value).toMatchObject({ agentId: 'x0' });
      for (let i = 1; i <= 20; i += 1) await log.append([connected(`x${i}`)]);
      log.wake();
      await new Promise((r) => setTimeout(r, 200));
      const err = await iterator.next().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WatcherTooSlowError);
      expect(err).toMatchObject({ cursor: 1 });
      log.close();
    });

    it.skipIf(subject.name === 'memory')(
      'records every PROUT history entry as an event, in the same transaction',
      async () => {
        const { log, history } = await subject.open();
        await log.append([connected('host-a')]);
        await history!(prout(1));
        await history!(prout(2, { outcome: 'OUTCOME_UNKNOWN' }));
        await history!(prout(3, { outcome: 'RECONCILED_APPLIED' }));
        const { events } = await log.readAfter(0);
        expect(events.map((e) => [Number(e.cursor), e.kind])).toEqual([
          [1, EventKind.EVENT_KIND_AGENT_CONNECTED],
          [2, EventKind.EVENT_KIND_PROUT],
          [3, EventKind.EVENT_KIND_PROUT],
          [4, EventKind.EVENT_KIND_PROUT_VERDICT],
        ]);
        expect(events[2]).toMatchObject({
          agentId: 'host-a',
          luId: 'naa.1',
          path: '/dev/sg2',
          actor: 'alice',
        });
        expect(events[2]!.detail).toMatchObject({
          $case: 'prout',
          value: { serviceActionKey: 0xa2n, outcome: Outcome.OUTCOME_UNKNOWN },
        });
        expect(events[3]!.detail).toMatchObject({
          value: { verdict: 'RECONCILED_APPLIED', historySeq: 3n },
        });
        log.close();
      },
    );

    it.skipIf(subject.name !== 'pg')(
      'another instance sharing the database serves the same events, in the same order',
      async () => {
        const { log, sibling } = await subject.open();
        const other = await sibling!();
        const ac = new AbortController();
        const seen = take(other.subscribe({ after: 0, signal: ac.signal }), 40);
        await new Promise((r) => setTimeout(r, 100));
        await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (i % 2 ? log : other).append([connected(`r${i}`), connected(`s${i}`)]),
          ),
        );
        const events = await seen;
        expect(events.map((e) => Number(e.cursor))).toEqual(
          Array.from({ length: 40 }, (_, i) => i + 1),
        );
        ac.abort();
        log.close();
        other.close();
      },
    );
  });
});
