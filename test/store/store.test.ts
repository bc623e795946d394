import { describe, expect, it } from 'vitest';
import {
  decodeKeyLayout,
  encodeKey,
  formatKey,
  keyFromBytes,
} from '../../src/common/key-layout.js';
import {
  JournalStateError,
  KeySpaceExhaustedError,
  MIGRATIONS,
  MigrationError,
  NotFoundError,
  StoreInputError,
  VersionConflictError,
  migrate,
  type HistoryEntryInput,
  type Store,
} from '../../src/server/store/index.js';
import { CommandResult, Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { createStoreCommandJournal } from '../../src/server/store/index.js';
import { storeBackends } from './backends.js';

const backends = await storeBackends();

const prout = (n: number, over: Partial<HistoryEntryInput> = {}): HistoryEntryInput => ({
  at: new Date(Date.UTC(2025, 0, 1, 0, 0, n)),
  actor: 'alice',
  agentId: `host-${n % 3}`,
  path: `/dev/sg${n}`,
  luId: n % 2 ? 'naa.5000e11100000001' : 'naa.5000e11100000002',
  action: 'PROUT_ACTION_REGISTER',
  reservationKey: 0n,
  serviceActionKey: BigInt(0x1000 + n),
  outcome: 'OUTCOME_GOOD',
  status: 0,
  commandId: `cmd-${n}`,
  ...over,
});

async function count(store: Store, table: string): Promise<number> {
  const r = await store.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return r.rows[0]?.n ?? -1;
}

describe.each(backends)('store on $name', (backend) => {
  describe.skipIf(backend.skipReason !== undefined)('', () => {
    describe('migrations', () => {
      it('applies the schema once and is idempotent on re-run and re-open', async () => {
        const store = await backend.open();
        expect(store.schemaVersion).toBe(MIGRATIONS.length);
        expect(await migrate(store.db)).toEqual([]);
        const again = await backend.openSibling(store);
        expect(again.schemaVersion).toBe(MIGRATIONS.length);
        expect(await count(store, 'schema_migrations')).toBe(MIGRATIONS.length);
      });

      it('lets concurrent starts on one empty schema apply each migration exactly once', async () => {
        const schema = backend.newSchema();
        const racers = await Promise.all([1, 2, 3, 4].map(() => backend.open(schema)));
        for (const s of racers) expect(s.schemaVersion).toBe(MIGRATIONS.length);
        expect(await count(racers[0] as Store, 'schema_migrations')).toBe(MIGRATIONS.length);
        expect(await count(racers[0] as Store, 'history_head')).toBe(1);
      });

      it('refuses an applied migration that was edited, and a database newer than the code', async () => {
        const store = await backend.open();
        const edited = MIGRATIONS.map((m) => ({ ...m, sql: `${m.sql}\n-- edited` }));
        await expect(migrate(store.db, { migrations: edited })).rejects.toThrowError(
          new MigrationError(
            `migration 1 (${MIGRATIONS[0]?.name}) was edited after it was applied: checksum differs`,
          ),
        );
        await store.db.query(
          `INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', repeat('0', 64))`,
        );
        await expect(migrate(store.db)).rejects.toThrowError(
          /schema version 99 \(future\) is newer than this prfleet/,
        );
      });
    });

    describe('key registry', () => {
      it('allocates self-describing keys and records their owner', async () => {
        const { keys } = await backend.open();
        const a = await keys.allocate({
          site: 'lab',
          agentId: 'host-a',
          purpose: 'backup',
          owner: 'backup-team',
        });
        const b = await keys.allocate({
          site: 'lab',
          agentId: 'host-b',
          purpose: 'backup',
          owner: 'backup-team',
        });
        const c = await keys.allocate({
          site: 'dr',
          agentId: 'host-c',
          purpose: 'restore',
          owner: 'ops',
          note: 'drill',
        });
        expect(a.layout).toEqual({
          version: 1,
          siteCode: 1,
          hostId: 1,
          purpose: 'backup',
          purposeCode: 1,
          serial: 0,
        });
        expect(b.layout).toMatchObject({ siteCode: 1, hostId: 2 });
        expect(c.layout).toMatchObject({ siteCode: 2, hostId: 1, purpose: 'restore' });
        expect(a.formatted).toBe(
          formatKey(encodeKey({ siteCode: 1, hostId: 1, purpose: 'backup', serial: 0 })),
        );
        expect(await keys.get(c.key)).toEqual(c);
        expect(await keys.sites()).toEqual([
          { name: 'lab', code: 1 },
          { name: 'dr', code: 2 },
        ]);
        expect((await keys.list({ site: 'lab' })).map((k) => k.agentId)).toEqual([
          'host-a',
          'host-b',
        ]);
      });

      it('never reissues a key: revoked keys stay taken, and a 17th key moves the agent to a fresh host id', async () => {
        const { keys } = await backend.open();
        const issued = [];
        for (let i = 0; i < 17; i++) {
          const k = await keys.allocate({
            site: 'lab',
            agentId: 'host-a',
            purpose: 'backup',
            owner: 'o',
          });
          if (i === 0) await keys.revoke(k.key, { by: 'admin', reason: 'rotated' });
          issued.push(k);
        }
        expect(new Set(issued.map((k) => k.key)).size).toBe(17);
        expect(issued.slice(0, 16).map((k) => k.layout?.serial)).toEqual([...Array(16).keys()]);
        expect(issued[16]?.layout).toMatchObject({ hostId: 2, serial: 0 });
        const other = await keys.allocate({
          site: 'lab',
          agentId: 'host-b',
          purpose: 'backup',
          owner: 'o',
        });
        expect(other.layout?.hostId).toBe(3);
        expect((await keys.findActive('host-a', 'backup'))?.key).toBe(issued[16]?.key);
        expect(await keys.list({ agentId: 'host-a' })).toHaveLength(16);
        expect(await keys.list({ agentId: 'host-a', includeRevoked: true })).toHaveLength(17);
      });

      it('hands out unique keys to concurrent allocations from two servers', async () => {
        const one = await backend.open();
        const two = await backend.openSibling(one);
        const results = await Promise.all(
          Array.from({ length: 24 }, (_, i) =>
            (i % 2 ? one : two).keys.allocate({
              site: i % 3 ? 'lab' : 'dr',
              agentId: `host-${i % 4}`,
              purpose: 'backup',
              owner: 'o',
            }),
          ),
        );
        const unique = new Set(results.map((r) => r.key));
        expect(unique.size).toBe(24);
        for (const r of results) expect(decodeKeyLayout(r.key).ok).toBe(true);
        expect(await count(one, 'reservation_keys')).toBe(24);
      });

      it('revokes, refuses unknown keys, and keeps the first revocation', async () => {
        const { keys } = await backend.open();
        const k = await keys.allocate({
          site: 'lab',
          agentId: 'host-a',
          purpose: 'admin',
          owner: 'o',
        });
        const revoked = await keys.revoke(k.key, { by: 'bob', reason: 'host retired' });
        expect(revoked).toMatchObject({ revokedBy: 'bob', revokeReason: 'host retired' });
        expect(revoked.revokedAt).toBeInstanceOf(Date);
        expect(await keys.revoke(k.key, { by: 'carol' })).toEqual(revoked);
        await expect(keys.revoke(0x77n, { by: 'bob' })).rejects.toThrowError(
          new NotFoundError('unknown key: 0x0000000000000077 is not in the registry'),
        );
        expect(await keys.findActive('host-a', 'admin')).toBeUndefined();
      });

      it('refuses bad input with the field named, writing nothing', async () => {
        const store = await backend.open();
        const bad = { site: 'lab', agentId: 'host-a', purpose: 'fencing', owner: 'o' } as never;
        await expect(store.keys.allocate(bad)).rejects.toMatchObject({
          name: 'StoreInputError',
          field: 'purpose',
        });
        await expect(
          store.keys.allocate({ site: '', agentId: 'a', purpose: 'backup', owner: 'o' }),
        ).rejects.toThrowError(StoreInputError);
        await expect(
          store.keys.adopt({ key: 0n, purpose: 'backup', owner: 'o' }),
        ).rejects.toThrowError(/0 means "no key"/);
        await expect(
          store.keys.adopt({ key: -5n, purpose: 'backup', owner: 'o' }),
        ).rejects.toMatchObject({ field: 'key' });
        expect(await count(store, 'reservation_keys')).toBe(0);
        expect(await count(store, 'key_sites')).toBe(0);
      });

      it('says clearly when site codes or host ids run out', async () => {
        const store = await backend.open();
        await store.db.query(
          `INSERT INTO key_sites (code, name) SELECT g, 'site-' || g FROM generate_series(1, 65535) g`,
        );
        await expect(
          store.keys.allocate({
            site: 'one-too-many',
            agentId: 'a',
            purpose: 'backup',
            owner: 'o',
          }),
        ).rejects.toThrowError(
          new KeySpaceExhaustedError(
            'no site code left: all 65535 site codes are assigned; site "one-too-many" cannot be added',
          ),
        );
        await store.db.query(
          `INSERT INTO key_hosts (site_code, host_id, agent_id) SELECT 7, g, 'agent-' || g FROM generate_series(1, 65535) g`,
        );
        await expect(
          store.keys.allocate({
            site: 'site-7',
            agentId: 'newcomer',
            purpose: 'backup',
            owner: 'o',
          }),
        ).rejects.toThrowError(
          /no host id left in site "site-7" \(code 7\): all 65535 are assigned/,
        );
        const existing = await store.keys.allocate({
          site: 'site-7',
          agentId: 'agent-9',
          purpose: 'backup',
          owner: 'o',
        });
        expect(existing.layout).toMatchObject({ siteCode: 7, hostId: 9 });
        // A deleted site frees its code again.
        await store.db.query(`DELETE FROM key_sites WHERE code = 500`);
        const reused = await store.keys.allocate({
          site: 'new-site',
          agentId: 'a',
          purpose: 'backup',
          owner: 'o',
        });
        expect(reused.layout?.siteCode).toBe(500);
      });

      it('decodes registry, foreign and unknown keys', async () => {
        const { keys } = await backend.open();
        const mine = await keys.allocate({
          site: 'lab',
          agentId: 'host-a',
          purpose: 'backup',
          owner: 'backup-team',
        });
        const legacy = keyFromBytes(new TextEncoder().encode('BACKUP01'));
        await keys.adopt({
          key: legacy,
          purpose: 'backup',
          owner: 'legacy-netbackup',
          agentId: 'host-z',
          site: 'lab',
        });
        await expect(
          keys.adopt({ key: legacy, purpose: 'backup', owner: 'x' }),
        ).rejects.toThrowError(/is already in the registry/);

        const r1 = await keys.decodeKey(mine.key);
        expect(r1).toMatchObject({
          kind: 'registry',
          record: { agentId: 'host-a', owner: 'backup-team', origin: 'allocated' },
        });
        expect(r1.summary).toBe('backup key of host-a at lab, owner backup-team, allocated, valid');
        expect(await keys.decodeKey(legacy)).toMatchObject({
          kind: 'registry',
          record: { origin: 'adopted', layout: null },
        });

        const stranger = encodeKey({ siteCode: 40, hostId: 2, purpose: 'restore', serial: 1 });
        expect(await keys.decodeKey(stranger)).toMatchObject({
          kind: 'prfleet-unregistered',
          formatted: formatKey(stranger),
        });
        expect(
          await keys.decodeKey(keyFromBytes(new TextEncoder().encode('NBU-0001'))),
        ).toMatchObject({ kind: 'ascii', text: 'NBU-0001' });
        expect(await keys.decodeKey(0x77n)).toMatchObject({ kind: 'small-integer', value: 0x77 });
        expect(await keys.decodeKey(0xdeadbeefcafef00dn)).toMatchObject({ kind: 'unknown' });
      });

      it('skips the serial of an adopted prfleet-layout key so it is never issued twice', async () => {
        const { keys } = await backend.open();
        const first = await keys.allocate({
          site: 'lab',
          agentId: 'host-a',
          purpose: 'backup',
          owner: 'o',
        });
        const foreign = encodeKey({ siteCode: 1, hostId: 1, purpose: 'backup', serial: 1 });
        await keys.adopt({ key: foreign, purpose: 'backup', owner: 'other-registry' });
        const next = await keys.allocate({
          site: 'lab',
          agentId: 'host-a',
          purpose: 'backup',
          owner: 'o',
        });
        expect(first.layout?.serial).toBe(0);
        expect(next.layout?.serial).toBe(2);
      });
    });

    describe('operation journal', () => {
      const request = {
        method: 'Reserve',
        target: { agentId: 'host-a', path: '/dev/sg3' },
        key: '0x0000000000000077',
      };

      it('starts a key once, returns the entry on repeats, and refuses a reused key with another request', async () => {
        const { journal } = await backend.open();
        const first = await journal.begin({
          idempotencyKey: 'k1',
          request,
          commandId: 'c1',
          owner: 'server-1',
        });
        expect(first).toMatchObject({
          kind: 'started',
          entry: { state: 'pending', commandId: 'c1', result: null },
        });
        const reordered = {
          key: request.key,
          target: { path: '/dev/sg3', agentId: 'host-a' },
          method: 'Reserve',
        };
        expect(await journal.begin({ idempotencyKey: 'k1', request: reordered })).toMatchObject({
          kind: 'existing',
        });
        expect(
          await journal.begin({ idempotencyKey: 'k1', request: { ...request, key: '0x78' } }),
        ).toMatchObject({
          kind: 'mismatch',
          entry: { request },
        });
      });

      it('lets exactly one of many concurrent begins start, across two servers', async () => {
        const one = await backend.open();
        const two = await backend.openSibling(one);
        const outcomes = await Promise.all(
          Array.from({ length: 16 }, (_, i) =>
            (i % 2 ? one : two).journal.begin({ idempotencyKey: 'race', request, owner: `s${i}` }),
          ),
        );
        expect(outcomes.filter((o) => o.kind === 'started')).toHaveLength(1);
        expect(outcomes.filter((o) => o.kind === 'existing')).toHaveLength(15);
      });

      it('moves pending → done once, pending → unknown idempotently, and unknown → done for a late result', async () => {
        const { journal } = await backend.open();
        await journal.begin({ idempotencyKey: 'a', request, owner: 'server-1' });
        await journal.begin({ idempotencyKey: 'b', request, owner: 'server-2' });
        const done = await journal.complete('a', { outcome: 'OUTCOME_GOOD', status: 0 });
        expect(done).toMatchObject({
          state: 'done',
          result: { outcome: 'OUTCOME_GOOD', status: 0 },
        });
        await expect(journal.complete('a', { outcome: 'OUTCOME_GOOD' })).rejects.toThrowError(
          new JournalStateError('idempotency key "a" is done; cannot mark it done'),
        );
        await expect(journal.markUnknown('a', {})).rejects.toThrowError(JournalStateError);
        expect((await journal.listPending()).map((e) => e.idempotencyKey)).toEqual(['b']);
        expect(await journal.listPending({ owner: 'server-1' })).toEqual([]);
        const unknown = await journal.markUnknown('b', {
          outcome: 'OUTCOME_UNKNOWN',
          message: 'agent vanished',
        });
        expect(unknown.state).toBe('unknown');
        expect(await journal.markUnknown('b', { outcome: 'OUTCOME_UNKNOWN' })).toEqual(unknown);
        expect(
          await journal.complete('b', { outcome: 'OUTCOME_RESERVATION_CONFLICT' }),
        ).toMatchObject({ state: 'done' });
        await expect(journal.complete('nope', {})).rejects.toThrowError(NotFoundError);
        expect(await journal.purge(new Date(Date.now() + 60_000))).toBe(2);
        expect(await journal.get('a')).toBeUndefined();
      });

      it('refuses what JSON cannot hold, writing nothing', async () => {
        const store = await backend.open();
        await expect(
          store.journal.begin({ idempotencyKey: 'x', request: { key: 1n } as never }),
        ).rejects.toThrowError(
          new StoreInputError(
            'request.key',
            'invalid JSON at request.key: 1n cannot be stored as JSON',
          ),
        );
        await expect(store.journal.begin({ idempotencyKey: '', request })).rejects.toMatchObject({
          field: 'idempotencyKey',
        });
        expect(await count(store, 'operations')).toBe(0);
      });
    });

    describe("CommandJournal adapter (the server executor's interface)", () => {
      const request = { agentId: 'host-a', path: '/dev/sg3', fingerprint: 'reserve:0x77:3' };
      const good = CommandResult.fromPartial({
        commandId: 'c1',
        outcome: Outcome.OUTCOME_GOOD,
        agentId: 'host-a',
        path: '/dev/sg3',
        cdb: Buffer.from([0x5f, 1]),
      });

      it('claims a key once and hands a waiting repeat on another server the result', async () => {
        const one = await backend.open();
        const two = await backend.openSibling(one);
        const a = createStoreCommandJournal(one.journal, { owner: 'server-1', pollMs: 20 });
        const b = createStoreCommandJournal(two.journal, { owner: 'server-2', pollMs: 20 });
        expect(await a.begin('k', request)).toEqual({ kind: 'started' });
        expect(await b.begin('k', { ...request, fingerprint: 'other' })).toEqual({
          kind: 'exists',
          entry: { state: 'in-flight', request },
        });
        const waiting = b.wait('k');
        await a.complete('k', good);
        expect(await waiting).toEqual(good);
        expect(await b.get('k')).toEqual({ state: 'completed', request, result: good });
        await a.complete('k', { ...good, outcome: Outcome.OUTCOME_RESERVATION_CONFLICT }); // first result wins
        expect((await a.get('k')) as { result: CommandResult }).toMatchObject({
          result: { outcome: Outcome.OUTCOME_GOOD },
        });
      });

      it('records UNKNOWN as an answer, lets a late result replace it, and frees abandoned keys', async () => {
        const store = await backend.open();
        const j = createStoreCommandJournal(store.journal, { pollMs: 20 });
        await j.begin('u', request);
        await j.complete('u', {
          ...good,
          outcome: Outcome.OUTCOME_UNKNOWN,
          message: 'agent vanished',
        });
        expect((await store.journal.get('u'))?.state).toBe('unknown');
        expect(await j.wait('u')).toMatchObject({
          outcome: Outcome.OUTCOME_UNKNOWN,
          message: 'agent vanished',
        });
        await j.complete('u', good);
        expect(await j.wait('u')).toEqual(good);

        await j.begin('never-sent', request);
        const waiter = j.wait('never-sent');
        await j.abandon('never-sent');
        expect(await waiter).toBeUndefined();
        expect(await j.begin('never-sent', request)).toEqual({ kind: 'started' });
        const aborted = new AbortController();
        const pending = j.wait('never-sent', aborted.signal);
        aborted.abort(new Error('caller gone'));
        await expect(pending).rejects.toThrowError('caller gone');
      });
    });

    describe('PROUT history', () => {
      async function withEntries(n: number): Promise<Store> {
        const store = await backend.open();
        for (let i = 1; i <= n; i++) await store.history.append(prout(i));
        return store;
      }
      const tamper = async (store: Store, sql: string) => {
        await store.db.exec(
          `ALTER TABLE history DISABLE TRIGGER history_append_only; ${sql}; ALTER TABLE history ENABLE TRIGGER history_append_only`,
        );
      };

      it('appends a verifiable chain and lists it back', async () => {
        const store = await withEntries(5);
        const verdict = await store.history.verify();
        const all = await store.history.list();
        expect(verdict).toEqual({ ok: true, count: 5, headHash: all[4]?.hash });
        expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(all[0]).toMatchObject({
          prevHash: '0'.repeat(64),
          serviceActionKey: 0x1001n,
          at: new Date(Date.UTC(2025, 0, 1, 0, 0, 1)),
        });
        expect(all[1]?.prevHash).toBe(all[0]?.hash);
        expect(
          (await store.history.list({ luId: 'naa.5000e11100000001' })).map((e) => e.seq),
        ).toEqual([1, 3, 5]);
        expect((await store.history.list({ afterSeq: 3, limit: 1 })).map((e) => e.seq)).toEqual([
          4,
        ]);
      });

      it('refuses UPDATE and DELETE at the database', async () => {
        const store = await withEntries(1);
        await expect(
          store.db.query(`UPDATE history SET outcome = 'OUTCOME_GOOD'`),
        ).rejects.toThrowError(/append-only: UPDATE refused/);
        await expect(store.db.query(`DELETE FROM history`)).rejects.toThrowError(
          /append-only: DELETE refused/,
        );
      });

      it('detects an edited entry', async () => {
        const store = await withEntries(5);
        await tamper(
          store,
          `UPDATE history SET outcome = 'OUTCOME_RESERVATION_CONFLICT' WHERE seq = 3`,
        );
        expect(await store.history.verify()).toMatchObject({
          ok: false,
          problem: 'edited',
          seq: 3,
          checked: 2,
        });
      });

      it('detects a removed entry', async () => {
        const store = await withEntries(5);
        await tamper(store, `DELETE FROM history WHERE seq = 2`);
        expect(await store.history.verify()).toMatchObject({
          ok: false,
          problem: 'removed',
          seq: 3,
        });
      });

      it('detects reordered entries', async () => {
        const store = await withEntries(5);
        await tamper(
          store,
          `UPDATE history SET seq = 100 WHERE seq = 2; UPDATE history SET seq = 2 WHERE seq = 3; UPDATE history SET seq = 3 WHERE seq = 100`,
        );
        expect(await store.history.verify()).toMatchObject({
          ok: false,
          problem: 'reordered',
          seq: 2,
        });
      });

      it('detects a removed tail and a rewritten entry whose hash was recomputed', async () => {
        const store = await withEntries(5);
        await tamper(store, `DELETE FROM history WHERE seq = 5`);
        expect(await store.history.verify()).toMatchObject({
          ok: false,
          problem: 'truncated',
          seq: 4,
        });
        const other = await withEntries(3);
        await tamper(other, `UPDATE history SET hash = repeat('a', 64) WHERE seq = 2`);
        expect(await other.history.verify()).toMatchObject({
          ok: false,
          problem: 'edited',
          seq: 2,
        });
      });

      it('keeps one chain when two servers append at once', async () => {
        const one = await backend.open();
        const two = await backend.openSibling(one);
        await Promise.all(
          Array.from({ length: 20 }, (_, i) => (i % 2 ? one : two).history.append(prout(i + 1))),
        );
        expect(await one.history.verify()).toMatchObject({ ok: true, count: 20 });
      });

      it('refuses bad entries, appending nothing', async () => {
        const store = await backend.open();
        await expect(store.history.append(prout(1, { reservationKey: -1n }))).rejects.toMatchObject(
          {
            name: 'StoreInputError',
            field: 'reservationKey',
            message: 'invalid reservationKey: -1 is not a uint64',
          },
        );
        await expect(store.history.append(prout(1, { sense: 'zz' }))).rejects.toMatchObject({
          field: 'sense',
        });
        await expect(store.history.append(prout(1, { agentId: '' }))).rejects.toMatchObject({
          field: 'agentId',
        });
        expect(await count(store, 'history')).toBe(0);
        expect(await store.history.verify()).toEqual({
          ok: true,
          count: 0,
          headHash: '0'.repeat(64),
        });
      });
    });

    describe('desired state', () => {
      it('creates, replaces with compare-and-set, lists and removes', async () => {
        const { desired } = await backend.open();
        const scope = { kind: 'loader', id: 'loader-1' } as const;
        const v1 = await desired.put(
          scope,
          { holders: ['host-a'] },
          { actor: 'alice', expectedVersion: 0 },
        );
        expect(v1).toMatchObject({ version: 1, spec: { holders: ['host-a'] }, updatedBy: 'alice' });
        await expect(
          desired.put(scope, {}, { actor: 'bob', expectedVersion: 0 }),
        ).rejects.toThrowError(
          new VersionConflictError(
            'desired state loader/loader-1 is at version 1, not 0: re-read and retry',
          ),
        );
        const v2 = await desired.put(
          scope,
          { holders: ['host-b'] },
          { actor: 'bob', expectedVersion: 1 },
        );
        expect(v2.version).toBe(2);
        await expect(
          desired.put(scope, {}, { actor: 'carol', expectedVersion: 1 }),
        ).rejects.toThrowError(VersionConflictError);
        expect((await desired.put(scope, { holders: [] }, { actor: 'carol' })).version).toBe(3);
        await desired.put(
          { kind: 'group', id: 'backup-pool' },
          { loaders: ['loader-1'] },
          { actor: 'alice' },
        );
        expect((await desired.list()).map((r) => `${r.scope.kind}/${r.scope.id}`)).toEqual([
          'group/backup-pool',
          'loader/loader-1',
        ]);
        expect(await desired.list('group')).toHaveLength(1);
        await expect(desired.remove(scope, { expectedVersion: 2 })).rejects.toThrowError(
          VersionConflictError,
        );
        await desired.remove(scope, { expectedVersion: 3 });
        expect(await desired.get(scope)).toBeUndefined();
        await expect(desired.remove(scope)).rejects.toThrowError(NotFoundError);
        await expect(
          desired.put({ kind: 'rack' as never, id: 'x' }, {}, { actor: 'a' }),
        ).rejects.toMatchObject({ field: 'scope.kind' });
      });
    });
  });
});
