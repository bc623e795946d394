/**
 * The built prfleet-server on an embedded data directory, as an operator runs it: the store's open time is
 * logged, a second server on the same directory exits at once with advice, a SIGKILL mid-PROUT leaves the key
 * pending and the restarted server answers it UNKNOWN, and SIGTERM closes the store after the drain.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { createControlClient } from '../../src/common/client.js';
import { builtBinaries, spawnNode, type ChildHandle } from '../../src/demo/processes.js';
import { ensureBuilt } from '../helpers/processes.js';
import { MIGRATIONS } from '../../src/server/store/migrations.js';
import { answerReconcileReads, connectFakeAgent, fakePath } from './fake-agent.js';

const LU = 'naa.5000e111000000fe';
/** A second LU: PROUTs to one LU wait for each other, and the first one here never gets its result. */
const LU2 = 'naa.5000e111000000ff';
/** PGlite's first open of a new directory takes 7–47 s on this machine under load. */
const OPEN_TIMEOUT_MS = 120_000;

function startServer(env: Record<string, string>): ChildHandle {
  const child = spawnNode(builtBinaries().server, [], {
    name: 'prfleet-server',
    // No observation: it would read the fake agent's LUs as they appear, and the test answers each command itself.
    env: { PRFLEET_PLAINTEXT: 'true', PRFLEET_OBSERVE_INTERVAL_MS: '0', ...env },
  });
  onTestFinished(async () => {
    if (!child.hasExited()) await child.stop({ signal: 'SIGKILL' });
  });
  return child;
}

async function listeningAddress(child: ChildHandle): Promise<string> {
  const entry = await child.waitForLog((e) => e['msg'] === 'listening', OPEN_TIMEOUT_MS);
  return `127.0.0.1:${String(entry['port'])}`;
}

describe('prfleet-server on a data directory', () => {
  it('logs the open, refuses a second server on the directory, and answers UNKNOWN for a PROUT cut off by SIGKILL', async () => {
    await ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'prfleet-proc-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const env = {
      PORT: '0',
      PRFLEET_HOST: '127.0.0.1',
      PRFLEET_DATA_DIR: join(dir, 'data'),
      PRFLEET_INSTANCE_ID: 'proc-1',
      PRFLEET_LOG_LEVEL: 'info',
      PRFLEET_STORE: '',
      DATABASE_URL: '',
    };

    const first = startServer(env);
    const opened = await first.waitForLog((e) => e['msg'] === 'store open', OPEN_TIMEOUT_MS);
    expect(opened).toMatchObject({ schemaVersion: MIGRATIONS.length, location: join(dir, 'data') });
    console.info(`store-process: first open of the data directory took ${String(opened['ms'])} ms`);
    const address = await listeningAddress(first);

    const second = startServer(env);
    const refused = await second.exited;
    expect(refused.code).toBe(1);
    const said = second.lines.join('\n');
    expect(said).toContain(`is in use by process ${first.pid}`);
    expect(said).toContain('Only one prfleet-server may use a data directory');

    // A PROUT reaches the agent, which never answers; then the server dies without any cleanup.
    const agent = await connectFakeAgent(address, {
      agentId: 'host-k',
      paths: [fakePath('/dev/sg5', LU), fakePath('/dev/sg6', LU2)],
    });
    // A client that sends no idempotency key of its own (prfleet's helpers always do).
    const client = createControlClient(address, { idempotencyKeys: false });
    onTestFinished(() => client.close());
    const target = { luId: LU, agentId: 'host-k', path: '/dev/sg5' };
    await expect.poll(async () => (await client.listDevices({})).logicalUnits.length).toBe(2);
    const call = client
      .register({ target, newKey: 0x5n, options: { idempotencyKey: 'cut-off' } })
      .catch((e: unknown) => e);
    await agent.nextCommand();
    // One without an idempotency key too: the server journals it under a key it assigns.
    const unkeyed = client
      .reserve({
        target: { luId: LU2, agentId: 'host-k', path: '/dev/sg6' },
        key: 0x5n,
        type: 3,
        options: { reason: 'nightly backup' },
      })
      .catch((e: unknown) => e);
    const reserveSent = await agent.nextCommand();
    expect(reserveSent.idempotencyKey).toMatch(/^prfleet-assigned:/);
    first.signal('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await Promise.all([call, unkeyed]);

    // Same directory, same instance id: the stale lock is taken over and the pending key becomes UNKNOWN.
    const third = startServer(env);
    const marked = await third.waitForLog(
      (e) =>
        e['msg'] === 'journal: pending operation marked UNKNOWN' &&
        e['idempotencyKey'] === 'cut-off',
      OPEN_TIMEOUT_MS,
    );
    expect(marked).toMatchObject({
      idempotencyKey: 'cut-off',
      owner: 'proc-1',
      agentId: 'host-k',
      path: '/dev/sg5',
    });
    const again = await listeningAddress(third);
    const fresh = await connectFakeAgent(again, {
      agentId: 'host-k',
      paths: [fakePath('/dev/sg5', LU)],
    });
    const client2 = createControlClient(again);
    onTestFinished(() => client2.close());
    await expect.poll(async () => (await client2.listDevices({})).logicalUnits.length).toBe(1);
    const repeat = client2.register({
      target,
      newKey: 0x5n,
      options: { idempotencyKey: 'cut-off' },
    });
    // The repeat reads the LU to settle the UNKNOWN; the read cannot tell, and the PROUT is never sent again.
    expect(await answerReconcileReads(fresh, 9)).toEqual(['prin', 'prin']);
    const { result } = await repeat;
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(fresh.received.filter((m) => m.message?.$case === 'command')).toHaveLength(2);
    // Neither PROUT is without a record: both are in the history as UNKNOWN, with their keys and context.
    const { entries } = await client2.listHistory({});
    expect(
      entries.map((e) => [
        e.actionName,
        e.outcome,
        e.reservationKey,
        e.idempotencyKey.replace(/:.*/, ':'),
        e.reason,
      ]),
    ).toEqual(
      expect.arrayContaining([
        ['PROUT_ACTION_REGISTER', Outcome.OUTCOME_UNKNOWN, 0n, 'cut-off', ''],
        [
          'PROUT_ACTION_RESERVE',
          Outcome.OUTCOME_UNKNOWN,
          0x5n,
          'prfleet-assigned:',
          'nightly backup',
        ],
      ]),
    );
    expect(entries).toHaveLength(2);
    expect((await client2.verifyHistory({})).ok).toBe(true);

    const stopped = await third.stop({ graceMs: 15_000 });
    expect(stopped.code).toBe(0);
    const closedAt = third.lines.findIndex((l) => l.includes('"store closed"'));
    const drainedAt = third.lines.findIndex((l) => l.includes('"drained"'));
    expect(drainedAt).toBeGreaterThanOrEqual(0);
    expect(closedAt).toBeGreaterThan(drainedAt);
  }, 300_000);
});
