import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc-common';
import { createLogger } from '../../src/common/logger.js';
import { loadConfig } from '../../src/server/config.js';
import { createMemoryJournal, type CommandJournal } from '../../src/server/journal.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n'))
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { lines, destination };
}

describe('loadConfig', () => {
  it('applies defaults: port 50051, 60 s command timeout, 10 s heartbeats', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 50051,
      host: '0.0.0.0',
      commandTimeoutMs: 60_000,
      heartbeatMs: 10_000,
      missedHeartbeats: 3,
    });
    expect(config.instanceId).not.toBe('');
    expect(loadConfig({ PORT: '0', PRFLEET_REFLECTION: 'false' })).toMatchObject({
      port: 0,
      reflection: false,
    });
  });

  it('names the bad variable', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadConfig({ PRFLEET_LOG_LEVEL: 'loud' })).toThrow(/PRFLEET_LOG_LEVEL/);
    expect(() => loadConfig({ PRFLEET_HEARTBEAT_MS: '0' })).toThrow(/PRFLEET_HEARTBEAT_MS/);
  });
});

describe('createLogger', () => {
  it('writes bigints as exact decimal strings', () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination, name: 'x' });
    log.info({ key: 2n ** 64n - 1n, nested: { seconds: 30n } }, 'hello');
    expect(lines[0]).toMatchObject({
      level: 'info',
      name: 'x',
      msg: 'hello',
      key: '18446744073709551615',
      nested: { seconds: '30' },
    });
  });
});

describe('server logging and unexpected errors', () => {
  it('logs every PROUT result at info with the key as 16 hex digits', async () => {
    const { lines, destination } = capture();
    const { address, client, server } = await startTestServer({
      log: createLogger({ destination, level: 'info' }),
    });
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', 'naa.1')],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const pending = client.reserve({
      target: { agentId: 'host-a', path: '/dev/sg0' },
      key: 0x77n,
      type: 3,
    });
    agent.respond(await agent.nextCommand(), { outcome: 2, status: 0x18 });
    await pending;
    const done = lines.find((l) => l['msg'] === 'command done');
    expect(done).toMatchObject({
      level: 'info',
      key: '0x0000000000000077',
      outcome: 'OUTCOME_RESERVATION_CONFLICT',
      agentId: 'host-a',
      path: '/dev/sg0',
      luId: 'naa.1',
    });
    expect(lines.some((l) => l['msg'] === 'agent connected')).toBe(true);
  });

  it('answers UNAVAILABLE {STORE_UNAVAILABLE} when the journal cannot record a PROUT: nothing sent, and logged', async () => {
    const { lines, destination } = capture();
    const memory = createMemoryJournal();
    const broken: CommandJournal = {
      ...memory,
      begin: () => Promise.reject(new Error('disk on fire')),
    };
    const { address, client, server } = await startTestServer({
      log: createLogger({ destination, level: 'info' }),
      deps: { journal: broken },
    });
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', 'naa.1')],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const error = await client
      .reserve({
        target: { agentId: 'host-a', path: '/dev/sg0' },
        key: 1n,
        type: 3,
        options: { idempotencyKey: 'k' },
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: Status.UNAVAILABLE });
    expect((error as { details: string }).details).toMatch(/disk on fire.*nothing was sent/);
    expect(agent.received.filter((m) => m.message?.$case === 'command')).toHaveLength(0);
    expect(
      lines.find((l) => l['msg'] === 'rpc failed' && l['code'] === 'UNAVAILABLE'),
    ).toMatchObject({ detail: expect.stringMatching(/disk on fire/) as unknown });
  });
});
