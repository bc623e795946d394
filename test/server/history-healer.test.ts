/**
 * A history entry the completion could not write (the database refused it for longer than the completion's own
 * retries) is appended by the running server once the database takes it again, not only at the next start; the
 * appends of such gaps never write an entry twice.
 */
import { describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import type { HistoryEntryInput } from '../../src/server/store/index.js';
import { adminQuery, pgStoreWithSchema } from '../helpers/pg-store.js';
import { startTestServer } from '../helpers/server.js';
import { probePg } from '../store/backends.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';

const skip = (await probePg()) !== undefined && process.env['CI'] !== 'true';
const LU1 = 'naa.5000e11100000001';

describe.skipIf(skip)('history gaps while the server runs (PostgreSQL)', () => {
  it('appends the entry of a PROUT whose history write failed once the database takes it again', async () => {
    const { store, schema } = await pgStoreWithSchema('heal');
    await adminQuery(`
      CREATE FUNCTION ${schema}.refuse_history() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'history refused by the test'; END $$;
      CREATE TRIGGER refuse_history BEFORE INSERT ON ${schema}.history
        FOR EACH ROW EXECUTE FUNCTION ${schema}.refuse_history();`);
    const started = await startTestServer({ deps: { store } });
    const agent = await connectFakeAgent(started.address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => started.server.agents.get('host-a')?.paths.length).toBe(1);
    const { client } = started;

    const pending = client.register({
      target: { agentId: 'host-a', path: '/dev/sg0' },
      newKey: 0xa1n,
      options: { idempotencyKey: 'heal-1' },
    });
    agent.respond(await agent.nextCommand(), {});
    expect((await pending).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    // The completion gave up on the history (its retries take ~2.6 s); the journal holds the answer.
    expect((await client.listHistory({})).entries).toEqual([]);
    expect((await client.verifyHistory({})).ok).toBe(false);

    await adminQuery(`DROP TRIGGER refuse_history ON ${schema}.history`);
    await expect
      .poll(async () => (await client.listHistory({})).entries.map((e) => e.idempotencyKey), {
        timeout: 15_000,
        interval: 250,
      })
      .toEqual(['heal-1']);
    expect(await client.verifyHistory({})).toMatchObject({ ok: true, checked: 1n });
  }, 30_000);

  it('appends a missing entry once when two servers close the same gap at once', async () => {
    const { store } = await pgStoreWithSchema('heal2');
    const entry: HistoryEntryInput = {
      actor: 'anonymous',
      agentId: 'host-a',
      path: '/dev/sg0',
      luId: LU1,
      action: 'REGISTER',
      reservationKey: 0n,
      serviceActionKey: 0xa1n,
      outcome: 'GOOD',
      idempotencyKey: 'gap-1',
    };
    const appended = await Promise.all([
      store.history.appendMissing(entry),
      store.history.appendMissing(entry),
      store.history.appendMissing({ ...entry, idempotencyKey: 'gap-2' }),
    ]);
    expect(appended.filter((e) => e !== undefined)).toHaveLength(2);
    expect((await store.history.list()).map((e) => e.idempotencyKey).sort()).toEqual([
      'gap-1',
      'gap-2',
    ]);
  });
});
