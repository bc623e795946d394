/**
 * Fault injection under load (issue 19): the built prfleet-server on PostgreSQL (a schema of its own), a few
 * hundred emulated agents in one child process (bench/agent-swarm.ts; their devices count every PROUT they
 * execute) and tens of clients sending keyed PROUTs and reads, while the test terminates the server's database
 * connections twice, SIGSTOPs the agents for a while then SIGCONTs them, and SIGKILLs and restarts the server.
 *
 * Then: the server never exited on its own; every PROUT a device executed ran once and has exactly one journal
 * entry (settled) and one history entry; no PROUT a device never executed has a GOOD record; every answer GOOD
 * was executed; a repeat of an executed key gets its recorded result and sends nothing; VerifyHistory holds; the
 * server's stdout and stderr were JSON lines only. Sizes: PRFLEET_FAULTS_AGENTS (300), PRFLEET_FAULTS_CLIENTS (24).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startAgentSwarm, type AgentSwarm } from '../../bench/agent-swarm.js';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import { summarizeRpcError } from '../../src/common/errors.js';
import { delay } from '../../src/common/delay.js';
import { listAllAgents } from '../../src/common/pages.js';
import { builtBinaries, spawnNode, type ChildHandle } from '../../src/demo/processes.js';
import { Outcome, outcomeToJSON } from '../../src/gen/prfleet/v1/scsi.js';
import { scopedKey } from '../../src/server/commands/keys.js';
import { ensureBuilt } from '../helpers/processes.js';
import { probePg, TEST_DATABASE_URL } from '../store/backends.js';

const unreachable = await probePg();
const skip = unreachable !== undefined && process.env['CI'] !== 'true';

const AGENTS = Number(process.env['PRFLEET_FAULTS_AGENTS'] ?? 300);
const CLIENTS = Number(process.env['PRFLEET_FAULTS_CLIENTS'] ?? 24);
/** Of the clients, these send PROUTs; the others read. */
const PROUT_CLIENTS = Math.max(1, Math.round((CLIENTS * 2) / 3));
/** GOOD answers between two faults: enough that each fault lands on a busy server. */
const STEP = 60;

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** One PROUT a client sent: REGISTER AND IGNORE EXISTING KEY with a key no other PROUT uses. */
interface Sent {
  readonly idempotencyKey: string;
  readonly agentId: string;
  readonly newKey: bigint;
  answer?: Outcome;
  error?: string;
}

const hex = (key: bigint) => key.toString(16).padStart(16, '0');

/** The built server, restartable on the same port (agents and clients reconnect to the address they know). */
function serverRunner(tag: string, schema: string, appName: string) {
  const url = new URL(TEST_DATABASE_URL);
  url.searchParams.set('application_name', appName);
  const notJson: string[] = [];
  const unexpectedExits: string[] = [];
  let current: ChildHandle | undefined;
  let killing = false;
  const checkLine = (line: string) => {
    try {
      JSON.parse(line);
    } catch {
      notJson.push(line);
    }
  };
  async function start(port: number): Promise<number> {
    const handle = spawnNode(builtBinaries().server, [], {
      name: 'prfleet-server',
      onLine: checkLine,
      env: {
        PRFLEET_PLAINTEXT: 'true',
        PORT: String(port),
        PRFLEET_HOST: '127.0.0.1',
        DATABASE_URL: url.toString(),
        PRFLEET_DB_SCHEMA: schema,
        // The same id in both lives: the restarted server settles what the killed one left pending.
        PRFLEET_INSTANCE_ID: `faults-${tag}`,
        PRFLEET_LOG_LEVEL: 'info',
        PRFLEET_STORE: '',
        PRFLEET_DATA_DIR: '',
      },
    });
    current = handle;
    void handle.exited.then((exit) => {
      if (!killing)
        unexpectedExits.push(`${JSON.stringify(exit)}: ${handle.lines.slice(-40).join('\n')}`);
    });
    const listening = await handle.waitForLog((e) => e['msg'] === 'listening', 60_000);
    return Number(listening['port']);
  }
  return {
    start,
    notJson,
    unexpectedExits,
    alive: () => current !== undefined && !current.hasExited(),
    /** The current server's last output lines (for a failure's message). */
    tail: (n = 30) => current?.lines.slice(-n).join('\n') ?? '',
    async kill() {
      killing = true;
      await current?.stop({ signal: 'SIGKILL' });
      killing = false;
    },
  };
}

describe.skipIf(skip)(
  'faults under load: database connections, agents stopped, server killed',
  () => {
    it('never exits on its own and loses, repeats or invents no PROUT record', async () => {
      await ensureBuilt();
      const tag = randomBytes(3).toString('hex');
      const schema = `prfleet_fi_${process.pid}_${tag}`;
      const appName = `prfleet-fi-${tag}`;
      onTestFinished(async () => {
        await admin((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
      });
      const server = serverRunner(tag, schema, appName);
      onTestFinished(() => server.kill());
      const port = await server.start(0);
      const address = `127.0.0.1:${port}`;
      const swarm: AgentSwarm = await startAgentSwarm({ server: address, hosts: AGENTS });
      onTestFinished(() => swarm.stop());
      const clients: ControlClient[] = Array.from({ length: 4 }, () =>
        createControlClient(address),
      );
      onTestFinished(() => clients.forEach((c) => c.close()));
      const admin0 = clients[0]!;
      const connected = async () => (await listAllAgents(admin0)).filter((a) => a.connected).length;
      await expect.poll(connected, { timeout: 60_000, interval: 500 }).toBe(AGENTS);

      const load = startLoad(clients, swarm.agentIds, tag);
      const good = () => load.good;
      // Waits for `more` GOOD answers; fails at once, with its output, when the server exited on its own.
      const untilGood = async (more: number) => {
        const wanted = good() + more;
        const deadline = Date.now() + 60_000;
        while (good() < wanted) {
          if (server.unexpectedExits.length > 0)
            throw new Error(`the server exited on its own:\n${server.unexpectedExits.join('\n')}`);
          if (Date.now() > deadline)
            throw new Error(
              `no progress: ${good()} of ${wanted} GOOD; errors ${JSON.stringify(Object.fromEntries(load.errors))}\n${server.tail()}`,
            );
          await delay(100);
        }
      };
      const terminate = () =>
        admin(async (c) => {
          const r = await c.query(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
            [appName],
          );
          return r.rowCount ?? 0;
        });

      // Faults 1 and 2: the database drops the server's connections (a burst, so some land mid-transaction).
      let terminated = 0;
      for (let fault = 0; fault < 2; fault++) {
        await untilGood(STEP);
        for (let i = 0; i < 15; i++) {
          terminated += await terminate();
          await delay(20);
        }
      }
      // Fault 3: every agent stops (SIGSTOP) with commands in flight, then continues.
      await untilGood(STEP);
      swarm.handle.signal('SIGSTOP');
      await delay(4_000);
      swarm.handle.signal('SIGCONT');
      // Fault 4: the server is SIGKILLed mid-load and restarted on the same port.
      await untilGood(STEP);
      await server.kill();
      await server.start(port);
      await expect.poll(connected, { timeout: 60_000, interval: 500 }).toBe(AGENTS);
      await untilGood(STEP);
      await load.stop();

      expect(terminated).toBeGreaterThan(0);
      expect(server.unexpectedExits).toEqual([]);
      expect(server.alive()).toBe(true);

      // Nothing stays pending: in-flight PROUTs were answered, and the restart settled the killed server's.
      await expect
        .poll(async () => [...(await journalOf(schema, tag)).values()].filter(pending).length, {
          timeout: 60_000,
          interval: 500,
        })
        .toBe(0);
      const entries = await journalOf(schema, tag);
      const executed = await swarm.counts();
      const sent = load.sent;
      expect(problemsOf(sent, executed, entries, await historyOf(schema, tag))).toEqual([]);

      const repeats = await repeatExecuted(admin0, sent, executed, entries);
      const after = await swarm.counts();
      for (const s of repeats)
        expect({ key: s.idempotencyKey, n: after.get(hex(s.newKey)) }).toEqual({
          key: s.idempotencyKey,
          n: 1,
        });
      expect((await admin0.verifyHistory({})).ok).toBe(true);
      expect(server.notJson).toEqual([]);
      expect(server.unexpectedExits).toEqual([]);
      const unknown = [...entries.values()].filter((e) => e.state === 'unknown').length;
      console.info(
        `fault-injection: ${AGENTS} agents, ${CLIENTS} clients; ${sent.size} PROUTs sent, ${executed.size} executed, ` +
          `${load.good} answered GOOD, ${unknown} UNKNOWN, errors ${JSON.stringify(Object.fromEntries(load.errors))}, ` +
          `${load.reads} reads, ${terminated} connections terminated, ${repeats.length} repeats`,
      );
    }, 240_000);
  },
);

/** The journal entries of this run's keys (scoped by principal), by key. */
async function journalOf(schema: string, tag: string) {
  return admin(async (c) => {
    const r = await c.query<{ idempotency_key: string; state: string }>(
      `SELECT idempotency_key, state FROM ${schema}.operations WHERE idempotency_key LIKE $1`,
      [`%ft-${tag}-%`],
    );
    return new Map(r.rows.map((row) => [row.idempotency_key, row]));
  });
}

const pending = (e: { state: string }) => e.state === 'pending';

/** The history entries' outcomes of this run's keys, by key. */
async function historyOf(schema: string, tag: string) {
  return admin(async (c) => {
    const r = await c.query<{ idempotency_key: string; outcome: string }>(
      `SELECT idempotency_key, outcome FROM ${schema}.history WHERE idempotency_key LIKE $1`,
      [`ft-${tag}-%`],
    );
    const byKey = new Map<string, string[]>();
    for (const row of r.rows)
      byKey.set(row.idempotency_key, [...(byKey.get(row.idempotency_key) ?? []), row.outcome]);
    return byKey;
  });
}

/**
 * What breaks "every executed PROUT ran once, with one settled journal entry and one history entry; nothing
 * answered GOOD or recorded GOOD without running".
 */
function problemsOf(
  sent: ReadonlyMap<string, Sent>,
  executed: ReadonlyMap<string, number>,
  entries: ReadonlyMap<string, { state: string }>,
  history: ReadonlyMap<string, string[]>,
): string[] {
  const bySaKey = new Map([...sent.values()].map((s) => [hex(s.newKey), s]));
  const problems: string[] = [];
  for (const [saKey, n] of executed) {
    const s = bySaKey.get(saKey);
    if (s === undefined) {
      problems.push(`${saKey}: executed ${n}× but no client sent it`);
      continue;
    }
    const entry = entries.get(scopedKey('anonymous', s.idempotencyKey));
    const records = history.get(s.idempotencyKey) ?? [];
    if (n !== 1) problems.push(`${s.idempotencyKey}: executed ${n} times`);
    if (entry === undefined || !['done', 'unknown'].includes(entry.state))
      problems.push(`${s.idempotencyKey}: executed, journal entry ${entry?.state ?? 'missing'}`);
    if (records.length !== 1)
      problems.push(`${s.idempotencyKey}: executed, history entries [${records.join(', ')}]`);
  }
  for (const s of sent.values()) {
    const ran = executed.has(hex(s.newKey));
    if (s.answer === Outcome.OUTCOME_GOOD && !ran)
      problems.push(`${s.idempotencyKey}: answered GOOD, never executed`);
    if (!ran && (history.get(s.idempotencyKey) ?? []).some((o) => o === 'GOOD'))
      problems.push(`${s.idempotencyKey}: a GOOD history entry, never executed`);
  }
  return problems;
}

/**
 * Repeats executed keys (the callers that saw an error first, then some that saw GOOD): each gets its recorded
 * result, or after UNKNOWN the reconciled one. Returns the repeated PROUTs (the caller checks none ran again).
 */
async function repeatExecuted(
  client: ControlClient,
  sent: ReadonlyMap<string, Sent>,
  executed: ReadonlyMap<string, number>,
  entries: ReadonlyMap<string, { state: string }>,
): Promise<Sent[]> {
  const ran = [...sent.values()].filter((s) => executed.has(hex(s.newKey)));
  const repeats = [
    ...ran.filter((s) => s.answer !== Outcome.OUTCOME_GOOD).slice(0, 40),
    ...ran.filter((s) => s.answer === Outcome.OUTCOME_GOOD).slice(0, 20),
  ];
  for (const s of repeats) {
    const recorded = entries.get(scopedKey('anonymous', s.idempotencyKey));
    const { result } = await client.register(
      {
        target: { agentId: s.agentId, path: '/dev/sg0' },
        newKey: s.newKey,
        ignoreExistingKey: true,
        options: { idempotencyKey: s.idempotencyKey },
      },
      { deadline: 20_000 },
    );
    const got = outcomeToJSON(result?.outcome ?? Outcome.OUTCOME_UNSPECIFIED);
    const allowed =
      recorded?.state === 'unknown' ? ['OUTCOME_GOOD', 'OUTCOME_UNKNOWN'] : ['OUTCOME_GOOD'];
    expect({ key: s.idempotencyKey, got, allowed: allowed.includes(got) }).toMatchObject({
      allowed: true,
    });
  }
  return repeats;
}

/** Tens of clients: PROUT loops (each PROUT a fresh key) and read loops, until stop(). */
function startLoad(clients: readonly ControlClient[], agentIds: readonly string[], tag: string) {
  const sent = new Map<string, Sent>();
  const errors = new Map<string, number>();
  const state = { good: 0, reads: 0, stopped: false };
  const pick = () => agentIds[Math.floor(Math.random() * agentIds.length)] ?? '';
  const failed = async (e: unknown) => {
    const s = summarizeRpcError(e);
    const name = `${String(s?.code ?? 'other')}${s?.reason ? `/${s.reason}` : ''}`;
    errors.set(name, (errors.get(name) ?? 0) + 1);
    await delay(100);
    return name;
  };
  const prouts = Array.from({ length: PROUT_CLIENTS }, async (_, c) => {
    const client = clients[c % clients.length]!;
    for (let n = 0; !state.stopped; n++) {
      const s: Sent = {
        idempotencyKey: `ft-${tag}-${c}-${n}`,
        agentId: pick(),
        newKey: (BigInt(c + 1) << 32n) | BigInt(n + 1),
      };
      sent.set(s.idempotencyKey, s);
      try {
        const { result } = await client.register(
          {
            target: { agentId: s.agentId, path: '/dev/sg0' },
            newKey: s.newKey,
            ignoreExistingKey: true,
            options: { idempotencyKey: s.idempotencyKey },
          },
          { deadline: 15_000 },
        );
        s.answer = result?.outcome ?? Outcome.OUTCOME_UNSPECIFIED;
        if (s.answer === Outcome.OUTCOME_GOOD) state.good++;
      } catch (e) {
        s.error = await failed(e);
      }
    }
  });
  const reads = Array.from({ length: Math.max(0, CLIENTS - PROUT_CLIENTS) }, async (_, c) => {
    const client = clients[c % clients.length]!;
    while (!state.stopped) {
      try {
        await client.readKeys(
          { target: { agentId: pick(), path: '/dev/sg0' } },
          { deadline: 10_000 },
        );
        state.reads++;
      } catch (e) {
        await failed(e);
      }
    }
  });
  return {
    sent,
    errors,
    get good() {
      return state.good;
    },
    get reads() {
      return state.reads;
    },
    async stop() {
      state.stopped = true;
      await Promise.all([...prouts, ...reads]);
    },
  };
}
