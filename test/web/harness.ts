/**
 * The web view's test rig: a real prfleet server (embedded PGlite store in a temporary directory, so PROUTs have
 * a history), the demo fabric's emulated agents, and the view served by a plain node:http server on port 0.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { PrType } from '../../src/gen/prfleet/v1/scsi.js';
import type { ControlClient } from '../../src/common/client.js';
import { createLogger } from '../../src/common/logger.js';
import type { TokenStore } from '../../src/server/auth/tokens.js';
import { createWebView, type WebView } from '../../src/server/web/index.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { EmulatedFleet } from '../../agent/fleet.js';

/** Keys of the demo's hosts. */
export const KEYS = { 'host-a': 0xaaaan, 'host-b': 0xbbbbn, 'host-c': 0xccccn } as const;
/** The demo fabric's LUs. */
export const LU = {
  changer1: 'naa.5000e11100000001',
  drive1: 'naa.5000e11100000002',
} as const;

const ROOT = new URL('../..', import.meta.url).pathname;

/** Builds the front end (scripts/web.mjs) into a temporary directory; returns it. */
export function buildAssets(): string {
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-web-assets-'));
  execFileSync(process.execPath, [join(ROOT, 'scripts/web.mjs'), dir], { stdio: 'pipe' });
  return dir;
}

/** A running rig. */
export interface WebRig {
  readonly server: TestServer;
  readonly agents: EmulatedFleet;
  readonly view: WebView;
  /** http://127.0.0.1:port of the view. */
  readonly url: string;
  readonly client: ControlClient;
  close(): Promise<void>;
}

/** Options of {@link startWebRig}. */
export interface WebRigOptions {
  readonly assetsDir: string;
  readonly tokens?: TokenStore;
  /** @default judged per request (the rig is plaintext) */
  readonly plaintext?: boolean;
  /** @default 30000 */
  readonly refreshMs?: number;
  /** Extra agents' Hello overrides (escaping tests). */
  readonly agentOptions?: Parameters<typeof startEmulatedAgents>[0]['agentOptions'];
}

/** Starts server, agents and the view; close() stops all of them. */
export async function startWebRig(options: WebRigOptions): Promise<WebRig> {
  const dataDir = mkdtempSync(join(tmpdir(), 'prfleet-web-store-'));
  const server = await startTestServer({
    config: { store: { kind: 'pglite', dataDir } },
    keepAlive: true,
  });
  const agents = await startEmulatedAgents({
    address: server.address,
    keepAlive: true,
    ...(options.agentOptions === undefined ? {} : { agentOptions: options.agentOptions }),
  });
  const log = createLogger({
    level: (process.env['PRFLEET_TEST_LOG'] as 'debug' | undefined) ?? 'silent',
    name: 'web',
  });
  const store = server.server.store;
  // The hosts' keys are in the key registry, as prfleet's own keys are: holders are named by host.
  for (const [agentId, key] of Object.entries(KEYS)) {
    await store?.keys.adopt({ key, purpose: 'backup', owner: 'web test', agentId });
  }
  const view = createWebView({
    registry: server.server.agents,
    router: server.server.router,
    store,
    history: store?.history,
    log,
    tokens: options.tokens,
    ...(options.plaintext === undefined ? {} : { plaintext: options.plaintext }),
    assetsDir: options.assetsDir,
    refreshMs: options.refreshMs ?? 30_000,
  });
  const http: Server = createServer((req, res) => {
    void view.handle(req, res).then((handled) => {
      if (!handled) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not the view\n');
      }
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    server,
    agents,
    view,
    url,
    client: server.client,
    async close() {
      view.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      await agents.stop();
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const opts = { commandTimeout: { seconds: 10n, nanos: 0 } };

/** Registers `host` on every path it has to `luId`. */
export async function registerEverywhere(
  rig: WebRig,
  host: keyof typeof KEYS,
  luId: string,
): Promise<void> {
  const { logicalUnit } = await rig.client.getDevice({ luId });
  for (const p of logicalUnit?.paths ?? []) {
    if (p.agentId !== host) continue;
    await rig.client.register({
      target: { luId, agentId: host, path: p.path?.path ?? '' },
      key: 0n,
      newKey: KEYS[host],
      options: { ...opts, reason: 'web test' },
    });
  }
}

/** The first path of `host` to `luId`. */
export async function pathOf(rig: WebRig, host: string, luId: string) {
  const { logicalUnit } = await rig.client.getDevice({ luId });
  const path = logicalUnit?.paths.find((p) => p.agentId === host)?.path?.path ?? '';
  return { luId, agentId: host, path };
}

/** host reserves luId (EA). */
export async function reserve(rig: WebRig, host: keyof typeof KEYS, luId: string) {
  return rig.client.reserve({
    target: await pathOf(rig, host, luId),
    key: KEYS[host],
    type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
    options: opts,
  });
}

/** `by` preempts `victim` on luId (EA). */
export async function preempt(
  rig: WebRig,
  by: keyof typeof KEYS,
  victim: keyof typeof KEYS,
  luId: string,
) {
  return rig.client.preempt({
    target: await pathOf(rig, by, luId),
    key: KEYS[by],
    preemptKey: KEYS[victim],
    type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
    abort: false,
    options: { ...opts, reason: 'web test: free the drive' },
  });
}
