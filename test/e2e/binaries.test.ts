// The shipped binaries together: prfleet-server and prfleet-sim as child processes, the `prfleet` CLI binary
// (exit codes, JSON with hex keys), `buf curl` through server reflection as a client that shares no code with
// prfleet, and `make demo`'s program running to exit 0 without leaving processes behind.
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import {
  bufCurl,
  builtBinaries,
  ensureBuilt,
  runCliBinary,
  runNode,
  startServerChild,
  startSimChild,
} from '../helpers/processes.js';
import { LOADER1_DRIVE } from './fleet.js';

/** Parses the CLI's JSON output. */
function json(stdout: string): Record<string, any> {
  return JSON.parse(stdout) as Record<string, any>;
}

/** Command lines of running processes that mention `text` (Linux /proc). */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(text)) found.push(`${entry}: ${cmdline}`);
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

/** True when something accepts a TCP connection on 127.0.0.1:`port`. */
function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts the server and the simulator as children; resolves with the server's address. */
async function startStack(): Promise<string> {
  const server = await startServerChild();
  await startSimChild(server.address);
  return server.address;
}

describe('the built binaries', () => {
  beforeAll(async () => {
    await ensureBuilt();
  }, 600_000);

  it('prfleet CLI: JSON with hex keys, and sg3_utils exit codes for device answers', async () => {
    const address = await startStack();
    const run = (...args: string[]) => runCliBinary(address, args);

    const agents = await run('-o', 'json', 'agents');
    expect(agents.code).toBe(0);
    expect(
      json(agents.stdout)['agents'].map((a: { agentId: string; connected: boolean }) => [
        a.agentId,
        a.connected,
      ]),
    ).toEqual([
      ['host-a', true],
      ['host-b', true],
      ['host-c', true],
    ]);
    const tapes = await run('-o', 'json', 'devices', '--type', 'tape', '--site', 'dc2');
    expect(json(tapes.stdout)['logicalUnits'].map((lu: { luId: string }) => lu.luId)).toEqual([
      'naa.5000e11100000002',
      'naa.5000e11100000004',
    ]);

    expect((await run('register', 'host-a:/dev/sg2', '--new-key', '0xa1')).code).toBe(0);
    expect((await run('register', 'host-b:/dev/sg1', '--new-key', '0xb1')).code).toBe(0);
    const reserved = await run('reserve', 'host-a:/dev/sg2', '--key', '0xa1', '--type', 'ea');
    expect(reserved.code).toBe(0);
    expect(reserved.stdout).toContain('RESERVE: GOOD');

    // A RESERVATION CONFLICT is a result: printed like any other, exit 24 as sg_persist.
    const conflict = await run(
      '-o',
      'json',
      'reserve',
      'host-b:/dev/sg1',
      '--key',
      '0xb1',
      '--type',
      'ea',
    );
    expect(conflict.code).toBe(ExitCode.RESERVATION_CONFLICT);
    expect(json(conflict.stdout)).toMatchObject({
      action: 'RESERVE',
      exitCode: 24,
      result: {
        outcome: 'OUTCOME_RESERVATION_CONFLICT',
        status: 0x18,
        agentId: 'host-b',
        path: '/dev/sg1',
      },
    });

    const keys = await run('-o', 'json', 'keys', '--lu', LOADER1_DRIVE);
    expect(keys.code).toBe(0);
    expect(json(keys.stdout)['result']['readKeys']['keys']).toEqual([
      '0x00000000000000a1',
      '0x00000000000000b1',
    ]);
    const table = await run('reservation', '--lu', LOADER1_DRIVE);
    expect(table.stdout).toMatch(/0x00000000000000a1\s*│\s*EA/);

    // A dry run validates and encodes, sends nothing, exits 0.
    const dry = await run('-o', 'json', 'clear', 'host-b:/dev/sg1', '--key', '0xb1', '--dry-run');
    expect(dry.code).toBe(0);
    expect(json(dry.stdout)['result']['outcome']).toBe('OUTCOME_DRY_RUN');

    const preempt = await run(
      'preempt',
      'host-b:/dev/sg1',
      '--key',
      '0xb1',
      '--preempt-key',
      '0xa1',
      '--type',
      'ea',
    );
    expect(preempt.code).toBe(0);
    const news = await run('keys', 'host-a:/dev/sg2');
    expect(news.code).toBe(0);
    expect(news.stdout).toContain('UNIT ATTENTION: registrations preempted (asc/ascq 2a/05)');
    const stale = await run('release', 'host-a:/dev/sg2', '--key', '0xa1', '--type', 'ea');
    expect(stale.code).toBe(ExitCode.RESERVATION_CONFLICT);

    // RPC errors get their own codes and say what to do next.
    const unsupported = await run('status', 'host-a:/dev/sg0');
    expect(unsupported.code).toBe(ExitCode.RPC_FAILED_PRECONDITION);
    const unknownPath = await run('keys', 'host-a:/dev/sg99');
    expect(unknownPath.code).toBe(ExitCode.RPC_NOT_FOUND);
    expect(unknownPath.stderr).toContain('prfleet devices');
    const badKey = await run('reserve', 'host-a:/dev/sg2', '--key', '0xnope', '--type', 'ea');
    expect(badKey.code).toBe(ExitCode.USAGE);
  }, 180_000);

  it('buf curl reaches ControlService through reflection', async () => {
    const address = await startStack();
    const list = await bufCurl(address, 'prfleet.v1.ControlService/ListAgents');
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    const agents = (
      JSON.parse(list.stdout) as { agents: { agentId: string; connected?: boolean }[] }
    ).agents;
    expect(agents.map((a) => [a.agentId, a.connected])).toEqual([
      ['host-a', true],
      ['host-b', true],
      ['host-c', true],
    ]);
    // A command through buf curl: proto3 JSON in (keys as decimal strings), a result out.
    const register = await bufCurl(address, 'prfleet.v1.ControlService/Register', {
      target: { agentId: 'host-c', path: '/dev/sg1' },
      newKey: '193',
    });
    expect(register.code).toBe(0);
    expect(JSON.parse(register.stdout)).toMatchObject({
      result: { outcome: 'OUTCOME_GOOD', agentId: 'host-c' },
    });
    const keys = await bufCurl(address, 'prfleet.v1.ControlService/ReadKeys', {
      target: { luId: LOADER1_DRIVE },
    });
    expect(JSON.parse(keys.stdout)).toMatchObject({ result: { readKeys: { keys: ['193'] } } });
    // A bad request: buf curl shows the status and the server's message.
    const bad = await bufCurl(address, 'prfleet.v1.ControlService/Reserve', {
      target: { agentId: 'host-c' },
    });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/invalid_argument/i);
    expect(bad.stderr).toContain('target.path');
  }, 120_000);

  it('the demo runs its scenario, exits 0 and leaves no processes behind', async () => {
    const demo = await runNode(builtBinaries().demo, [], {}, 150_000);
    expect(demo.stderr).toBe('');
    expect(demo.code).toBe(0);
    expect(demo.stdout).toContain('RESERVATION CONFLICT');
    expect(demo.stdout).toContain('FAILED_PRECONDITION');
    expect(demo.stdout).toContain('registrations preempted');
    expect(demo.stdout).toMatch(/Fleet view: http:\/\/127\.0\.0\.1:\d+\//);
    // `prfleet watch`, run beside the story, printed the preemption as it happened (issue 16).
    expect(demo.stdout).toMatch(/│ watch .*PROUT: PREEMPT → GOOD/);
    expect(demo.stdout).toMatch(/│ watch .*UNIT-ATTENTION: .*host-c.*registrations preempted/);
    expect(demo.stdout).toContain('Demo complete.');
    const port = /Server listening on 127\.0\.0\.1:(\d+)/.exec(demo.stdout)?.[1];
    expect(port).toBeDefined();
    // prfleet-sim was started with --server 127.0.0.1:<port>: no such process is left. The server listened on that
    // port: nothing answers there any more.
    expect(processesMentioning(`127.0.0.1:${String(port)}`)).toEqual([]);
    expect(await connects(Number(port))).toBe(false);
  }, 180_000);
});
