import { afterAll, beforeAll, expect, it } from 'vitest';
import { Metadata, Status } from 'nice-grpc';
import { createControlClient, createFleetClient } from '../../src/common/client.js';
import { startServerProcess, startSimProcess } from '../../src/demo/processes.js';
import { DEMO_FABRIC, ensureBuilt, type ChildHandle } from '../helpers/processes.js';

const drive = { agentId: 'host-b', path: '/dev/sg1' };
const LU = 'naa.5000e11100000002';
let server: Awaited<ReturnType<typeof startServerProcess>>;
let sim: ChildHandle;
const output: string[] = [];

beforeAll(async () => {
  await ensureBuilt();
  server = await startServerProcess({
    env: { PRFLEET_STORE: 'pglite', PRFLEET_PRINCIPAL_MAX_SESSIONS: '2', PRFLEET_PRINCIPAL_MAX_COMMANDS: '2', PRFLEET_PRINCIPAL_MAX_WATCHES: '2', PRFLEET_WEBHOOKS_ALLOW_HTTP: 'true' },
    onLine: (line) => output.push(line),
  });
  sim = await startSimProcess({ address: server.address, fabric: DEMO_FABRIC, extraArgs: ['--latency-ms', '60'] });
}, 600_000);
afterAll(async () => {
  await sim?.stop({ graceMs: 5000 });
  await server?.handle.stop({ graceMs: 5000 });
});

it('probe', async () => {
  const c = createControlClient(server.address) as any;
  const f = createFleetClient(server.address) as any;
  await expect.poll(async () => (await c.listDevices({})).logicalUnits.length, { timeout: 30_000 }).toBeGreaterThan(0);
  let n = 0;
  const key = () => `k-${n++}`;
  const calls: [string, () => any][] = [
    ['listAgents', () => [c, 'listAgents', {}]],
    ['listDevices', () => [c, 'listDevices', {}]],
    ['getDevice', () => [c, 'getDevice', { luId: LU }]],
    ['readKeys', () => [c, 'readKeys', { target: drive }]],
    ['readReservation', () => [c, 'readReservation', { target: drive }]],
    ['reportCapabilities', () => [c, 'reportCapabilities', { target: drive }]],
    ['readFullStatus', () => [c, 'readFullStatus', { target: drive }]],
    ['register', () => [c, 'register', { target: drive, newKey: 0xb1n, options: { idempotencyKey: key() } }]],
    ['reserve', () => [c, 'reserve', { target: drive, key: 0xb1n, type: 1, options: { idempotencyKey: key() } }]],
    ['release', () => [c, 'release', { target: drive, key: 0xb1n, type: 1, options: { idempotencyKey: key() } }]],
    ['clear', () => [c, 'clear', { target: drive, key: 0xb1n, options: { idempotencyKey: key(), reason: 'x' } }]],
    ['preempt', () => [c, 'preempt', { target: drive, key: 0xb1n, preemptKey: 0xb2n, type: 1, options: { idempotencyKey: key(), reason: 'x' } }]],
    ['registerAndMove', () => [c, 'registerAndMove', { target: drive, key: 0xb1n, serviceActionKey: 0xb3n, options: { reason: 'x' } }]],
    ['listHistory', () => [c, 'listHistory', {}]],
    ['verifyHistory', () => [c, 'verifyHistory', {}]],
    ['listTokens', () => [c, 'listTokens', {}]],
    ['audit', () => [f, 'audit', {}]],
    ['allocateKey', () => [f, 'allocateKey', { agentId: 'host-b', site: 'dc1', owner: 'x', purpose: 1 }]],
    ['listKeys', () => [f, 'listKeys', {}]],
    ['decodeKey', () => [f, 'decodeKey', { key: 0xb1n }]],
    ['getDesiredState', () => [f, 'getDesiredState', {}]],
    ['setDesiredState', () => [f, 'setDesiredState', { desired: [] }]],
    ['plan', () => [f, 'plan', {}]],
    ['apply', () => [f, 'apply', { options: { reason: 'x' } }]],
    ['takeover', () => [f, 'takeover', { failedAgentId: 'host-c', options: { reason: 'x' } }]],
    ['listLoaders', () => [f, 'listLoaders', { refresh: true }]],
    ['listWebhooks', () => [f, 'listWebhooks', {}]],
    ['addWebhook', () => [f, 'addWebhook', { url: 'http://127.0.0.1:9/x', events: ['prout'], secret: 'abcdefghijklmnopqrstuvwxyz012345' }]],
  ];
  const codes: Record<string, Record<string, number>> = {};
  const sent: any[] = [];
  for (let round = 0; round < 2; round++)
  for (const deadlineMs of [-1000, 1, 50, 210, 230, 260, 300, 350, 450]) {
    for (const [name, make] of calls) {
      const [cl, m, req] = make();
      if (req.options?.idempotencyKey) sent.push([cl, m, req]);
      let code = 'OK';
      try {
        const r = cl[m](req, { deadline: new Date(Date.now() + deadlineMs) });
        if (r[Symbol.asyncIterator]) { for await (const _ of r); }
        else await r;
      } catch (e: any) { code = `${Status[e.code]}${e.code === Status.INTERNAL || e.code === Status.UNKNOWN ? ':' + e.details : ''}`; }
      codes[name] ??= {};
      codes[name][code] = (codes[name][code] ?? 0) + 1;
    }
  }
  console.log(JSON.stringify(codes, null, 0));
  await new Promise((r) => setTimeout(r, 3000));
  // quotas
  const results: string[] = [];
  for (let i = 0; i < 2; i++) {
    await Promise.all([1, 2].map(() => c.readKeys({ target: drive }, { deadline: new Date(Date.now() + 10_000) }).then(() => 'ok', (e: any) => Status[e.code] + e.details))).then((r) => results.push(...r));
  }
  console.log('quota commands', results);
  const bad = output.filter((l) => { try { const j = JSON.parse(l); return j.level >= 50 || /unhandled|uncaught/i.test(l); } catch { return true; } });
  console.log('BAD LINES', bad.length, bad.slice(0, 20).join('\n'));
  const hist = await c.verifyHistory({});
  console.log('verify', JSON.stringify(hist, (k, v) => typeof v === 'bigint' ? v.toString() : v).slice(0, 1000));
  const before = (await c.listHistory({ pageSize: 1000 })).entries.length;
  const replay: Record<string, number> = {};
  for (const [cl, m, req] of sent) {
    let code = 'OK';
    try { const r = await cl[m](req, { deadline: new Date(Date.now() + 20_000) }); code = 'OK:' + r.result?.outcome + (r.replayed ? ':replayed' : ''); } catch (e: any) { code = Status[e.code] + ':' + e.details.slice(0, 100); }
    replay[code] = (replay[code] ?? 0) + 1;
  }
  console.log('replay', JSON.stringify(replay));
  const lh = await c.listHistory({ pageSize: 1000 });
  const perKey: Record<string, number> = {};
  for (const e of lh.entries) perKey[e.idempotencyKey] = (perKey[e.idempotencyKey] ?? 0) + 1;
  console.log('sent', sent.length, 'history before replay', before, 'after', lh.entries.length, 'doubled', Object.entries(perKey).filter(([, v]) => v > 1));
  console.log('verify2', JSON.stringify(await c.verifyHistory({}), (k, v) => typeof v === 'bigint' ? v.toString() : v).slice(0, 500));
  console.log('history entries', lh.entries.length, JSON.stringify(lh.entries.slice(0,2), (k, v) => typeof v === 'bigint' ? v.toString() : v).slice(0, 1500));
}, 600_000);
