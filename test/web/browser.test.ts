/**
 * The web fleet view in a real browser: Debian's Chromium (/usr/bin/chromium; `bash .ci/run` installs it) driven
 * by playwright-core, against a real server with the demo fabric's emulated agents. A viewer without a token gets
 * the login form; after logging in the page lists the fabric; a preempt through the gRPC API shows within 1 s
 * without a reload; names full of markup (and a hostname that is not valid UTF-8 on the wire) show as text; the
 * page fits a phone. Screenshots go to test-output/web/ (gitignored).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { createMemoryTokenStore, issueToken } from '../../src/server/auth/tokens.js';
import type { FabricInput } from '../../agent/fabric.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import {
  buildAssets,
  LU,
  preempt,
  registerEverywhere,
  reserve,
  startWebRig,
  type WebRig,
} from './harness.js';

const CHROMIUM = '/usr/bin/chromium';
const OUTPUT = new URL('../../test-output/web/', import.meta.url).pathname;

/** A fabric whose names are markup: loader id, serials, device node, site (and, below, the hostname). */
const HOSTILE_FABRIC: FabricInput = {
  loaders: [
    {
      id: '<img src=x onerror="window.__pwned=1">',
      changer: {
        id: 'evil-changer',
        profile: 'superloader-changer',
        serial: '<b>SER</b>',
        naa: '0x5000e11100000f01',
      },
      drives: [
        {
          id: 'evil-drive',
          profile: 'lto-drive',
          serial: '</table><script>window.__pwned=2</script>',
          naa: '0x5000e11100000f02',
        },
      ],
    },
  ],
  hosts: [
    {
      id: 'host-x',
      site: '<script>window.__pwned=3</script>',
      initiatorPorts: ['sas:0x500605b000000f01'],
      paths: [
        {
          node: '/dev/<i>sg0</i>',
          lu: 'evil-changer',
          initiatorPort: 'sas:0x500605b000000f01',
          relativeTargetPort: 1,
        },
        {
          node: '/dev/sg1',
          lu: 'evil-drive',
          initiatorPort: 'sas:0x500605b000000f01',
          relativeTargetPort: 1,
        },
      ],
    },
  ],
};
// A lone surrogate: protobuf writes it as bytes that are not valid UTF-8.
const HOSTILE_HOSTNAME = 'x\ud800y<svg onload="window.__pwned=4">';

const viewer = issueToken({ name: 'vera', role: 'viewer' });
/** What the functions run in the page use (the tests compile without the DOM library). */
interface BrowserGlobals {
  readonly document: {
    querySelector(selector: string): { textContent: string | null } | null;
    readonly documentElement: { scrollWidth: number; clientWidth: number };
  };
}

/** Errors the page logged or threw (none expected). */
const pageErrors: string[] = [];

describe.skipIf(!existsSync(CHROMIUM))('web view in Chromium', () => {
  let assetsDir: string;
  let profile: string;
  let rig: WebRig;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    assetsDir = buildAssets();
    rig = await startWebRig({ assetsDir, tokens: createMemoryTokenStore([viewer.record]) });
    await startEmulatedAgents({
      address: rig.server.address,
      fabric: HOSTILE_FABRIC,
      agentOptions: { hostname: HOSTILE_HOSTNAME },
      keepAlive: true,
    });
    for (const host of ['host-a', 'host-b', 'host-c'] as const) {
      await registerEverywhere(rig, host, LU.drive1);
    }
    await reserve(rig, 'host-c', LU.drive1);
    profile = mkdtempSync(join(tmpdir(), 'prfleet-chromium-'));
    mkdirSync(OUTPUT, { recursive: true });
    // A fresh profile, nothing fetched or updated in the background: the test talks only to its own server.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await rig?.close();
    for (const dir of [profile, assetsDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows a viewer without a token the login form', async () => {
    const response = await page.goto(`${rig.url}/`);
    expect(response?.status()).toBe(401);
    await expect(page.locator('form#login input[name=token]').isVisible()).resolves.toBe(true);
    expect(await page.locator('[data-lu-id]').count()).toBe(0);
  });

  it('logs in and lists the demo fabric: sites, loaders, changer and drive side by side', async () => {
    await page.fill('input[name=token]', viewer.token);
    await Promise.all([page.waitForURL(`${rig.url}/`), page.click('button[type=submit]')]);
    const drive = page.locator(`[data-lu-id="${LU.drive1}"]`).first();
    await drive.waitFor({ timeout: 10_000 }).catch((e: unknown) => {
      throw new Error(`${String(e)}; page errors: ${pageErrors.join(' | ')}`);
    });
    const sites = await page.locator('section.site > h2').allTextContents();
    expect(sites).toContain('Site dc1');
    const loader1 = page.locator(
      'section.site[data-site="dc1"] section.loader[data-loader-id="loader1"]',
    );
    expect(await loader1.locator('h3').textContent()).toBe('Loader loader1');
    expect(await loader1.locator('p.muted').first().textContent()).toBe('seen from sites dc1, dc2');
    const changerBox = await loader1.locator(`[data-lu-id="${LU.changer1}"]`).boundingBox();
    const driveBox = await loader1.locator(`[data-lu-id="${LU.drive1}"]`).boundingBox();
    // Side by side at 1280 px: same row, changer left of the drive.
    expect(changerBox?.y).toBe(driveBox?.y);
    expect((changerBox?.x ?? 0) + (changerBox?.width ?? 0)).toBeLessThanOrEqual(driveBox?.x ?? 0);
    const holder = await loader1
      .locator(`[data-lu-id="${LU.drive1}"] [data-field=holder]`)
      .textContent();
    expect(holder).toContain('host-c');
    expect(await page.locator('table.agents tbody tr').count()).toBe(4);
    await page.screenshot({ path: join(OUTPUT, 'fleet-1280.png'), fullPage: true });
  });

  it('shows a preempt done through the gRPC API within 1 s, without a reload', async () => {
    const navigations: string[] = [];
    page.on('framenavigated', (frame) => navigations.push(frame.url()));
    const holder = page
      .locator(`[data-loader-id="loader1"] [data-lu-id="${LU.drive1}"] [data-field=holder]`)
      .first();
    const { result } = await preempt(rig, 'host-a', 'host-c', LU.drive1);
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const done = performance.now();
    await page.waitForFunction(
      (luId) =>
        (globalThis as unknown as BrowserGlobals).document
          .querySelector(`[data-loader-id="loader1"] [data-lu-id="${luId}"] [data-field=holder]`)
          ?.textContent?.includes('host-a') === true,
      LU.drive1,
      { timeout: 1000, polling: 'raf' },
    );
    const ms = performance.now() - done;
    console.log(`web view: preempt shown ${Math.round(ms)} ms after the RPC returned`);
    expect(ms).toBeLessThan(1000);
    expect(await holder.textContent()).toContain('0x000000000000aaaa');
    expect(navigations).toEqual([]);
    expect(await page.locator('table.history tbody tr').first().textContent()).toContain('PREEMPT');
    await page.screenshot({ path: join(OUTPUT, 'fleet-after-preempt.png'), fullPage: true });
  });

  it('renders names from agents as text, never as markup', async () => {
    const hostile = page.locator('[data-lu-id="naa.5000e11100000f02"]');
    await hostile.waitFor({ timeout: 10_000 });
    expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('main img, main svg, main script, main b, main i').count()).toBe(0);
    const text = (await page.locator('main').textContent()) ?? '';
    expect(text).toContain('Loader <img src=x onerror="window.__pwned=1">');
    expect(text).toContain('</table><script>window.__pwned=2</script>');
    expect(text).toContain('Site <script>window.__pwned=3</script>');
    expect(text).toContain('/dev/<i>sg0</i>');
    // The hostname's bytes were not UTF-8: it arrives with a replacement character, shown as text.
    expect(text).toMatch(/x\uFFFD+y<svg onload="window.__pwned=4">/);
  });

  it('fits a phone', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(100);
    const overflow = await page.evaluate(() => {
      const root = (globalThis as unknown as BrowserGlobals).document.documentElement;
      return root.scrollWidth - root.clientWidth;
    });
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(OUTPUT, 'fleet-phone.png'), fullPage: true });
  });
});
