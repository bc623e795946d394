// Webhooks against a real HTTP receiver (node:http in this process), a real server, emulated agents and
// PostgreSQL (an own schema per test): signed deliveries, retries in order through 500s and timeouts, dead
// letters, two instances sharing the deliveries without duplicates, and the refusals.
import { Metadata, Status } from 'nice-grpc';
import { describe, expect, it } from 'vitest';
import { PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { FleetServiceDefinition } from '../../src/gen/prfleet/v1/fleet.js';
import {
  createAuthMiddleware,
  createMemoryTokenStore,
  createToken,
} from '../../src/server/auth/index.js';
import { defaultServerConfig, type ServerConfig } from '../../src/server/config.js';
import { createMetrics, webhookObserver } from '../../src/server/metrics.js';
import { WEBHOOK_DEFAULTS, type WebhookSettings } from '../../src/server/webhooks/index.js';
import { runCli } from '../../src/cli/program.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { EventKind, fleetClient, pgSchema, pgSkip } from './helpers.js';
import { startReceiver, verifiesAsDocumented, type Received } from './webhook-receiver.js';
import { createChannel, createClientFactory } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { onTestFinished } from 'vitest';

const A_DRIVE = { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE };
const B_DRIVE = { agentId: 'host-b', path: '/dev/sg1', luId: LOADER1_DRIVE };
const C_DRIVE = { agentId: 'host-c', path: '/dev/sg1', luId: LOADER1_DRIVE };
const SECRET = 'whsec-0123456789abcdef-test';
const PROUT_KINDS = [EventKind.EVENT_KIND_PROUT];

/** A server config on its own PostgreSQL schema with quick retries and http allowed (tests only). */
function config(
  webhooks: Partial<WebhookSettings> = {},
  db = pgSchema(),
  instanceId = 'wh-test',
): Partial<ServerConfig> {
  return {
    instanceId,
    store: { kind: 'postgres', databaseUrl: db.databaseUrl, schema: db.schema },
    events: { ...defaultServerConfig().events, pollMs: 50 },
    webhooks: {
      ...WEBHOOK_DEFAULTS,
      allowHttp: true,
      timeoutMs: 400,
      backoffMs: 40,
      backoffMaxMs: 300,
      scanMs: 200,
      leaseMs: 3_000,
      ...webhooks,
    },
  };
}

/** The PROUT detail of a delivered event (JSON form, docs/events.md). */
function proutOf(r: Received): Record<string, unknown> {
  return r.event['prout'] as Record<string, unknown>;
}

describe.skipIf(pgSkip !== undefined)('webhooks', { timeout: 120_000 }, () => {
  it('delivers signed events of a preemption and the unit attention the preempted host meets', async () => {
    const receiver = await startReceiver();
    const metrics = createMetrics({ processMetrics: false });
    const { address, client } = await startTestServer({
      config: config(),
      deps: { webhookObserver: webhookObserver(metrics) },
    });
    const fleet = fleetClient(address);
    const { webhook } = await fleet.addWebhook({
      url: receiver.url,
      secret: SECRET,
      description: 'ci',
      filter: { kinds: [EventKind.EVENT_KIND_PROUT, EventKind.EVENT_KIND_UNIT_ATTENTION] },
    });
    expect(webhook?.secretFingerprint).toMatch(/^[0-9a-f]{12}$/);
    // Another receiver only for PROUTs to loader2's LUs: none of this test's PROUTs are.
    const other = await startReceiver();
    const { webhook: loader2 } = await fleet.addWebhook({
      url: other.url,
      secret: SECRET,
      filter: { loaderIds: ['loader2'], kinds: [EventKind.EVENT_KIND_PROUT] },
    });
    const listed = await fleet.listWebhooks({});
    expect(
      JSON.stringify(listed, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
    ).not.toContain(SECRET);

    await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    await client.register({ target: A_DRIVE, newKey: 0xa1n });
    await client.register({ target: C_DRIVE, newKey: 0xc1n });
    await client.reserve({ target: C_DRIVE, key: 0xc1n, type: PrType.PR_TYPE_EXCLUSIVE_ACCESS });
    await client.preempt({
      target: A_DRIVE,
      key: 0xa1n,
      preemptKey: 0xc1n,
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      options: { reason: 'host-c failed' },
    });
    await client.readKeys({ target: C_DRIVE }); // host-c meets REGISTRATIONS PREEMPTED
    const got = await receiver.waitAccepted(5);

    for (const r of got) {
      expect(verifiesAsDocumented(SECRET, r)).toBe(true);
      expect(r.eventId).toBe(r.event['cursor']);
      expect(r.kind).toBe(r.event['kind']);
    }
    // A changed body, or another secret, does not verify.
    expect(verifiesAsDocumented(SECRET, { ...got[0]!, body: `${got[0]!.body} ` })).toBe(false);
    expect(verifiesAsDocumented('another-secret-0123456789', got[0]!)).toBe(false);
    const ids = got.map((r) => BigInt(r.eventId));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
    const preempt = got.find((r) => proutOf(r)?.['action'] === 'PROUT_ACTION_PREEMPT');
    expect(preempt?.event).toMatchObject({
      kind: 'EVENT_KIND_PROUT',
      agentId: 'host-a',
      path: '/dev/sg2',
      luId: LOADER1_DRIVE,
      loaderId: 'loader1',
      site: 'dc1',
      prout: {
        serviceActionKey: '0x00000000000000c1',
        reason: 'host-c failed',
        outcome: 'OUTCOME_GOOD',
      },
    });
    const ua = got.find((r) => r.kind === 'EVENT_KIND_UNIT_ATTENTION');
    expect(ua?.event).toMatchObject({ agentId: 'host-c', path: '/dev/sg1', luId: LOADER1_DRIVE });

    // The cursor and counters are written just after the receiver answered.
    await expect
      .poll(async () => (await fleet.listWebhooks({ id: webhook!.id })).webhooks[0]?.delivered)
      .toBe(5n);
    const [after] = (await fleet.listWebhooks({ id: webhook!.id })).webhooks;
    expect(after).toMatchObject({ failedAttempts: 0n, deadLettered: 0n, lastError: '' });
    expect(after?.cursor).toBe(BigInt(got.at(-1)!.eventId));
    // The filtered-out events were skipped past (its cursor moved on) without a request.
    await expect
      .poll(async () => (await fleet.listWebhooks({ id: loader2!.id })).webhooks[0]?.cursor)
      .toBeGreaterThanOrEqual(BigInt(got.at(-1)!.eventId));
    expect(other.received).toEqual([]);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/prfleet_webhook_deliveries_total\{outcome="ok"\} 5/);
    expect(text).toMatch(/prfleet_webhook_delivery_seconds_count 5/);
  });

  it('a receiver that answers 500, then times out, then recovers gets every event once accepted, in order', async () => {
    const receiver = await startReceiver();
    // Three 500s, two requests left unanswered (the server's 1.5 s timeout: long enough that a loaded machine's
    // slow 204 is not taken for one), then it works.
    receiver.behave((_, i) => (i < 3 ? 500 : i < 5 ? 'hang' : 204));
    const { address, client, server } = await startTestServer({
      config: config({ timeoutMs: 1_500 }),
    });
    const fleet = fleetClient(address);
    const { webhook } = await fleet.addWebhook({
      url: receiver.url,
      secret: SECRET,
      filter: { kinds: PROUT_KINDS },
    });
    const start = Number(webhook!.cursor);
    await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    await client.register({ target: A_DRIVE, newKey: 0xa1n });
    await client.register({ target: B_DRIVE, newKey: 0xb1n });
    await client.register({ target: C_DRIVE, newKey: 0xc1n });
    await client.reserve({ target: C_DRIVE, key: 0xc1n, type: PrType.PR_TYPE_EXCLUSIVE_ACCESS });
    const got = await receiver.waitAccepted(4);

    const expected = (
      await server.events.log.readAfter(start, { kinds: PROUT_KINDS }, 100)
    ).events.map((e) => String(e.cursor));
    expect(expected).toHaveLength(4);
    expect(got.map((r) => r.eventId)).toEqual(expected);
    // In order: every attempt at an event comes before the first attempt at the next one.
    const order = receiver.received.map((r) => BigInt(r.eventId));
    expect(order).toEqual([...order].sort((a, b) => (a < b ? -1 : 1)));
    // The first event took six attempts (3 × 500, 2 timeouts, then 2xx); its retries carried the same id.
    expect(receiver.received.slice(0, 6).map((r) => [r.eventId, r.attempt])).toEqual(
      [1, 2, 3, 4, 5, 6].map((n) => [expected[0], n]),
    );
    for (const r of receiver.received) expect(verifiesAsDocumented(SECRET, r)).toBe(true);
    const [state] = (await fleet.listWebhooks({})).webhooks;
    expect(state).toMatchObject({
      delivered: 4n,
      failedAttempts: 5n,
      deadLettered: 0n,
      lastError: '',
    });
    expect(state?.cursor).toBe(BigInt(expected[3]!));
  });

  it('a receiver that never answers slows neither the other receivers nor the PROUTs', async () => {
    const slow = await startReceiver();
    slow.behave(() => 'hang');
    const fast = await startReceiver();
    const { address, client } = await startTestServer({
      config: config({ timeoutMs: 5_000, concurrency: 3 }),
    });
    const fleet = fleetClient(address);
    for (const r of [slow, slow, fast])
      // two hanging webhooks would fill a bound of 2 if it were shared badly
      await fleet.addWebhook({ url: r.url, secret: SECRET, filter: { kinds: PROUT_KINDS } });
    await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    const started = performance.now();
    await client.register({ target: A_DRIVE, newKey: 0xa1n });
    await client.register({ target: B_DRIVE, newKey: 0xb1n });
    await client.register({ target: C_DRIVE, newKey: 0xc1n });
    expect(performance.now() - started).toBeLessThan(3_000);
    await fast.waitAccepted(3, 4_000);
    // The hanging receiver is still on its first event.
    expect(new Set(slow.received.map((r) => r.eventId)).size).toBe(1);
  });

  it('gives up on an event after the attempt limit: a dead letter with the last error; later events flow', async () => {
    const receiver = await startReceiver();
    receiver.behave(() => 500);
    const metrics = createMetrics({ processMetrics: false });
    const { address, client } = await startTestServer({
      config: config({ maxAttempts: 3 }),
      deps: { webhookObserver: webhookObserver(metrics) },
    });
    const fleet = fleetClient(address);
    const { webhook } = await fleet.addWebhook({
      url: receiver.url,
      secret: SECRET,
      filter: { kinds: PROUT_KINDS },
    });
    await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    await client.register({ target: A_DRIVE, newKey: 0xa1n });
    await expect
      .poll(async () => (await fleet.listWebhooks({})).webhooks[0]?.deadLettered, {
        timeout: 20_000,
      })
      .toBe(1n);
    receiver.behave(() => 204);
    await client.register({ target: B_DRIVE, newKey: 0xb1n });
    const [ok] = await receiver.waitAccepted(1);
    expect(proutOf(ok!)['serviceActionKey']).toBe('0x00000000000000b1');

    await expect.poll(async () => (await fleet.listWebhooks({})).webhooks[0]?.delivered).toBe(1n);
    const [state] = (await fleet.listWebhooks({ id: webhook!.id, deadLetters: 10 })).webhooks;
    expect(state).toMatchObject({ delivered: 1n, failedAttempts: 3n, deadLettered: 1n });
    expect(state?.deadLetters).toHaveLength(1);
    expect(state?.deadLetters[0]).toMatchObject({
      cursor: BigInt(receiver.received[0]!.eventId),
      kind: EventKind.EVENT_KIND_PROUT,
      attempts: 3,
      lastError: 'HTTP 500',
    });
    expect(receiver.received.filter((r) => r.answer === 500)).toHaveLength(3);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/prfleet_webhook_deliveries_total\{outcome="dead_lettered"\} 1/);
    expect(text).toMatch(/prfleet_webhook_deliveries_total\{outcome="failed"\} 3/);

    // Through the CLI: the dead letter and its error are listed; the secret never is.
    const out: string[] = [];
    const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t), env: {} };
    const server = ['--server', address, '--plaintext'];
    expect(await runCli([...server, 'webhooks', 'list'], io)).toBe(0);
    expect(out.join('')).toContain('HTTP 500');
    expect(out.join('')).toContain(`sha256:${state!.secretFingerprint}`);
    expect(out.join('')).not.toContain(SECRET);
  });

  it('gives up on an event still failing after the age limit, whatever the attempts', async () => {
    const receiver = await startReceiver();
    receiver.behave(() => 502);
    const { address, server } = await startTestServer({
      config: config({ maxAttempts: 1_000, maxAgeMs: 1_000, backoffMaxMs: 200 }),
    });
    const fleet = fleetClient(address);
    const { webhook } = await fleet.addWebhook({ url: receiver.url, secret: SECRET });
    const [event] = await server.events.log.append([
      { kind: EventKind.EVENT_KIND_FINDING_RAISED, summary: 'deadlock on loader9' },
    ]);
    await expect
      .poll(async () => (await fleet.listWebhooks({})).webhooks[0]?.deadLettered, {
        timeout: 10_000,
      })
      .toBe(1n);
    const [state] = (await fleet.listWebhooks({ id: webhook!.id, deadLetters: 1 })).webhooks;
    const dead = state!.deadLetters[0]!;
    expect(dead).toMatchObject({ cursor: event!.cursor, lastError: 'HTTP 502' });
    expect(dead.attempts).toBeGreaterThan(1);
    expect(dead.attempts).toBeLessThan(1_000);
    expect(dead.deadAt!.getTime() - dead.firstAttemptAt!.getTime()).toBeGreaterThanOrEqual(900);
  });

  it('two instances on one database: one delivers each webhook, none twice; the other takes over', async () => {
    const receiver = await startReceiver();
    const db = pgSchema();
    const first = await startTestServer({ config: config({}, db, 'wh-one') });
    const second = await startTestServer({ config: config({}, db, 'wh-two') });
    const fleet = fleetClient(first.address);
    await fleet.addWebhook({ url: receiver.url, secret: SECRET, filter: { kinds: PROUT_KINDS } });
    await startEmulatedAgents({ address: first.address });
    await waitForPaths(first.client, LOADER1_DRIVE, 3);
    await first.client.register({ target: A_DRIVE, newKey: 0xa1n });
    await first.client.register({ target: B_DRIVE, newKey: 0xb1n });
    await first.client.register({ target: C_DRIVE, newKey: 0xc1n });
    await receiver.waitAccepted(3);
    await new Promise((r) => setTimeout(r, 500));
    const ids = receiver.received.map((r) => r.eventId);
    expect(new Set(ids).size).toBe(ids.length);
    // The holder leaves (a graceful stop releases its lease); the other carries on from the durable cursor.
    const owner = await second.server.store!.db.query<{ lease_owner: string }>(
      'SELECT lease_owner FROM webhooks',
    );
    expect(owner.rows[0]?.lease_owner).toMatch(/^wh-(one|two)$/);
    const [holder, other] =
      owner.rows[0]?.lease_owner === 'wh-one' ? [first, second] : [second, first];
    await holder.close();
    await other.server.events.log.append([
      { kind: EventKind.EVENT_KIND_PROUT, luId: LOADER1_DRIVE, summary: 'appended by the test' },
    ]);
    await receiver.waitAccepted(4);
    await new Promise((r) => setTimeout(r, 500));
    const all = receiver.received.map((r) => r.eventId);
    expect(new Set(all).size).toBe(all.length);
    expect(receiver.received.at(-1)?.event['summary']).toBe('appended by the test');
    const now = await other.server.store!.db.query<{ lease_owner: string }>(
      'SELECT lease_owner FROM webhooks',
    );
    expect(now.rows[0]?.lease_owner).toBe(other.server.instanceId);
  });

  it('refuses http without the server flag, bad URLs and short secrets with a clear error, changing nothing', async () => {
    const { address } = await startTestServer({ config: config({ allowHttp: false }) });
    const fleet = fleetClient(address);
    const refused = async (url: string, secret = SECRET) => {
      const error = await fleet.addWebhook({ url, secret }).then(
        () => undefined,
        (e: unknown) => e as { code: Status; details: string },
      );
      expect(error?.code, url).toBe(Status.INVALID_ARGUMENT);
      return error!.details;
    };
    expect(await refused('http://127.0.0.1:9/hook')).toMatch(
      /http is refused.*PRFLEET_WEBHOOKS_ALLOW_HTTP/,
    );
    expect(await refused('ftp://example.com/x')).toMatch(/scheme ftp/);
    expect(await refused('https://user:pw@example.com/x')).toMatch(/credentials/);
    expect(await refused('https://exa mple.com/')).toMatch(/printable ASCII/);
    expect(await refused('https://example.com/a\\b')).toMatch(/backslash/);
    expect(await refused('https://example.com/%0d%0aX-Injected:%201')).toMatch(/encoded control/);
    expect(await refused('https://example.com/\u001b[31mred')).toMatch(/url/);
    expect(await refused('https://example.com/#frag')).toMatch(/fragment/);
    expect(await refused('example.com/hook')).toMatch(/not an absolute URL/);
    expect(await refused('https://example.com/hook', 'short')).toMatch(/secret: 5 bytes/);
    expect(await refused('')).toMatch(/url/);
    // Quoted escaped and cut, never echoed whole.
    expect(await refused(`https://example.com/${'x'.repeat(3000)}`)).not.toContain('x'.repeat(200));
    expect((await fleet.listWebhooks({})).webhooks).toEqual([]);
    // https is accepted (nothing listens there; it is only stored).
    const { webhook } = await fleet.addWebhook({
      url: 'https://receiver.example/hook',
      secret: SECRET,
    });
    expect((await fleet.listWebhooks({})).webhooks.map((w) => w.id)).toEqual([webhook!.id]);
    await fleet.removeWebhook({ id: webhook!.id });
    expect((await fleet.listWebhooks({})).webhooks).toEqual([]);
    await expect(fleet.removeWebhook({ id: webhook!.id })).rejects.toMatchObject({
      code: Status.NOT_FOUND,
    });
  });

  it('lets only an admin add, list or remove webhooks', async () => {
    const tokens = createMemoryTokenStore();
    const issued = {
      viewer: (await createToken(tokens, { name: 'vera', role: 'viewer' })).token,
      operator: (await createToken(tokens, { name: 'otto', role: 'operator' })).token,
      admin: (await createToken(tokens, { name: 'ada', role: 'admin' })).token,
    };
    const { address } = await startTestServer({
      config: config(),
      deps: { controlMiddleware: createAuthMiddleware({ tokens }) },
    });
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const as = (role: keyof typeof issued) =>
      createClientFactory()
        .use(errorDetailsClientMiddleware)
        .create(FleetServiceDefinition, channel, {
          '*': { metadata: Metadata({ authorization: `Bearer ${issued[role]}` }) },
        });
    const add = { url: 'https://receiver.example/hook', secret: SECRET };
    for (const role of ['viewer', 'operator'] as const) {
      await expect(as(role).addWebhook(add)).rejects.toMatchObject({
        code: Status.PERMISSION_DENIED,
      });
      await expect(as(role).listWebhooks({})).rejects.toMatchObject({
        code: Status.PERMISSION_DENIED,
      });
      await expect(as(role).removeWebhook({ id: '000000000000' })).rejects.toMatchObject({
        code: Status.PERMISSION_DENIED,
      });
    }
    const { webhook } = await as('admin').addWebhook(add);
    expect(webhook?.createdBy).toBe('ada');
    expect((await as('admin').listWebhooks({})).webhooks).toHaveLength(1);
  });
});
