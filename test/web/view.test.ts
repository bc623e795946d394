/**
 * The web fleet view over a real server, the demo fabric's emulated agents and PGlite, served by a plain
 * node:http server: the JSON snapshot, the SSE stream showing a preemption within a second, the view's reads
 * leaving the preempted host its unit attention, login and cookies, origin checks, and paths it leaves alone.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { createMemoryTokenStore, issueToken } from '../../src/server/auth/tokens.js';
import type { FleetView, LuView } from '../../src/server/web/index.js';
import {
  buildAssets,
  KEYS,
  LU,
  pathOf,
  preempt,
  registerEverywhere,
  reserve,
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
      if (event !== undefined && data !== undefined)
        yield { event, data: JSON.parse(data) as unknown };
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

  it('serves the page, its assets, and leaves other paths to the dispatcher', async () => {
    const page = await fetch(`${rig.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script type="module" src="/assets/app.js">');
    const script = await fetch(`${rig.url}/assets/app.js`);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await fetch(`${rig.url}/metrics`)).status).toBe(404); // not handled: the rig answers 404
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
    const rig = await startWebRig({ assetsDir, plaintext: false });
    try {
      const res = await fetch(`${rig.url}/api/v1/fleet`);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: string }).error).toContain('needs client tokens');
      expect(KEYS['host-a']).toBe(0xaaaan);
    } finally {
      await rig.close();
    }
  }, 60_000);
});
