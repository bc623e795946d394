/**
 * "Proven before preempted" (issue 20, point 1): Takeover preempts only a victim a configured rule proves failed
 * or greedy and the preempt policy lets the taker act on; else only forced with a reason. Real server, real
 * agents on the emulated fabric, real PostgreSQL (the history is where the evidence must end up), and a real HTTP
 * server as the external liveness check.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc-common';
import { formatKey } from '../../src/common/key-layout.js';
import {
  RolloutResult,
  TakeoverVerdictKind,
  type TakeoverVerdict,
  type RolloutEvent,
} from '../../src/gen/prfleet/v1/fleet.js';
import { PrType, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import {
  DEFAULT_TAKEOVER_RULES,
  parseTakeoverRules,
  takeoverRulesFromEnv,
  type TakeoverRules,
} from '../../src/server/fleet/takeover-rules.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import { TEST_DATABASE_URL, probePg } from '../store/backends.js';
import { finished, runFleetCli, startFleetHarness, type FleetHarness } from './harness.js';

const WE = PrType.PR_TYPE_WRITE_EXCLUSIVE;
const REG = ProutAction.PROUT_ACTION_REGISTER;
const RESERVE = ProutAction.PROUT_ACTION_RESERVE;
/** loader2's drive as agents report it. */
const DRIVE = 'naa.5000e11100000004';
const PREEMPTS = new Set(['PROUT_ACTION_PREEMPT', 'PROUT_ACTION_PREEMPT_AND_ABORT']);

const unreachable = await probePg();
const schema = `prfleet_t_takeover_${process.pid}_${randomBytes(3).toString('hex')}`;
let store: Store | undefined;

beforeAll(async () => {
  if (unreachable === undefined)
    store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
}, 60_000);
afterAll(async () => {
  await store?.close();
  if (unreachable !== undefined) return;
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
});

async function harness(rules: TakeoverRules = DEFAULT_TAKEOVER_RULES): Promise<FleetHarness> {
  const s = store as Store;
  await s.db.exec('TRUNCATE operations, desired_state, reservation_keys, key_hosts, key_sites');
  return startFleetHarness({ store: s, takeoverRules: rules });
}

async function keys(h: FleetHarness, ...agents: string[]): Promise<Record<string, bigint>> {
  const out: Record<string, bigint> = {};
  for (const agentId of agents) {
    const r = await h.client.allocateKey({ site: 'dc1', agentId, purpose: 'backup', owner: 'ops' });
    out[agentId] = r.key?.key ?? 0n;
  }
  return out;
}

/** host-b registers on loader2's drive and reserves it (outside prfleet's history, as a host tool would). */
async function bHoldsDrive(h: FleetHarness, key: bigint): Promise<void> {
  await h.prout('host-b', '/dev/sg3', { action: REG, serviceActionKey: key });
  await h.prout('host-b', '/dev/sg3', { action: RESERVE, reservationKey: key, type: WE });
}

type Ask = Parameters<FleetHarness['client']['takeover']>[0];

/** Runs a takeover of loader2's drive from host-b; returns the verdict and the rollout events. */
async function takeover(h: FleetHarness, ask: Ask) {
  let verdict: TakeoverVerdict | undefined;
  const events: RolloutEvent[] = [];
  for await (const r of h.client.takeover({
    selector: { luIds: [DRIVE] },
    victim: { $case: 'victimAgentId', value: 'host-b' },
    ...ask,
  })) {
    if (r.verdict) verdict = r.verdict;
    if (r.event) events.push(r.event);
  }
  return { verdict: verdict as TakeoverVerdict, events };
}

/** The PREEMPT history entries of one operation. */
async function preemptEntries(h: FleetHarness, operationId: string) {
  const all = await h.store.history.list({ luId: DRIVE, limit: 10_000 });
  return all.filter(
    (e) => e.idempotencyKey?.startsWith(`fleet/${operationId}/`) && PREEMPTS.has(e.action),
  );
}

function details(v: TakeoverVerdict): string[] {
  return v.evidence.map((e) => `${e.holds ? '+' : '-'}${e.rule} ${e.subject}: ${e.detail}`);
}

/** A real "is host X down?" webhook: answers what `answer` says; records what it was asked. */
async function livenessServer(): Promise<{
  url: string;
  asked: { method: string; body: unknown; url: string }[];
  answer: { status: number; body: string; delayMs?: number };
  server: Server;
}> {
  const state = {
    asked: [] as { method: string; body: unknown; url: string }[],
    answer: { status: 200, body: '{"down":false}' } as {
      status: number;
      body: string;
      delayMs?: number;
    },
  };
  const server = createServer((req: IncomingMessage, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      state.asked.push({
        method: req.method ?? '',
        url: req.url ?? '',
        body: text === '' ? undefined : JSON.parse(text),
      });
      const reply = () => {
        res.writeHead(state.answer.status, { 'content-type': 'application/json' });
        res.end(state.answer.body);
      };
      if (state.answer.delayMs) setTimeout(reply, state.answer.delayMs).unref();
      else reply();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/is-down`,
    server,
    get asked() {
      return state.asked;
    },
    get answer() {
      return state.answer;
    },
    set answer(a) {
      state.answer = a;
    },
  };
}

describe.skipIf(unreachable !== undefined)(
  'takeover: proven before preempted',
  { timeout: 120_000 },
  () => {
    it('refuses an unproven takeover (dry run shows why), forces it only with a reason, and records what force overrode', async () => {
      const h = await harness();
      const k = await keys(h, 'host-a', 'host-b');
      await bHoldsDrive(h, k['host-b'] ?? 0n);
      await h.stopAgent('host-b');

      const dry = await takeover(h, { agentId: 'host-a', options: { dryRun: true } });
      expect(dry.verdict.kind).toBe(TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_UNPROVEN);
      expect(dry.verdict.allowed).toBe(false);
      expect(details(dry.verdict)[0]).toMatch(
        /^-failed host-b: agent host-b offline on all 4 paths; no heartbeat since \S+ \(\d+(\.\d)? s, rule: ≥ 300 s\)$/,
      );
      expect(dry.events).toEqual([]); // refused: not even planned
      const refused = await takeover(h, { agentId: 'host-a' }).catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: Status.FAILED_PRECONDITION });
      expect(String(refused)).toMatch(/refused: no rule proves the victim failed or greedy/);
      const noReason = await takeover(h, { agentId: 'host-a', force: true }).catch(
        (e: unknown) => e,
      );
      expect(noReason).toMatchObject({ code: Status.INVALID_ARGUMENT });
      expect(String(noReason)).toMatch(/options.reason/);
      expect(h.delivered.filter((d) => d.host !== 'host-b')).toEqual([]);

      const forced = await takeover(h, {
        agentId: 'host-a',
        force: true,
        options: { reason: 'host-b replaced, ticket 42', operationId: 'op-forced' },
      });
      expect(forced.verdict).toMatchObject({ allowed: true, forced: true });
      expect(forced.verdict.overrides).toMatch(/^no rule proves the victim failed or greedy/);
      expect(finished(forced.events).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
      const drive = h.fabric.logicalUnit('loader2-drive').snapshot();
      expect(drive.reservation?.holderKey).toBe(formatKey(k['host-a'] ?? 0n));
      const [entry, ...more] = await preemptEntries(h, 'op-forced');
      expect(more).toEqual([]);
      expect(entry?.reason).toMatch(
        /^host-b replaced, ticket 42 \|\| takeover verdict unproven \(forced\) overriding no rule proves .* \| evidence: -failed: agent host-b offline on all 4 paths/,
      );
      expect((await h.store.history.verify()).ok).toBe(true);
    });

    it('failed: no heartbeat for the configured time is not enough while the liveness webhook says the host is up', async () => {
      const hook = await livenessServer();
      try {
        const h = await harness({
          ...DEFAULT_TAKEOVER_RULES,
          failedAfterMs: 1,
          liveness: { url: hook.url, method: 'POST', timeoutMs: 300 },
        });
        const k = await keys(h, 'host-a', 'host-b');
        await bHoldsDrive(h, k['host-b'] ?? 0n);
        await h.stopAgent('host-b');

        await expect(takeover(h, { agentId: 'host-a' })).rejects.toMatchObject({
          code: Status.FAILED_PRECONDITION,
        });
        expect(hook.asked[0]?.method).toBe('POST');
        expect(hook.asked[0]?.body).toMatchObject({ host: 'host-b', site: 'dc1' });
        const up = await takeover(h, { agentId: 'host-a', options: { dryRun: true } });
        expect(details(up.verdict)).toContainEqual(
          expect.stringMatching(
            /^-liveness host-b: POST http:\/\/127\.0\.0\.1:\d+\/is-down says host-b is up$/,
          ),
        );

        hook.answer = { status: 200, body: '{"down":true}', delayMs: 2_000 };
        const slow = await takeover(h, { agentId: 'host-a', options: { dryRun: true } });
        expect(details(slow.verdict)).toContainEqual(
          expect.stringMatching(/^-liveness host-b: .* no answer within 300 ms: not proven$/),
        );
        hook.answer = { status: 500, body: 'oops' };
        const broken = await takeover(h, { agentId: 'host-a', options: { dryRun: true } });
        expect(broken.verdict.allowed).toBe(false);

        hook.answer = { status: 200, body: '{"down":true,"detail":"IPMI: chassis power off"}' };
        const down = await takeover(h, {
          agentId: 'host-a',
          options: { operationId: 'op-failed' },
        });
        expect(down.verdict).toMatchObject({
          kind: TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_FAILED,
          allowed: true,
          forced: false,
        });
        expect(finished(down.events).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
        const [entry] = await preemptEntries(h, 'op-failed');
        expect(entry?.reason).toMatch(
          /takeover verdict failed \| evidence: \+failed: agent host-b offline/,
        );
        expect(entry?.reason).toMatch(
          /\+liveness: POST .* says host-b is down \(IPMI: chassis power off\)/,
        );
      } finally {
        hook.server.close();
      }
    });

    it('greedy: a reservation the desired state gives to another host, or held past its lease', async () => {
      const h = await harness();
      await keys(h, 'host-a', 'host-b');
      const desire = (holder: string, leaseMs?: number) =>
        h.client.setDesiredState({
          scope: { scope: { $case: 'loaderId', value: 'loader2' } },
          state: {
            registeredAgentIds: ['host-a', 'host-b'],
            drives: {
              holderAgentId: holder,
              type: WE,
              ...(leaseMs === undefined
                ? {}
                : { lease: { seconds: 0n, nanos: leaseMs * 1_000_000 } }),
            },
          },
          updatedBy: 'test',
        });
      await desire('host-b');
      // prfleet itself makes host-b holder: the RESERVE is in the history (the start of its lease).
      const applied: RolloutEvent[] = [];
      for await (const r of h.client.apply({ selector: { luIds: [DRIVE] } }))
        if (r.event) applied.push(r.event);
      expect(finished(applied).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);

      const proper = await takeover(h, { agentId: 'host-a', options: { dryRun: true } });
      expect(proper.verdict.kind).toBe(TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_UNPROVEN);
      expect(details(proper.verdict)).toContain(
        `-greedy ${DRIVE}: the desired state gives ${DRIVE} to host-b`,
      );
      expect(details(proper.verdict)[0]).toMatch(/^-failed host-b: agent host-b is connected/);

      await desire('host-a');
      const other = await takeover(h, { agentId: 'host-a', options: { dryRun: true } });
      expect(other.verdict.kind).toBe(TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_GREEDY);
      expect(details(other.verdict)).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^\\+greedy ${DRIVE}: 0x\\w+ \\(host-b\\) holds ${DRIVE}, which the desired state gives to host-a$`,
          ),
        ),
      );

      await desire('host-b', 1);
      await new Promise((r) => setTimeout(r, 20));
      const leased = await takeover(h, {
        agentId: 'host-a',
        options: { operationId: 'op-lease' },
      });
      expect(leased.verdict.kind).toBe(TakeoverVerdictKind.TAKEOVER_VERDICT_KIND_GREEDY);
      expect(finished(leased.events).result).toBe(RolloutResult.ROLLOUT_RESULT_SUCCEEDED);
      const [entry] = await preemptEntries(h, 'op-lease');
      expect(entry?.reason).toMatch(
        /takeover verdict greedy \| evidence: .*\+lease: host-b has held naa\.5000e11100000004 since \S+ \([\d.]+ s, lease 0 s\)/,
      );
      await expect(
        h.client.setDesiredState({
          scope: { scope: { $case: 'loaderId', value: 'loader2' } },
          state: { drives: { holderAgentId: '', type: 0, lease: { seconds: 60n, nanos: 0 } } },
          updatedBy: 'test',
        }),
      ).rejects.toThrow(/state.drives.lease/);
    });

    it('the preempt policy says who may preempt whom (site, host group, priority); the holder of a key nobody knows is named as unknown', async () => {
      const h = await harness({
        ...DEFAULT_TAKEOVER_RULES,
        failedAfterMs: 1,
        policy: [
          { name: 'same-site', sameSite: true, verdicts: ['failed'] },
          { name: 'vault-outranks', taker: { labels: ['role=vault'] }, higherPriority: true },
        ],
        priorities: { 'host-c': 9, 'host-b': 1 },
      });
      const k = await keys(h, 'host-a', 'host-b', 'host-c');
      await bHoldsDrive(h, k['host-b'] ?? 0n);
      await h.stopAgent('host-b');
      const dry = { dryRun: true };
      const a = await takeover(h, { agentId: 'host-a', options: dry });
      expect(a.verdict).toMatchObject({ allowed: true, policyRule: 'same-site' });
      const c = await takeover(h, { agentId: 'host-c', options: dry });
      expect(c.verdict).toMatchObject({ allowed: true, policyRule: 'vault-outranks' });

      const lower = await startPolicyOnly(h);
      expect(lower).toMatch(
        /no preempt policy rule lets host-c preempt host-b on a failed verdict/,
      );

      const foreign = 0x1234n;
      await h.prout('host-a', '/dev/sg4', { action: REG, serviceActionKey: foreign });
      const f = await takeover(h, {
        agentId: 'host-c',
        victim: { $case: 'victimKey', value: foreign },
        options: dry,
      });
      expect(f.verdict.allowed).toBe(false);
      expect(details(f.verdict)[0]).toMatch(
        /^-failed 0x0000000000001234: the holder's agent is unknown: the key registry names no host/,
      );
    });
  },
);

/** host-c with a lower priority than host-b: no rule lets it (a dry run's verdict summary). */
async function startPolicyOnly(h: FleetHarness): Promise<string> {
  const h2 = await startFleetHarness({
    store: h.store,
    takeoverRules: {
      ...DEFAULT_TAKEOVER_RULES,
      failedAfterMs: 1,
      policy: [{ name: 'vault-outranks', taker: { labels: ['role=vault'] }, higherPriority: true }],
      priorities: { 'host-c': 0, 'host-b': 5 },
    },
  });
  await h2.stopAgent('host-b');
  const r = await takeover(h2, { agentId: 'host-c', options: { dryRun: true } });
  return r.verdict.summary;
}

describe('takeover rules configuration', () => {
  it('parses YAML rules, applies env overrides, and names a bad field', () => {
    const rules = parseTakeoverRules(
      `failedAfterSeconds: 120
liveness: { url: 'http://bmc.example/down', method: GET, timeoutMs: 1500 }
policy:
  - { name: dc1, taker: { site: dc1 }, victim: { labels: ['role=media-server'] }, verdicts: [failed] }
priorities: { host-a: 3 }
`,
      'rules.yaml',
    );
    expect(rules).toMatchObject({
      failedAfterMs: 120_000,
      greedy: true,
      liveness: { url: 'http://bmc.example/down', method: 'GET', timeoutMs: 1500 },
      priorities: { 'host-a': 3 },
    });
    expect(rules.policy[0]?.name).toBe('dc1');
    expect(() => parseTakeoverRules('policy: [{ taker: { site: dc1 } }]', 'rules.yaml')).toThrow(
      /rules.yaml: [\s\S]*at policy\[0\]\.name/,
    );
    expect(() => parseTakeoverRules('liveness: { url: "ftp://x" }', 'r')).toThrow(/liveness/);
    expect(takeoverRulesFromEnv({})).toEqual(DEFAULT_TAKEOVER_RULES);
    expect(
      takeoverRulesFromEnv({
        PRFLEET_TAKEOVER_FAILED_AFTER_MS: '5000',
        PRFLEET_LIVENESS_URL: 'https://quorum.example/down',
        PRFLEET_LIVENESS_TIMEOUT_MS: '800',
      }),
    ).toMatchObject({
      failedAfterMs: 5000,
      liveness: { url: 'https://quorum.example/down', method: 'POST', timeoutMs: 800 },
    });
    expect(() =>
      takeoverRulesFromEnv({ PRFLEET_TAKEOVER_RULES: '/nonexistent/rules.yaml' }),
    ).toThrow(/PRFLEET_TAKEOVER_RULES \/nonexistent\/rules.yaml/);
  });
});

describe('prfleet takeover', { timeout: 120_000 }, () => {
  it('prints the verdict and its evidence; --force needs --reason; a refused takeover exits non-zero', async () => {
    const h = await startFleetHarness();
    const k = await keys(h, 'host-a', 'host-b');
    await bHoldsDrive(h, k['host-b'] ?? 0n);
    await h.stopAgent('host-b');
    const args = ['takeover', '--loader', 'loader2', '--victim-agent', 'host-b', '--by', 'host-a'];
    const dry = await runFleetCli(h.address, [...args, '--dry-run']);
    expect(dry.stdout).toMatch(
      /^verdict: unproven, REFUSED\n {2}- failed host-b: agent host-b offline on all 4 paths; no heartbeat since /,
    );
    expect(dry.exitCode).not.toBe(0);
    const noReason = await runFleetCli(h.address, [...args, '--force']);
    expect(noReason.exitCode).toBe(1);
    expect(noReason.stderr).toContain('--force needs --reason');
    const forced = await runFleetCli(h.address, [...args, '--force', '--reason', 'host-b is gone']);
    expect(forced.exitCode).toBe(0);
    expect(forced.stdout).toMatch(/^verdict: unproven, FORCED\n {2}overrides: no rule proves/);
  });
});
