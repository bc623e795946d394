import { createServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { createControlClient } from '../../src/common/client.js';
import { createLogger } from '../../src/common/logger.js';
import { defaultServerConfig } from '../../src/server/config.js';
import { createPrfleetServer } from '../../src/server/server.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { pgSchema, pgSkip } from './helpers.js';

/** Runs `prfleet` in-process; `lines` grows as it prints. */
function cli(address: string, argv: string[]) {
  const out = {
    stdout: '',
    stderr: '',
    lines: () => out.stdout.split('\n').filter((l) => l !== ''),
  };
  const done = runCli(['--server', address, '--plaintext', ...argv], {
    stdout: (t) => (out.stdout += t),
    stderr: (t) => (out.stderr += t),
  });
  return { out, done };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('prfleet watch', { timeout: 120_000 }, () => {
  it('prints JSON lines with filters and stops after --max-events; refuses an unknown kind', async () => {
    const { address, client } = await startTestServer();
    const json = cli(address, [
      '-o',
      'json',
      'watch',
      '--kind',
      'agent-connected',
      '--kind',
      'prout',
      '--max-events',
      '4',
    ]);
    const words = cli(address, ['watch', '--agent', 'host-c', '--max-events', '1']);
    await new Promise((r) => setTimeout(r, 300));
    await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);
    await client.register({
      target: { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE },
      newKey: 0xa1n,
    });
    expect(await json.done).toBe(0);
    const events = json.out.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e['kind'])).toEqual([
      'EVENT_KIND_AGENT_CONNECTED',
      'EVENT_KIND_AGENT_CONNECTED',
      'EVENT_KIND_AGENT_CONNECTED',
      'EVENT_KIND_PROUT',
    ]);
    expect(events[3]).toMatchObject({
      agentId: 'host-a',
      path: '/dev/sg2',
      luId: LOADER1_DRIVE,
      loaderId: 'loader1',
      site: 'dc1',
      actor: 'anonymous',
      prout: {
        action: 'PROUT_ACTION_REGISTER',
        serviceActionKey: '0x00000000000000a1',
        outcome: 'OUTCOME_GOOD',
      },
    });
    expect(typeof events[3]?.['cursor']).toBe('string');
    expect(await words.done).toBe(0);
    expect(words.out.lines()).toHaveLength(1);
    expect(words.out.lines()[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\S+Z {2}dc2 {2}- {2}- {2}AGENT-CONNECTED: host-c connected/,
    );
    const bad = cli(address, ['watch', '--kind', 'nonsense']);
    expect(await bad.done).toBe(1);
    expect(bad.out.stderr).toMatch(/unknown event kind/);
  });

  it.skipIf(pgSkip !== undefined)(
    'resumes by itself after the server goes away, from its last cursor',
    async () => {
      const { databaseUrl, schema } = pgSchema();
      const port = await freePort();
      const address = `127.0.0.1:${port}`;
      const log = createLogger({ level: 'silent', name: 'watch-cli' });
      const start = async () => {
        const server = await createPrfleetServer({
          log,
          config: {
            ...defaultServerConfig(),
            store: { kind: 'postgres', databaseUrl, schema },
            drainGraceMs: 200,
            shutdownTimeoutMs: 2_000,
          },
        });
        await server.listen(address);
        return server;
      };
      let server = await start();
      onTestFinished(() => server.shutdown());
      await startEmulatedAgents({ address });
      const control = createControlClient(address);
      onTestFinished(() => control.close());
      await waitForPaths(control, LOADER1_DRIVE, 3);
      const watcher = cli(address, [
        'watch',
        '--after',
        '0',
        '--kind',
        'prout',
        '--max-events',
        '2',
      ]);
      await control.register({
        target: { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE },
        newKey: 0xa1n,
      });
      await expect.poll(() => watcher.out.lines().length).toBe(1);

      await server.drain();
      await server.shutdown();
      await expect
        .poll(() => watcher.out.stderr, { timeout: 10_000 })
        .toMatch(/resuming after cursor \d+/);
      server = await start();
      await waitForPaths(control, LOADER1_DRIVE, 3);
      await control.register({
        target: { agentId: 'host-b', path: '/dev/sg1', luId: LOADER1_DRIVE },
        newKey: 0xb1n,
      });
      expect(await watcher.done).toBe(0);
      const lines = watcher.out.lines();
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/PROUT: REGISTER → GOOD {2}\(anonymous via host-a:\/dev\/sg2\)/);
      expect(lines[1]).toMatch(/PROUT: REGISTER → GOOD {2}\(anonymous via host-b:\/dev\/sg1\)/);
    },
  );
});
