/**
 * The web fleet view on a real server's one port, with the demo fabric's emulated agents and PGlite: the JSON
 * snapshot, the SSE stream showing a preemption within a second, the view's reads leaving the preempted host its
 * unit attention, fleet events forwarded by cursor and resumed after Last-Event-ID, login and cookies, origin
 * checks; and the view alone on a plain node:http server refusing everyone over TLS without tokens.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { createMemoryTokenStore, issueToken } from '../../src/server/auth/tokens.js';
import type { FleetView, LuView } from '../../src/server/web/index.js';
import { createLogger } from '../../src/common/logger.js';
import { AgentRegistry } from '../../src/server/agents/index.js';
import { createInProcessRouter } from '../../src/server/router.js';
import { createWebView } from '../../src/server/web/index.js';
import {
  buildAssets,
  KEYS,
  LU,
  pathOf,
  preempt,
  registerEverywhere,
  reserve,
  serveView,
  startWebRig,
  type WebRig,
} from './harness.js';

let assetsDir: string;
beforeAll(() => {
  assetsDir = buildAssets();
});
afterAll(() => rmSync(assetsDir, { recursive: true, force: true }));

function findLu(view: FleetView, luId: string): LuView | undefined {
  for (const site of view.sites)
    for (const loader of site.loaders)
      for (const lu of [...loader.changers, ...loader.drives]) if (lu.luId === luId) return lu;
  return undefined;
}

/** Reads SSE events from a fetch body. */
async function* sseEvents(body: ReadableStream<Uint8Array>) {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      const id = /^id: (.*)$/m.exec(block)?.[1];
      if (event !== undefined && data !== undefined)
        yield { event, id, data: JSON.parse(data) as unknown };
    }
  }
}

describe('web view on a plaintext demo server without tokens', () => {
  let rig: WebRig;
  beforeAll(async () => {
    rig = await startWebRig({ assetsDir });
  }, 60_000);
  afterAll(() => rig?.close());

  it('lists sites, loaders with changer and drive, registrations by host and path', async () => {
    for (const host of ['host-a', 'host-b', 'host-c'] as const) {
      await registerEverywhere(rig, host, LU.changer1);
      await registerEverywhere(rig, host, LU.drive1);
    }
    const res = await fetch(`${rig.url}/api/v1/fleet`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const view = (await res.json()) as FleetView;
    // Each loader under the site most of its paths are at; host-c sees them from dc2.
    expect(view.sites.map((s) => s.site)).toEqual(['dc1']);
    const loader1 = view.sites[0]?.loaders.find((l) => l.loaderId === 'loader1');
    expect(loader1?.sites).toEqual(['dc1', 'dc2']);
    expect(loader1?.changers.map((l) => l.luId)).toEqual([LU.changer1]);
    expect(loader1?.drives.map((l) => l.luId)).toEqual([LU.drive1]);
    const changer = findLu(view, LU.changer1);
    expect(changer?.status).toBe('read');
    // host-a has two paths to the changer, both registered (READ KEYS counts its key twice).
    const hostA = changer?.registrations.filter((r) => r.agentId === 'host-a');
    expect(hostA?.map((r) => [r.path, r.registration])).toEqual([
      ['/dev/sg0', 'registered'],
      ['/dev/sg1', 'registered'],
    ]);
    expect(changer?.generation).toBeGreaterThan(0);
    expect(view.agents.map((a) => [a.agentId, a.connected])).toEqual([
      ['host-a', true],
      ['host-b', true],
      ['host-c', true],
    ]);
    expect(view.history[0]?.action).toBe('REGISTER');
  });

  it('streams a preemption within a second, read through the preempter so host-c keeps its news', async () => {
    await reserve(rig, 'host-c', LU.drive1);
    const abort = new AbortController();
    const res = await fetch(`${rig.url}/api/v1/fleet/events`, { signal: abort.signal });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = sseEvents(res.body as ReadableStream<Uint8Array>);
    const first = await events.next();
    expect(first.value?.event).toBe('snapshot');
    const before = findLu(first.value?.data as FleetView, LU.drive1);
    expect(before?.holder?.agentId).toBe('host-c');
    expect(before?.type).toBe('EA');

    const { result } = await preempt(rig, 'host-a', 'host-c', LU.drive1);
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const sent = performance.now();
    let shown: LuView | undefined;
    let history = false;
    for await (const { event, data } of events) {
      if (event === 'history') history ||= (data as { action: string }).action === 'PREEMPT';
      if (event === 'lu' && (data as { lu: LuView }).lu.luId === LU.drive1) {
        const lu = (data as { lu: LuView }).lu;
        if (lu.holder?.agentId === 'host-a') shown = lu;
      }
      if (shown !== undefined && history) break;
    }
    const ms = performance.now() - sent;
    abort.abort();
    expect(ms).toBeLessThan(1000);
    expect(shown?.holder).toMatchObject({ agentId: 'host-a', key: '0x000000000000aaaa' });
    expect(shown?.registrations.find((r) => r.agentId === 'host-c')?.registration).toBe(
      'not registered',
    );
    // The view read the drive through host-a's path: host-c's next command still meets REGISTRATIONS PREEMPTED.
    const news = await rig.client.readKeys({
      target: await pathOf(rig, 'host-c', LU.drive1),
      options: { commandTimeout: { seconds: 10n, nanos: 0 } },
    });
    expect(news.result?.unitAttentions.map((ua) => ua.sense?.description ?? '')).toEqual([
      expect.stringMatching(/registrations preempted/i),
    ]);
  });

  it('forwards fleet events by cursor and resumes after Last-Event-ID', async () => {
    const first = new AbortController();
    const res = await fetch(`${rig.url}/api/v1/fleet/events`, { signal: first.signal });
    const events = sseEvents(res.body as ReadableStream<Uint8Array>);
    const snapshot = await events.next();
    expect(snapshot.value?.id).toMatch(/^[0-9]+$/); // the log's head: EventSource resumes after it
    await registerEverywhere(rig, 'host-b', LU.drive1); // host-b was preempted above: registers again
    let seen: string | undefined;
    for await (const { event, id, data } of events) {
      if (event === 'fleet' && (data as { kind: string }).kind === 'EVENT_KIND_PROUT') {
        seen = id;
        break;
      }
    }
    first.abort();
    expect(Number(seen)).toBeGreaterThan(Number(snapshot.value?.id));
    // While the page is away, host-b reserves; it comes back with the cursor it last saw.
    await rig.client.release({
      target: await pathOf(rig, 'host-a', LU.drive1),
      key: KEYS['host-a'],
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      options: { commandTimeout: { seconds: 10n, nanos: 0 } },
    });
    const again = new AbortController();
    const resumed = await fetch(`${rig.url}/api/v1/fleet/events`, {
      signal: again.signal,
      headers: { 'last-event-id': String(seen) },
    });
    const replay = sseEvents(resumed.body as ReadableStream<Uint8Array>);
    const fresh = await replay.next();
    expect(fresh.value?.event).toBe('snapshot');
    expect(fresh.value?.id).toBeUndefined(); // the cursor stays the client's until the replay moves it
    expect(findLu(fresh.value?.data as FleetView, LU.drive1)?.reserved).toBe(false);
    const cursors: number[] = [];
    let release = false;
    for await (const { event, id, data } of replay) {
      if (event !== 'fleet') continue;
      cursors.push(Number(id));
      const fleet = data as { kind: string; prout?: { action: string } };
      if (fleet.kind === 'EVENT_KIND_PROUT' && fleet.prout?.action === 'PROUT_ACTION_RELEASE') {
        release = true;
        break;
      }
    }
    again.abort();
    expect(release).toBe(true);
    expect(Math.min(...cursors)).toBeGreaterThan(Number(seen));
    expect(cursors).toEqual([...cursors].sort((a, b) => a - b));

    // A cursor from another log: a reset, then events from the head.
    const other = new AbortController();
    const reset = await fetch(`${rig.url}/api/v1/fleet/events`, {
      signal: other.signal,
      headers: { 'last-event-id': '999999999' },
    });
    const resetEvents = sseEvents(reset.body as ReadableStream<Uint8Array>);
    expect((await resetEvents.next()).value?.event).toBe('snapshot');
    // LU updates from reads still settling may come first; the reset comes before any fleet event.
    let next = await resetEvents.next();
    while (next.value?.event === 'lu') next = await resetEvents.next();
    other.abort();
    expect(next.value?.event).toBe('reset');
    expect((next.value?.data as { error: string }).error).toMatch(/ahead of the event log/);
  });

  it('serves the page, its assets, and leaves other paths to the dispatcher', async () => {
    const page = await fetch(`${rig.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script type="module" src="/assets/app.js">');
    const script = await fetch(`${rig.url}/assets/app.js`);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await fetch(`${rig.url}/healthz`)).status).toBe(200); // the one port's other routes still answer
    // Without tokens a posted text never becomes a cookie.
    const login = await fetch(`${rig.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin: rig.url, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'token=x%3B%20Domain%3Devil.example',
    });
    expect(login.status).toBe(303);
    expect(login.headers.get('set-cookie')).toBeNull();
    expect((await fetch(`${rig.url}/api/v1/fleet`, { method: 'DELETE' })).status).toBe(405);
  });
});

describe('web view with tokens', () => {
  const viewer = issueToken({ name: 'vera', role: 'viewer' });
  const revoked = issueToken({ name: 'old', role: 'admin' });
  const tokens = createMemoryTokenStore([
    viewer.record,
    { ...revoked.record, revokedAt: new Date().toISOString() },
  ]);
  let rig: WebRig;
  beforeAll(async () => {
    rig = await startWebRig({ assetsDir, tokens });
  }, 60_000);
  afterAll(() => rig?.close());

  const login = (token: string, headers: Record<string, string> = { origin: rig.url }) =>
    fetch(`${rig.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams({ token }).toString(),
    });

  it('shows the login form to a viewer without a token, and refuses the API', async () => {
    const page = await fetch(`${rig.url}/`);
    expect(page.status).toBe(401);
    const html = await page.text();
    expect(html).toContain('<form method="post" action="/login"');
    expect(html).not.toContain('naa.');
    const api = await fetch(`${rig.url}/api/v1/fleet`);
    expect(api.status).toBe(401);
    expect(await api.json()).toEqual({ error: 'log in with a bearer token' });
    expect((await fetch(`${rig.url}/api/v1/fleet/events`)).status).toBe(401);
  });

  it('logs in through the form: an HttpOnly, SameSite=Strict cookie (not Secure in plaintext)', async () => {
    const res = await login(viewer.token);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    const cookie = res.headers.get('set-cookie') ?? '';
    expect(cookie).toBe(`prfleet_token=${viewer.token}; Path=/; HttpOnly; SameSite=Strict`);
    const page = await fetch(`${rig.url}/`, { headers: { cookie: cookie.split(';')[0] ?? '' } });
    expect(page.status).toBe(200);
    const api = await fetch(`${rig.url}/api/v1/fleet`, {
      headers: { authorization: `Bearer ${viewer.token}` },
    });
    expect(api.status).toBe(200);
  });

  it('refuses a login from another origin, without an Origin, or with a bad or revoked token', async () => {
    const elsewhere = await login(viewer.token, { origin: 'https://evil.example' });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.headers.get('set-cookie')).toBeNull();
    expect((await login(viewer.token, {})).status).toBe(403);
    for (const token of [
      revoked.token,
      'prf_000000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
    ]) {
      const res = await login(token);
      expect(res.status).toBe(401);
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(await res.text()).toContain('invalid, expired or revoked token');
    }
    const cookie = `prfleet_token=${revoked.token}`;
    expect((await fetch(`${rig.url}/api/v1/fleet`, { headers: { cookie } })).status).toBe(401);
  });

  it('ends an event stream with logout once its token is revoked', async () => {
    const short = issueToken({ name: 'temp', role: 'viewer' });
    await tokens.add(short.record);
    const served = await serveView(
      createWebView({
        registry: rig.server.server.agents,
        router: rig.server.server.router,
        log: createLogger({ level: 'silent' }),
        tokens,
        tokenRecheckMs: 100,
        assetsDir,
      }),
    );
    try {
      const res = await fetch(`${served.url}/api/v1/fleet/events`, {
        headers: { cookie: `prfleet_token=${short.token}` },
      });
      expect(res.status).toBe(200);
      const events = sseEvents(res.body as ReadableStream<Uint8Array>);
      expect((await events.next()).value?.event).toBe('snapshot');
      await tokens.revoke(short.record.id);
      let last: string | undefined;
      for await (const { event } of events) last = event; // the stream ends after `logout`
      expect(last).toBe('logout');
    } finally {
      await served.close();
    }
  });

  it('logs out only from its own page', async () => {
    expect((await fetch(`${rig.url}/logout`, { method: 'POST', redirect: 'manual' })).status).toBe(
      403,
    );
    const res = await fetch(`${rig.url}/logout`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin: rig.url },
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('set-cookie')).toContain('Max-Age=0');
  });
});

describe('web view on a TLS server without tokens', () => {
  it('shows nothing to anyone', async () => {
    const registry = new AgentRegistry({
      heartbeatMs: 1000,
      missedHeartbeats: 3,
      outboxCapacity: 16,
      log: createLogger({ level: 'silent' }),
    });
    const served = await serveView(
      createWebView({
        registry,
        router: createInProcessRouter({
          registry,
          log: createLogger({ level: 'silent' }),
          instanceId: 't',
        }),
        log: createLogger({ level: 'silent' }),
        plaintext: false,
        assetsDir,
      }),
    );
    try {
      const res = await fetch(`${served.url}/api/v1/fleet`);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: string }).error).toContain('needs client tokens');
      expect((await fetch(`${served.url}/`)).status).toBe(403);
    } finally {
      await served.close();
    }
  });
});
