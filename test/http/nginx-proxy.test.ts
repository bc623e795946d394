// Agents behind a real HTTP/1.1-only reverse proxy (nginx from Debian's packages, proxy_http_version 1.1, no
// HTTP/2 towards the server), started by the test: the gRPC stream cannot pass it; the long-poll link can, end to
// end: register, reserve, a conflict as a result, preempt, the unit attention, and a cut mid-PROUT → UNKNOWN.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createControlClient } from '../../src/common/client.js';
import { AgentLink } from '../../src/gen/prfleet/v1/control.js';
import { Outcome, PrType, type CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { DRIVE_PATHS, LOADER1_DRIVE, TEN_SECONDS, waitForPaths } from '../e2e/fleet.js';
import { nginxBinary, startNginx } from './nginx.js';

const nginx = nginxBinary();
// CI installs nginx (.ci/run); a developer machine without it skips, saying so.
const describeWithNginx = nginx === undefined ? describe.skip : describe;
if (nginx === undefined)
  console.warn('test/http/nginx-proxy: nginx not installed (apt-get install nginx): skipped');

const KEY = { 'host-a': 0xa1n, 'host-b': 0xb1n, 'host-c': 0xc1n } as const;
const options = { commandTimeout: TEN_SECONDS };

function keysOf(result: CommandResult | undefined): bigint[] {
  expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  if (result?.data?.$case !== 'readKeys')
    throw new Error(`no READ KEYS data: ${String(result?.data?.$case)}`);
  return result.data.value.keys;
}

describeWithNginx('agents behind an HTTP/1.1-only nginx', () => {
  it('stops the gRPC stream, lets the long-poll link through, and an agent falls back to it by itself', async () => {
    const { port, address, client } = await startTestServer();
    const proxy = await startNginx(nginx as string, port);
    // gRPC through the proxy: nginx speaks HTTP/1.1 only, the HTTP/2 preface is a bad request to it.
    const viaProxy = createControlClient(proxy.address);
    await expect(viaProxy.listAgents({}, { deadline: 5_000 })).rejects.toThrow();
    viaProxy.close();
    // host-a starts on the stream (the default) and falls back after 2 failures; host-b asks for long-poll.
    await startEmulatedAgents({
      address: proxy.address,
      hosts: ['host-a'],
      agentOptions: { linkFallbackAfter: 2, backoff: { initialMs: 20, maxMs: 100 } },
    });
    const fleet = await startEmulatedAgents({
      address: proxy.address,
      hosts: ['host-b'],
      agentOptions: { link: 'long-poll' },
    });
    expect(fleet.agent('host-b').link).toBe('long-poll');
    const { agents } = await client.listAgents({});
    expect(agents.map((a) => [a.agentId, a.connected, a.link])).toEqual([
      ['host-a', true, AgentLink.AGENT_LINK_LONG_POLL],
      ['host-b', true, AgentLink.AGENT_LINK_LONG_POLL],
    ]);
    // Both links go through the same server: gRPC directly, the agents' polls through nginx.
    const access = await readFile(join(proxy.dir, 'access.log'), 'utf8');
    expect(access).toMatch(/"POST \/agent\/v1\/connect HTTP\/1\.1" 200/);
    expect(access).toMatch(/"POST \/agent\/v1\/sessions\/[0-9a-f-]+\/send HTTP\/1\.1" 204/);
    expect(address).not.toBe(proxy.address);
  }, 60_000);

  it('registers, reserves, returns the conflict as a result, preempts and reports the unit attention', async () => {
    const { port, client } = await startTestServer();
    const proxy = await startNginx(nginx as string, port);
    await startEmulatedAgents({ address: proxy.address, agentOptions: { link: 'long-poll' } });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    for (const host of ['host-a', 'host-b', 'host-c'] as const) {
      const { result } = await client.register({
        target: DRIVE_PATHS[host],
        key: 0n,
        newKey: KEY[host],
        options,
      });
      expect(result?.outcome, `REGISTER ${host}`).toBe(Outcome.OUTCOME_GOOD);
    }
    const reserved = await client.reserve({
      target: DRIVE_PATHS['host-a'],
      key: KEY['host-a'],
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      options,
    });
    expect(reserved.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const conflict = await client.reserve({
      target: DRIVE_PATHS['host-b'],
      key: KEY['host-b'],
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      options,
    });
    expect(conflict.result).toMatchObject({
      outcome: Outcome.OUTCOME_RESERVATION_CONFLICT,
      status: 0x18,
      agentId: 'host-b',
    });
    const preempt = await client.preempt({
      target: DRIVE_PATHS['host-b'],
      key: KEY['host-b'],
      preemptKey: KEY['host-a'],
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      abort: false,
      options,
    });
    expect(preempt.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const news = await client.readKeys({ target: DRIVE_PATHS['host-a'], options });
    expect(keysOf(news.result)).toEqual([0xb1n, 0xc1n]);
    expect(
      news.result?.unitAttentions.map((ua) => [ua.sense?.senseKey, ua.sense?.asc, ua.sense?.ascq]),
    ).toEqual([[6, 0x2a, 0x05]]);
    const holder = await client.readReservation({ target: DRIVE_PATHS['host-c'], options });
    const data = holder.result?.data;
    if (data?.$case !== 'readReservation') throw new Error('no READ RESERVATION data');
    expect(data.value).toMatchObject({ reserved: true, key: 0xb1n });
  }, 120_000);

  it('gives UNKNOWN for a PROUT whose link is cut mid-command, and never sends it again', async () => {
    const { port, client, server } = await startTestServer();
    const proxy = await startNginx(nginx as string, port);
    const fleet = await startEmulatedAgents({
      address: proxy.address,
      hosts: ['host-a'],
      latencyMs: 800,
      agentOptions: { link: 'long-poll', backoff: { initialMs: 50, maxMs: 200 } },
    });
    await waitForPaths(client, LOADER1_DRIVE, 1);
    const before = await client.readKeys({ target: DRIVE_PATHS['host-a'], options });
    const generation = before.result?.generation ?? 0;
    const request = {
      target: DRIVE_PATHS['host-a'],
      key: 0n,
      newKey: KEY['host-a'],
      options: { ...options, idempotencyKey: 'cut-mid-prout' },
    };
    const pending = client.register(request);
    await expect.poll(() => server.router.inFlight, { timeout: 5_000, interval: 20 }).toBe(1);
    // The agent is running it (800 ms on the emulated device), and its next poll waits meanwhile.
    await expect
      .poll(() => fleet.agent('host-a').executor.inFlight, { timeout: 5_000, interval: 10 })
      .toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    await proxy.kill();
    const { result } = await pending;
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toMatch(/may or may not have run/);
    await proxy.restart();
    await expect
      .poll(async () => (await client.listAgents({})).agents[0]?.connected, { timeout: 15_000 })
      .toBe(true);
    await waitForPaths(client, LOADER1_DRIVE, 1);
    // The same request again (same idempotency key): the pipeline reads the LU instead of sending it again and
    // finds the REGISTER took effect (the agent had run it before its result was lost).
    const repeat = await client.register(request);
    expect(repeat.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    // The device ran the REGISTER once: one generation step, the key registered once.
    const after = await client.readKeys({ target: DRIVE_PATHS['host-a'], options });
    expect(keysOf(after.result)).toEqual([0xa1n]);
    expect(after.result?.generation).toBe(generation + 1);
  }, 120_000);
});
