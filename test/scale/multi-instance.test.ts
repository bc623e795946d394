/**
 * Three prfleet-server instances as separate processes on loopback, sharing the real Redis (127.0.0.1:6379) and
 * PostgreSQL (127.0.0.1:5432, db test), with agents spread across them: commands routed across instances, one
 * instance SIGKILLed and one SIGTERMed under load; every agent re-attaches to the survivor, no PROUT runs twice,
 * and every PROUT that ran has a record (its result or UNKNOWN, in the caller's answer and the journal).
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import { Status } from 'nice-grpc-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, type Agent } from '../../agent/agent.js';
import { createEmulatedFabric, type EmulatedFabric } from '../../agent/fabric.js';
import {
  countingSource,
  manyHostsFabric,
  startScaleServer,
  uniqueClusterNames,
  type ExecutionCounts,
  type ScaleClusterEnv,
  type ScaleServer,
} from '../../bench/scale-cluster.js';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import { createLogger } from '../../src/common/logger.js';
import { Outcome, outcomeToJSON } from '../../src/gen/prfleet/v1/scsi.js';
import { formatKey } from '../../src/scsi/keys.js';
import { ensureBuilt } from '../helpers/processes.js';

const REDIS_URL = process.env['PRFLEET_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const DATABASE_URL =
  process.env['PRFLEET_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const INSTANCE_TTL_MS = 1_500;
const log = createLogger({
  level: (process.env['PRFLEET_TEST_LOG'] as 'debug' | undefined) ?? 'silent',
  name: 'scale-agents',
});
const HOSTS = 6;

let names: { redisPrefix: string; schema: string };
let env: ScaleClusterEnv;
let redis: Redis;
let db: pg.Client;
let servers: ScaleServer[] = [];
let clients = new Map<string, ControlClient>();
let fabric: EmulatedFabric;
let agents: Agent[] = [];
const executions: ExecutionCounts = new Map();

beforeAll(async () => {
  await ensureBuilt();
  names = uniqueClusterNames('scale');
  env = {
    redisUrl: REDIS_URL,
    databaseUrl: DATABASE_URL,
    ...names,
    extra: {
      PRFLEET_INSTANCE_TTL_MS: String(INSTANCE_TTL_MS),
      PRFLEET_PRESENCE_TTL_MS: '3000',
      PRFLEET_HEARTBEAT_MS: '1000',
      PRFLEET_DRAIN_GRACE_MS: '3000',
      PRFLEET_RESULT_SLACK_MS: '1000',
    },
  };
  redis = new Redis(REDIS_URL);
  db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  // One instance first: it runs the migrations; the other two then start together.
  servers = [await startScaleServer('s1', env)];
  servers.push(...(await Promise.all([startScaleServer('s2', env), startScaleServer('s3', env)])));
  clients = new Map(servers.map((s) => [s.instanceId, createControlClient(s.address)]));

  // Six hosts of one fabric (all contend for the same 4 LUs), two per instance: each lists the addresses
  // starting with "its" instance and fails over to the next ones.
  fabric = createEmulatedFabric(manyHostsFabric(HOSTS), { latencyMs: 5 });
  agents = fabric.hosts.map((host, i) => {
    const order = [0, 1, 2].map((k) => servers[(Math.floor(i / 2) + k) % 3]?.address ?? '');
    return createAgent(
      {
        server: order.join(','),
        agentId: host.id,
        hostname: host.id,
        plaintext: true,
        backoff: { initialMs: 100, maxMs: 1_000 },
        drainMs: 3_000,
      },
      { log, source: countingSource(host, executions) },
    );
  });
  await Promise.all(agents.map((a) => a.start()));
  await Promise.all(agents.map((a) => a.waitForState('connected')));
}, 180_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  fabric?.close();
  for (const client of clients.values()) client.close();
  await Promise.all(servers.map((s) => s.handle.stop({ graceMs: 5_000 })));
  const keys = await redis.keys(`${names.redisPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
  await db.query(`DROP SCHEMA IF EXISTS ${names.schema} CASCADE`);
  await db.end();
}, 60_000);

const holderOf = (agentId: string) => redis.get(`${names.redisPrefix}agent:${agentId}`);

function client(instanceId: string): ControlClient {
  const c = clients.get(instanceId);
  if (c === undefined) throw new Error(`no client for ${instanceId}`);
  return c;
}

describe('three server instances, agents spread across them', () => {
  it('spreads the agents and shows the whole fleet on every instance', async () => {
    await expect
      .poll(() => Promise.all(agents.map((a) => holderOf(a.id))))
      .toEqual(['s1', 's1', 's2', 's2', 's3', 's3']);
    const everyone = agents.map((a) => `${a.id}:connected`).sort();
    for (const server of servers) {
      // Each instance sees all six agents' paths to the 4 LUs, connected (the shared inventory follows within ms).
      await expect
        .poll(async () => {
          const { logicalUnits } = await client(server.instanceId).listDevices({});
          return logicalUnits.map((lu) =>
            lu.paths
              .map((p) => `${p.agentId}:${p.agentConnected ? 'connected' : 'offline'}`)
              .sort(),
          );
        })
        .toEqual([everyone, everyone, everyone, everyone]);
    }
  });

  it('routes commands to agents held by other instances', async () => {
    let crossInstance = 0;
    for (const server of servers) {
      for (const agent of agents) {
        const { result } = await client(server.instanceId).readKeys({
          target: { agentId: agent.id, path: '/dev/sg1' },
        });
        expect(result?.outcome, `${agent.id} via ${server.instanceId}`).toBe(Outcome.OUTCOME_GOOD);
        expect(result?.agentId).toBe(agent.id);
        if ((await holderOf(agent.id)) !== server.instanceId) crossInstance += 1;
      }
      // lu_id only (PRIN): any online path of the fleet, wherever its agent is.
      const { result } = await client(server.instanceId).readReservation({
        target: { luId: 'naa.5000e11100000002' },
      });
      expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    }
    expect(crossInstance).toBe(12);
  });

  it('survives SIGKILL of one instance and SIGTERM of another under load: agents re-attach, no PROUT twice, none lost', async () => {
    const alive = new Set(servers.map((s) => s.instanceId));
    type Final = {
      key: bigint;
      agentId: string;
      answer: string;
      outcome?: Outcome;
      attempts: number;
    };
    const finals: Final[] = [];
    let nextKey = 0x5ca1e000n;
    const stopAt = Date.now() + 7_000;

    // One PROUT with an idempotency key, sent until some instance gives an answer (retries reuse the key).
    async function registerOnce(agentId: string, worker: number): Promise<void> {
      nextKey += 1n;
      const key = nextKey;
      const idempotencyKey = `scale-${formatKey(key)}`;
      for (let attempt = 1; attempt <= 40; attempt++) {
        const pool = [...alive];
        const via = pool[(worker + attempt) % pool.length] ?? 's3';
        try {
          const { result } = await client(via).register(
            {
              target: { agentId, path: '/dev/sg1' },
              newKey: key,
              ignoreExistingKey: true,
              options: { idempotencyKey },
            },
            { deadline: 15_000 },
          );
          finals.push({
            key,
            agentId,
            answer: 'result',
            outcome: result?.outcome ?? Outcome.OUTCOME_UNSPECIFIED,
            attempts: attempt,
          });
          return;
        } catch (e) {
          // UNAVAILABLE (instance gone, draining, agent re-attaching), CANCELLED, DEADLINE: try again, same key.
          const code = (e as { code?: unknown }).code; // nice-grpc ClientError (or ServerError)
          if (
            typeof code !== 'number' ||
            code === Status.INVALID_ARGUMENT ||
            code === Status.NOT_FOUND
          )
            throw e;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      finals.push({ key, agentId, answer: 'no answer after 40 attempts', attempts: 40 });
    }

    const load = Promise.all(
      agents.map(async (agent, worker) => {
        while (Date.now() < stopAt) await registerOnce(agent.id, worker);
      }),
    );
    await new Promise((r) => setTimeout(r, 1_500));
    const s1 = servers[0];
    const s2 = servers[1];
    if (s1 === undefined || s2 === undefined) throw new Error('cluster not started');
    alive.delete('s1');
    s1.handle.signal('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 2_000));
    alive.delete('s2');
    const terminated = s2.handle.stop({ signal: 'SIGTERM', graceMs: 10_000 });
    await load;
    expect((await terminated).code).toBe(0); // SIGTERM: drained and exited cleanly

    // Every agent re-attached to the survivor.
    await expect
      .poll(async () => Promise.all(agents.map((a) => holderOf(a.id))), {
        timeout: 15_000,
        interval: 200,
      })
      .toEqual(agents.map(() => 's3'));
    expect(agents.every((a) => a.state === 'connected')).toBe(true);
    const { logicalUnits } = await client('s3').listDevices({});
    for (const lu of logicalUnits) expect(lu.paths.every((p) => p.agentConnected)).toBe(true);
    expect(Date.now() - killedAt).toBeLessThan(30_000);

    // No PROUT executed twice; every one executed has a record; every GOOD answer was really executed once.
    expect(finals.length).toBeGreaterThan(50);
    const problems: string[] = [];
    for (const f of finals) {
      const runs = executions.get(f.key.toString(16).padStart(16, '0')) ?? 0;
      const what = `${formatKey(f.key)} on ${f.agentId}: ${f.answer}${f.outcome === undefined ? '' : ` ${outcomeToJSON(f.outcome)}`}, executed ${runs}×`;
      if (runs > 1) problems.push(`executed twice: ${what}`);
      if (f.answer !== 'result') problems.push(`no record: ${what}`);
      else if (f.outcome === Outcome.OUTCOME_GOOD && runs !== 1) problems.push(`GOOD but ${what}`);
      else if (f.outcome !== Outcome.OUTCOME_GOOD && f.outcome !== Outcome.OUTCOME_UNKNOWN)
        problems.push(`unexpected: ${what}`);
    }
    expect(problems).toEqual([]);
    const unknown = finals.filter((f) => f.outcome === Outcome.OUTCOME_UNKNOWN).length;
    console.log(
      `scale failover: ${finals.length} PROUTs, ${unknown} UNKNOWN, ${finals.filter((f) => f.attempts > 1).length} retried with their key`,
    );

    // The journal: nothing left pending (a dead instance's entries are settled by the survivor), and every
    // key the test sent is there with the answer the caller got.
    await expect
      .poll(
        async () =>
          (
            await db.query(
              `SELECT count(*)::int AS n FROM ${names.schema}.operations WHERE state = 'pending'`,
            )
          ).rows[0]?.n,
        { timeout: 20_000, interval: 500 },
      )
      .toBe(0);
    const rows = (await db.query(`SELECT idempotency_key, state FROM ${names.schema}.operations`))
      .rows as {
      idempotency_key: string;
      state: string;
    }[];
    const states = new Map(rows.map((r) => [r.idempotency_key, r.state]));
    for (const f of finals) {
      const state = states.get(`scale-${formatKey(f.key)}`);
      // A late result may turn UNKNOWN into done (the device's answer is still the truth); never pending or missing.
      expect(
        f.outcome === Outcome.OUTCOME_UNKNOWN ? ['unknown', 'done'] : ['done'],
        formatKey(f.key),
      ).toContain(state);
    }
  }, 120_000);
});
