/**
 * `make bench-soak` (`node dist/bench/soak.js`): a sustained-load soak of one prfleet-server on PostgreSQL
 * (127.0.0.1:5432 db test, a schema of its own, dropped at the end), issue 19 point 6.
 *
 * 1,000 emulated agents in one child process (bench/agent-swarm.ts: their devices count every PROUT they
 * execute) and 200 clients in this process for 60 s: half read (READ KEYS), a quarter send PROUT pairs with
 * idempotency keys (REGISTER AND IGNORE a fresh key, then REGISTER from it to another fresh key), a quarter send
 * CommandSession bursts (8 READ KEYS on one stream). Every 5 s it prints calls, errors by status, p50/p99 per
 * kind for the interval, and the server's RSS and V8 heap; at the end the same after a full GC (the server runs
 * with --expose-gc and a SIGUSR2 → gc() hook) against the figures before the load, and the check that the
 * history, the devices' executions and the journal agree PROUT by PROUT. Exits 1 when they do not.
 *
 * Sizes: PRFLEET_SOAK_AGENTS (1000), PRFLEET_SOAK_CLIENTS (200), PRFLEET_SOAK_SECONDS (60),
 * PRFLEET_SOAK_INTERVAL_SECONDS (5). Bounded: every wait has a limit and the whole run a hard one.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { createControlClient, type ControlClient } from '../src/common/client.js';
import { summarizeRpcError } from '../src/common/errors.js';
import { delay } from '../src/common/delay.js';
import { spawnNode, type ChildHandle } from '../src/demo/processes.js';
import { Outcome, outcomeToJSON } from '../src/gen/prfleet/v1/scsi.js';
import { scopedKey } from '../src/server/commands/keys.js';
import { startAgentSwarm, type AgentSwarm } from './agent-swarm.js';
import { builtFile, uniqueClusterNames } from './scale-cluster.js';
import { formatMs, summarize } from './stats.js';

const AGENTS = Number(process.env['PRFLEET_SOAK_AGENTS'] ?? 1000);
const CLIENTS = Number(process.env['PRFLEET_SOAK_CLIENTS'] ?? 200);
const SECONDS = Number(process.env['PRFLEET_SOAK_SECONDS'] ?? 60);
const INTERVAL_S = Number(process.env['PRFLEET_SOAK_INTERVAL_SECONDS'] ?? 5);
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const CHANNELS = 8;
const BURST = 8;
/** Everything, start-up and checks included, ends by then. */
const HARD_LIMIT_MS = (SECONDS + 300) * 1000;

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const delta = (bytes: number) => `${bytes >= 0 ? '+' : ''}${mib(bytes)}`;

/** Resident set size of `pid`, bytes (VmRSS of /proc/<pid>/status). */
function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

/** V8 heap in use of the server, bytes, from its /metrics. */
async function heapUsedBytes(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const match = /^prfleet_nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        resolvePort(typeof address === 'object' && address !== null ? address.port : 0),
      );
    });
  });
}

/** The server's memory after two full collections (SIGUSR2 → gc()). */
async function collected(server: ChildHandle, metricsPort: number) {
  process.kill(server.pid, 'SIGUSR2');
  await delay(1_000);
  return { rss: rssBytes(server.pid), heap: await heapUsedBytes(metricsPort) };
}

/** Latencies and errors of one kind of call, for the current interval and the whole run. */
class Tally {
  calls = 0;
  interval: number[] = [];
  all: number[] = [];
  readonly errors = new Map<string, number>();
  /** Device answers other than GOOD (not RPC errors: the command ran), by outcome. */
  readonly outcomes = new Map<string, number>();
  ok(ms: number) {
    this.calls++;
    this.interval.push(ms);
    this.all.push(ms);
  }
  fail(e: unknown) {
    this.calls++;
    const s = summarizeRpcError(e);
    const name =
      s === undefined ? 'other' : `${s.codeName ?? s.code}${s.reason ? `/${s.reason}` : ''}`;
    this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
  }
}

interface Load {
  readonly tallies: Record<'read' | 'prout' | 'session', Tally>;
  /** Idempotency key → the service action key it registers (hex). */
  readonly prouts: Map<string, string>;
  stop(): Promise<void>;
}

const hex = (key: bigint) => key.toString(16).padStart(16, '0');

/** 200 client loops over a few channels until stop(). */
function startLoad(
  clients: readonly ControlClient[],
  agentIds: readonly string[],
  tag: string,
): Load {
  const tallies = { read: new Tally(), prout: new Tally(), session: new Tally() };
  const prouts = new Map<string, string>();
  let stopped = false;
  const pick = () => ({
    agentId: agentIds[Math.floor(Math.random() * agentIds.length)] ?? '',
    path: '/dev/sg0',
  });
  const noteOutcome = (response: { result?: { outcome: Outcome } | undefined }) => {
    const outcome = response.result?.outcome ?? Outcome.OUTCOME_UNSPECIFIED;
    if (outcome === Outcome.OUTCOME_GOOD) return;
    const name = outcomeToJSON(outcome).replace(/^OUTCOME_/, '');
    tallies.prout.outcomes.set(name, (tallies.prout.outcomes.get(name) ?? 0) + 1);
  };
  const timed = async (tally: Tally, call: () => Promise<unknown>) => {
    const started = performance.now();
    try {
      await call();
      tally.ok(performance.now() - started);
      return true;
    } catch (e) {
      tally.fail(e);
      await delay(100);
      return false;
    }
  };
  const loop = async (c: number) => {
    const client = clients[c % clients.length]!;
    for (let n = 0; !stopped; n++) {
      if (c % 4 === 0) {
        // A PROUT pair on one path: the second registers from the first's key to a new one.
        const target = pick();
        const first = (BigInt(c + 1) << 40n) | (BigInt(n + 1) << 1n);
        const second = first | 1n;
        const [k1, k2] = [`soak-${tag}-${c}-${n}-a`, `soak-${tag}-${c}-${n}-b`];
        prouts.set(k1, hex(first));
        const opts = { deadline: 20_000 };
        const ok = await timed(tallies.prout, async () =>
          noteOutcome(
            await client.register(
              { target, newKey: first, ignoreExistingKey: true, options: { idempotencyKey: k1 } },
              opts,
            ),
          ),
        );
        if (!ok || stopped) continue;
        prouts.set(k2, hex(second));
        await timed(tallies.prout, async () =>
          noteOutcome(
            await client.register(
              { target, key: first, newKey: second, options: { idempotencyKey: k2 } },
              opts,
            ),
          ),
        );
      } else if (c % 4 === 1) {
        const requests = Array.from({ length: BURST }, (_, i) => ({
          requestId: String(i),
          command: { $case: 'readKeys' as const, value: { target: pick() } },
        }));
        await timed(tallies.session, async () => {
          async function* send() {
            yield* requests;
          }
          for await (const reply of client.commandSession(send(), { deadline: 20_000 }))
            if (reply.reply?.$case === 'error') throw new Error(reply.reply.value.message);
        });
      } else {
        await timed(tallies.read, () => client.readKeys({ target: pick() }, { deadline: 10_000 }));
      }
    }
  };
  const loops = Array.from({ length: CLIENTS }, (_, c) => loop(c));
  return {
    tallies,
    prouts,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** One line per kind: calls, p50/p99 of the interval's successful calls, errors by status. */
function intervalLine(load: Load): string {
  return Object.entries(load.tallies)
    .map(([kind, t]) => {
      const s = summarize(t.interval);
      t.interval = [];
      return `${kind} ${t.calls} (p50 ${formatMs(s.p50)} p99 ${formatMs(s.p99)})`;
    })
    .join('  ');
}

function errorsText(load: Load): string {
  const all = new Map<string, number>();
  for (const t of Object.values(load.tallies))
    for (const [name, n] of t.errors) all.set(name, (all.get(name) ?? 0) + n);
  return all.size === 0 ? 'none' : [...all].map(([name, n]) => `${name} ${n}`).join(', ');
}

/**
 * History = executions = journal, PROUT by PROUT: each key the devices executed ran once and has one journal
 * entry (settled) and one history entry; nothing not executed has a GOOD record. Returns the problems.
 */
async function checkRecords(db: pg.Client, schema: string, load: Load, swarm: AgentSwarm) {
  const journal = await db.query<{ idempotency_key: string; state: string }>(
    `SELECT idempotency_key, state FROM ${schema}.operations`,
  );
  const history = await db.query<{ idempotency_key: string; outcome: string }>(
    `SELECT idempotency_key, outcome FROM ${schema}.history`,
  );
  const executed = await swarm.counts();
  const states = new Map(journal.rows.map((r) => [r.idempotency_key, r.state]));
  const records = new Map<string, string[]>();
  for (const r of history.rows)
    records.set(r.idempotency_key, [...(records.get(r.idempotency_key) ?? []), r.outcome]);
  const problems: string[] = [];
  let ran = 0;
  for (const [key, saKey] of load.prouts) {
    const n = executed.get(saKey) ?? 0;
    const state = states.get(scopedKey('anonymous', key));
    const entries = records.get(key) ?? [];
    if (n === 0) {
      if (entries.includes('GOOD')) problems.push(`${key}: GOOD in the history, never executed`);
      continue;
    }
    ran++;
    if (n !== 1) problems.push(`${key}: executed ${n} times`);
    if (state !== 'done' && state !== 'unknown')
      problems.push(`${key}: journal ${state ?? 'missing'}`);
    if (entries.length !== 1) problems.push(`${key}: history [${entries.join(', ')}]`);
  }
  const executions = [...executed.values()].reduce((a, b) => a + b, 0);
  return {
    problems,
    line: `history ${history.rowCount} = executions ${executions} = journal ${journal.rowCount} (keys executed ${ran} of ${load.prouts.size} sent)`,
    equal:
      history.rowCount === executions && executions === journal.rowCount && problems.length === 0,
  };
}

async function main(): Promise<number> {
  const { schema } = uniqueClusterNames('soak');
  const metricsPort = await freePort();
  // Connected first: a query on a client never connected would leave nothing for the event loop to wait on.
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  const server = spawnNode(builtFile('src/server/main.js'), [], {
    name: 'prfleet-server',
    env: {
      PORT: '0',
      PRFLEET_HOST: '127.0.0.1',
      PRFLEET_PLAINTEXT: 'true',
      PRFLEET_INSTANCE_ID: 'soak',
      DATABASE_URL,
      PRFLEET_DB_SCHEMA: schema,
      PRFLEET_STORE: 'postgres',
      PRFLEET_LOG_LEVEL: 'info',
      PRFLEET_METRICS_PORT: String(metricsPort),
      PRFLEET_METRICS_HOST: '127.0.0.1',
    },
  });
  let swarm: AgentSwarm | undefined;
  const clients: ControlClient[] = [];
  try {
    const listening = await server.waitForLog((e) => e['msg'] === 'listening', 60_000);
    const address = `127.0.0.1:${String(listening['port'])}`;
    const started = performance.now();
    swarm = await startAgentSwarm({ server: address, hosts: AGENTS, readyTimeoutMs: 180_000 });
    console.log(
      `${AGENTS} agents connected in ${formatMs(performance.now() - started)}; ${CLIENTS} clients, ${SECONDS} s`,
    );
    clients.push(...Array.from({ length: CHANNELS }, () => createControlClient(address)));
    const before = await collected(server, metricsPort);
    console.log(
      `server before the load, after a GC: RSS ${mib(before.rss)}, heap ${mib(before.heap)}`,
    );

    const load = startLoad(clients, swarm.agentIds, schema);
    const runStarted = performance.now();
    for (let t = INTERVAL_S; t <= SECONDS; t += INTERVAL_S) {
      await delay(runStarted + t * 1000 - performance.now());
      const heap = await heapUsedBytes(metricsPort);
      console.log(
        `t=${t}s  ${intervalLine(load)}  errors: ${errorsText(load)}  RSS ${mib(rssBytes(server.pid))} heap ${mib(heap)}`,
      );
    }
    await load.stop();
    const totals = Object.entries(load.tallies).map(([kind, t]) => {
      const s = summarize(t.all);
      const outcomes = [...t.outcomes].map(([o, n]) => ` ${o} ${n}`).join(',');
      return `${kind} ${t.calls} p50 ${formatMs(s.p50)} p99 ${formatMs(s.p99)}${outcomes ? ` (device answers:${outcomes})` : ''}`;
    });
    console.log(`total: ${totals.join('; ')}; RPC errors: ${errorsText(load)}`);
    await delay(2_000);
    const after = await collected(server, metricsPort);
    console.log(
      `server after the load, after a GC: RSS ${mib(after.rss)} (${delta(after.rss - before.rss)} vs before), heap ${mib(after.heap)} (${delta(after.heap - before.heap)} vs before)`,
    );
    const check = await checkRecords(db, schema, load, swarm);
    console.log(`${check.line}: ${check.equal ? 'OK' : 'MISMATCH'}`);
    for (const problem of check.problems.slice(0, 20)) console.log(`  ${problem}`);
    if (server.hasExited()) console.log('the server exited during the run');
    return check.equal && !server.hasExited() ? 0 : 1;
  } finally {
    for (const client of clients) client.close();
    await swarm?.stop();
    await server.stop({ graceMs: 10_000 });
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await db.end().catch(() => undefined);
  }
}

// The server collects garbage on SIGUSR2 (its RSS and heap "after a GC").
const hookDir = mkdtempSync(join(tmpdir(), 'prfleet-bench-soak-'));
const hook = join(hookDir, 'gc-on-signal.mjs');
writeFileSync(hook, "process.on('SIGUSR2', () => { globalThis.gc?.(); globalThis.gc?.(); });\n");
process.env['PRFLEET_CHILD_NODE_ARGS'] = [
  process.env['PRFLEET_CHILD_NODE_ARGS'] ?? '',
  '--expose-gc',
  `--import=${pathToFileURL(hook).href}`,
]
  .join(' ')
  .trim();
const hardLimit = setTimeout(() => {
  console.error(`soak: over the hard limit of ${HARD_LIMIT_MS / 1000} s`);
  process.exit(2);
}, HARD_LIMIT_MS);
hardLimit.unref();
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
