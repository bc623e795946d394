/**
 * The web view's test rig: a real prfleet server (embedded PGlite store in a temporary directory, so PROUTs have
 * a history and events are durable) serving the view on its one port, and the demo fabric's emulated agents.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { PrType } from '../../src/gen/prfleet/v1/scsi.js';
import type { ControlClient } from '../../src/common/client.js';
import type { TokenStore } from '../../src/server/auth/tokens.js';
import type { WebView } from '../../src/server/web/index.js';
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
  /** http://127.0.0.1:port: the server's one port (gRPC and HTTP/1.1). */
  readonly url: string;
  readonly client: ControlClient;
  close(): Promise<void>;
}

/** Options of {@link startWebRig}. */
export interface WebRigOptions {
  /** The built front end (buildAssets()). */
  readonly assetsDir: string;
  /** Client tokens the view asks for (the gRPC services stay open: no auth middleware). @default none */
  readonly tokens?: TokenStore;
}

/**
 * Starts a real server (PGlite store, the front end from `assetsDir`) and the demo fabric's agents; the view
 * is on the server's own port. close() stops both.
 */
export async function startWebRig(options: WebRigOptions): Promise<WebRig> {
  const dataDir = mkdtempSync(join(tmpdir(), 'prfleet-web-store-'));
  process.env['PRFLEET_WEB_ASSETS'] = options.assetsDir;
  const server = await startTestServer({
    config: { store: { kind: 'pglite', dataDir } },
    ...(options.tokens === undefined ? {} : { deps: { tokens: options.tokens } }),
    keepAlive: true,
  });
  const store = server.server.store;
  // The hosts' keys are in the key registry, as prfleet's own keys are: holders are named by host.
  for (const [agentId, key] of Object.entries(KEYS)) {
    await store?.keys.adopt({ key, purpose: 'backup', owner: 'web test', agentId });
  }
  const agents = await startEmulatedAgents({ address: server.address, keepAlive: true });
  return {
    server,
    agents,
    url: `http://${server.address}`,
    client: server.client,
    async close() {
      await agents.stop();
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Serves `view` alone on a plain node:http server (port 0); answers 404 for paths it leaves. */
export async function serveView(view: WebView): Promise<{ url: string; close(): Promise<void> }> {
  const http: Server = createServer((req, res) => {
    void view.handle(req, res).then((handled) => {
      if (!handled) res.writeHead(404, { 'content-type': 'text/plain' }).end('not the view\n');
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    async close() {
      view.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
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
