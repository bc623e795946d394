/**
 * Store faults against the built prfleet-server on PostgreSQL: its database connections are terminated twice
 * (pg_terminate_backend, as a failover or an idle-kill does) while clients send keyed PROUTs. The server never
 * exits, a request hit by the fault fails UNAVAILABLE with nothing sent, it serves again as soon as the database
 * answers, and every PROUT answered has exactly one journal entry and one history entry.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Status } from 'nice-grpc';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { createControlClient } from '../../src/common/client.js';
import { summarizeRpcError } from '../../src/common/errors.js';
import { builtBinaries, spawnNode } from '../../src/demo/processes.js';
import { scopedKey } from '../../src/server/commands/keys.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { ensureBuilt } from '../helpers/processes.js';
import { probePg, TEST_DATABASE_URL } from '../store/backends.js';

const unreachable = await probePg();
const skip = unreachable !== undefined && process.env['CI'] !== 'true';

/** Every path to loader 2's drive (one client each, so each has its own nexus). */
const PATHS = [
  { agentId: 'host-a', path: '/dev/sg4' },
  { agentId: 'host-b', path: '/dev/sg3' },
  { agentId: 'host-c', path: '/dev/sg3' },
];

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe.skipIf(skip)('prfleet-server when PostgreSQL drops its connections', () => {
  it('never exits, fails the requests hit UNAVAILABLE, serves again, and loses or repeats no record', async () => {
    await ensureBuilt();
    const tag = randomBytes(3).toString('hex');
    const schema = `prfleet_faults_${process.pid}_${tag}`;
    const appName = `prfleet-faults-${tag}`;
    onTestFinished(async () => {
      await admin((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
    });
    const url = new URL(TEST_DATABASE_URL);
    url.searchParams.set('application_name', appName);
    const server = spawnNode(builtBinaries().server, [], {
      name: 'prfleet-server',
      env: {
        PRFLEET_PLAINTEXT: 'true',
        PORT: '0',
        PRFLEET_HOST: '127.0.0.1',
        DATABASE_URL: url.toString(),
        PRFLEET_DB_SCHEMA: schema,
        PRFLEET_INSTANCE_ID: `faults-${tag}`,
        PRFLEET_LOG_LEVEL: 'info',
        PRFLEET_STORE: '',
        PRFLEET_DATA_DIR: '',
      },
    });
    onTestFinished(async () => {
      if (!server.hasExited()) await server.stop({ signal: 'SIGKILL' });
    });
    const listening = await server.waitForLog((e) => e['msg'] === 'listening', 60_000);
    const address = `127.0.0.1:${String(listening['port'])}`;
    await startEmulatedAgents({ address });
    const client = createControlClient(address);
    onTestFinished(() => client.close());
    await expect
      .poll(async () => (await client.listAgents({})).agents.length, { timeout: 20_000 })
      .toBe(3);

    const terminate = () =>
      admin(async (c) => {
        const r = await c.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
          [appName],
        );
        return r.rowCount ?? 0;
      });
    const answered = new Map<string, Outcome>();
    const refused = new Map<string, { code: number; reason?: string }>();
    let stop = false;
    const clients = PATHS.map(async (target, c) => {
      for (let n = 0; !stop; n++) {
        const key = `fault-${tag}-${c}-${n}`;
        try {
          const { result } = await client.register(
            {
              target,
              newKey: BigInt(0x1000 + c * 0x100 + (n % 0x100)),
              ignoreExistingKey: true,
              options: { idempotencyKey: key },
            },
            { deadline: 20_000 },
          );
          answered.set(key, result?.outcome ?? Outcome.OUTCOME_UNSPECIFIED);
        } catch (e) {
          const summary = summarizeRpcError(e);
          refused.set(key, {
            code: summary?.code ?? -1,
            ...(summary?.reason ? { reason: summary.reason } : {}),
          });
        }
      }
    });
    // Two faults while the clients are busy, each once some PROUTs went through: a burst of terminations, so
    // some land on connections in the middle of a transaction, not only on idle ones.
    let terminated = 0;
    for (const wanted of [20, 60]) {
      await expect.poll(() => answered.size, { timeout: 30_000 }).toBeGreaterThanOrEqual(wanted);
      for (let i = 0; i < 15; i++) {
        terminated += await terminate();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    await expect.poll(() => answered.size, { timeout: 30_000 }).toBeGreaterThanOrEqual(100);
    stop = true;
    await Promise.all(clients);

    expect(terminated).toBeGreaterThan(0);
    expect(server.hasExited()).toBe(false);
    // A request the fault hit was refused before anything was sent, and says so.
    for (const [key, error] of refused) {
      expect({ key, ...error }).toMatchObject({
        code: Status.UNAVAILABLE,
        reason: 'STORE_UNAVAILABLE',
      });
    }
    // Serving again: a fresh PROUT goes through.
    const after = await client.register({
      target: PATHS[0]!,
      newKey: 0x2222n,
      ignoreExistingKey: true,
    });
    expect(after.result?.outcome).toBe(Outcome.OUTCOME_GOOD);

    // One journal entry and one history entry per PROUT answered; none for one refused.
    const journal = await admin(async (c) => {
      const r = await c.query<{ idempotency_key: string; state: string }>(
        `SELECT idempotency_key, state FROM ${schema}.operations WHERE idempotency_key LIKE $1`,
        [`fault-${tag}-%`],
      );
      return new Map(r.rows.map((row) => [row.idempotency_key, row.state]));
    });
    const readHistory = () =>
      admin(async (c) => {
        const r = await c.query<{ idempotency_key: string; n: number }>(
          `SELECT idempotency_key, count(*)::int AS n FROM ${schema}.history WHERE idempotency_key LIKE $1 GROUP BY 1`,
          [`fault-${tag}-%`],
        );
        return new Map(r.rows.map((row) => [row.idempotency_key, row.n]));
      });
    // A completion whose history write outlasted its retries is appended by the running server once the
    // database answers again (commands/history-healer.ts): wait for it, then every PROUT has exactly one entry.
    await expect
      .poll(
        async () => {
          const recorded = await readHistory();
          return [...answered.keys()].filter((k) => !recorded.has(k));
        },
        { timeout: 20_000, interval: 500 },
      )
      .toEqual([]);
    const history = await readHistory();
    for (const [key, outcome] of answered) {
      expect({ key, outcome }).toEqual({ key, outcome: Outcome.OUTCOME_GOOD });
      expect({ key, state: journal.get(scopedKey('anonymous', key)) }).toEqual({
        key,
        state: 'done',
      });
      expect({ key, entries: history.get(key) }).toEqual({ key, entries: 1 });
    }
    for (const key of refused.keys()) {
      expect({ key, journaled: journal.has(key), history: history.has(key) }).toEqual({
        key,
        journaled: false,
        history: false,
      });
    }
    expect((await client.verifyHistory({})).ok).toBe(true);
    // The server's output stayed JSON lines, the faults logged.
    for (const line of server.lines) expect(() => JSON.parse(line) as unknown, line).not.toThrow();
    console.info(
      `store-faults: ${answered.size} PROUTs answered, ${refused.size} refused UNAVAILABLE, ${terminated} connections terminated`,
    );
  }, 180_000);
});
