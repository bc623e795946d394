// The CLI against a real server with real (in-process) agents on the demo fabric: every command's table output,
// filters, idempotency keys, preconditions and REGISTER AND MOVE, run in-process through runCli().
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const DRIVE = 'naa.5000e11100000004'; // loader 2's drive: host-a /dev/sg4, host-b /dev/sg3, host-c /dev/sg3

let server: TestServer;

/** Runs the CLI in-process against the test server. */
async function cli(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--server', server.address, '--plaintext', ...argv], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr };
}

describe('prfleet against a running server', () => {
  beforeAll(async () => {
    server = await startTestServer({ keepAlive: true });
    const fleet = await startEmulatedAgents({ address: server.address, keepAlive: true });
    await vi.waitFor(
      async () => {
        const { logicalUnits } = await server.client.listDevices({});
        expect(logicalUnits.find((lu) => lu.luId === DRIVE)?.paths.length).toBe(3);
      },
      { timeout: 20_000, interval: 100 },
    );
    return async () => {
      await fleet.stop();
      await server.close();
    };
  });

  it('lists agents and filters devices by site, label, type and loader', async () => {
    const agents = await cli('agents', '--site', 'dc2');
    expect(agents.code).toBe(0);
    expect(agents.stdout).toMatch(
      /host-c\s*│\s*\S+\s*│\s*dc2\s*│\s*connected\s*│\s*stream\s*│\s*4/,
    );
    expect(agents.stdout).not.toContain('host-a');

    const vault = await cli(
      'devices',
      '--label',
      'role=vault',
      '--loader',
      'loader2',
      '--type',
      'changer',
    );
    expect(vault.code).toBe(0);
    expect(vault.stdout).toContain('naa.5000e11100000003');
    expect(vault.stdout).toContain('host-c:/dev/sg2 sas:0x500605b000000c01');
    expect(vault.stdout).not.toContain('naa.5000e11100000004');

    const none = await cli('devices', '--loader', 'loader9');
    expect(none.stdout).toContain('No logical units match.');
    const badLabel = await cli('devices', '--label', 'novalue');
    expect(badLabel.code).toBe(ExitCode.USAGE);
  });

  it('prints capabilities, full status and reservation tables', async () => {
    expect((await cli('register', 'host-a:/dev/sg4', '--new-key', '0x1a')).code).toBe(0);
    expect(
      (await cli('register', 'host-b:/dev/sg3', '--ignore-existing', '--new-key', '0x1b')).code,
    ).toBe(0);
    expect((await cli('reserve', 'host-a:/dev/sg4', '--key', '0x1a', '--type', 'we-ro')).code).toBe(
      0,
    );

    const caps = await cli('caps', '--lu', DRIVE);
    expect(caps.code).toBe(0);
    expect(caps.stdout).toContain('REPORT CAPABILITIES: GOOD');
    expect(caps.stdout).toMatch(/types \(TMV\)\s*│\s*WE EA WE-RO EA-RO WE-AR EA-AR/);

    const status = await cli('status', 'host-c:/dev/sg3');
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('2 registered nexus(es):');
    expect(status.stdout).toMatch(
      /0x000000000000001a\s*│\s*yes\s*│\s*WE-RO\s*│\s*│\s*\d+\s*│\s*sas:0x500605b000000a01/,
    );
    expect(status.stdout).toMatch(
      /0x000000000000001b\s*│\s*│\s*│\s*│\s*\d+\s*│\s*sas:0x500605b000000b01/,
    );

    const reservation = await cli('reservation', '--lu', DRIVE);
    expect(reservation.stdout).toMatch(/0x000000000000001a\s*│\s*WE-RO\s*│\s*LU/);
  });

  it('returns the recorded result for a repeated idempotency key and refuses a stale precondition', async () => {
    const first = await cli(
      '-o',
      'json',
      'register',
      'host-c:/dev/sg3',
      '--new-key',
      '0x1c',
      '--idempotency-key',
      'join-1c',
    );
    const repeat = await cli(
      '-o',
      'json',
      'register',
      'host-c:/dev/sg3',
      '--new-key',
      '0x1c',
      '--idempotency-key',
      'join-1c',
    );
    expect(first.code).toBe(0);
    expect(repeat.code).toBe(0);
    expect(JSON.parse(repeat.stdout).result.commandId).toBe(
      JSON.parse(first.stdout).result.commandId,
    );

    const keys = JSON.parse((await cli('-o', 'json', 'keys', '--lu', DRIVE)).stdout);
    const generation = keys.result.readKeys.generation as number;
    const stale = await cli(
      'clear',
      'host-c:/dev/sg3',
      '--key',
      '0x1c',
      '--expect-generation',
      String(generation - 1),
    );
    expect(stale.code).toBe(ExitCode.RPC_FAILED_PRECONDITION);
    expect(stale.stderr).toContain('re-read it');
    const noHolder = await cli(
      'preempt',
      'host-c:/dev/sg3',
      '--key',
      '0x1c',
      '--preempt-key',
      '0x1b',
      '--expect-holder',
      '0',
    );
    expect(noHolder.code).toBe(ExitCode.RPC_FAILED_PRECONDITION);
    // Nothing was sent: host-b is still registered.
    expect((await cli('keys', '--lu', DRIVE)).stdout).toContain('0x000000000000001b');
  });

  it('moves the reservation to another nexus with REGISTER AND MOVE', async () => {
    const moved = await cli(
      'move',
      'host-a:/dev/sg4',
      '--key',
      '0x1a',
      '--destination-key',
      '0x2b',
      '--destination',
      'sas:0x500605b000000b01',
      '--relative-target-port',
      '2',
      '--type',
      'we-ro',
      '--unreg',
    );
    expect(moved.stderr).toBe('');
    expect(moved.code).toBe(0);
    expect(moved.stdout).toContain('REGISTER AND MOVE: GOOD');
    const reservation = await cli('reservation', 'host-b:/dev/sg3');
    expect(reservation.stdout).toMatch(/0x000000000000002b\s*│\s*WE-RO/);
    // host-a unregistered itself: its old key is gone.
    expect((await cli('keys', '--lu', DRIVE)).stdout).not.toContain('0x000000000000001a');
  });
});
