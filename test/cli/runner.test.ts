// Every command goes through the one runner: it connects through the io's connectors (ControlService or
// FleetService), and an RPC error from any of them comes out in the one format with the one exit code, the
// channel closed afterwards.
import { ClientError, Status } from 'nice-grpc-common';
import { describe, expect, it } from 'vitest';
import type { CliConnection } from '../../src/cli/client.js';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { runCli } from '../../src/cli/program.js';

/** A client whose every call fails PERMISSION_DENIED (not one `watch` resumes after). */
function refusingClient<C>(): C {
  return new Proxy(
    {},
    {
      get: (_target, method) => () => {
        throw new ClientError(`/x/${String(method)}`, Status.PERMISSION_DENIED, 'role too weak');
      },
    },
  ) as C;
}

const CONTROL = [
  ['agents'],
  ['devices'],
  ['keys', 'host-a:/dev/sg2'],
  ['status', '--lu', 'naa.1'],
  ['register', 'host-a:/dev/sg2', '--new-key', '0xa1'],
  ['reserve', 'host-a:/dev/sg2', '--key', '0xa1', '--type', 'ea'],
  ['release', 'host-a:/dev/sg2', '--key', '0xa1', '--type', 'ea'],
  ['clear', 'host-a:/dev/sg2', '--key', '0xa1'],
  ['preempt', 'host-a:/dev/sg2', '--key', '0xa1', '--preempt-key', '0xb1'],
  [
    'move',
    'host-a:/dev/sg2',
    '--key',
    '0xa1',
    '--destination-key',
    '0xb1',
    '--destination',
    'sas:0x5000c50012345678',
    '--relative-target-port',
    '1',
  ],
  ['history', 'list'],
  ['history', 'verify'],
  ['tokens', 'create', '--name', 'n', '--role', 'viewer'],
  ['tokens', 'list'],
  ['tokens', 'revoke', '0123456789ab', '--reason', 'r'],
];
const FLEET = [
  ['loaders'],
  ['who-holds', 'x'],
  ['watch'],
  ['webhooks', 'add', 'https://receiver.example/hook', '--secret', '0123456789abcdef0123'],
  ['webhooks', 'list'],
  ['webhooks', 'remove', 'wh1'],
  ['audit'],
  ['plan'],
  ['apply'],
  ['takeover', '--by', 'host-b', '--victim-key', '0xa1'],
  ['reset-lu', '--lu', 'naa.1', '--reason', 'r'],
  ['registry', 'list'],
  ['registry', 'allocate', '--agent', 'a', '--site', 's', '--owner', 'o'],
  ['registry', 'revoke', '0xa1', '--by', 'o'],
  ['registry', 'decode', '0xa1'],
  ['desired', 'get'],
  ['desired', 'set', '--loader', 'l', '--by', 'o'],
];

async function run(argv: string[]) {
  const opened: string[] = [];
  let closed = 0;
  const connector =
    (service: string) =>
    <C>(): CliConnection<C> => {
      opened.push(service);
      return { client: refusingClient<C>(), close: () => (closed += 1) };
    };
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--plaintext', ...argv], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    env: {},
    connect: { control: connector('control'), fleet: connector('fleet') },
  });
  return { code, stdout, stderr, opened, closed };
}

describe('the one runner', () => {
  it.each([
    ...CONTROL.map((argv) => ['control', argv] as const),
    ...FLEET.map((argv) => ['fleet', argv] as const),
  ])(
    '%s %j: connects through the io, prints the one error format, exits 87',
    async (service, argv) => {
      const r = await run([...argv]);
      expect(r.opened).toEqual([service]);
      expect(r.closed).toBe(1);
      expect(r.code).toBe(ExitCode.RPC_PERMISSION_DENIED);
      expect(r.stderr).toMatch(
        /^prfleet: PERMISSION_DENIED: role too weak\n→ the token is valid but/,
      );
      expect(r.stdout).toBe('');
      const json = await run(['-o', 'json', ...argv]);
      expect(JSON.parse(json.stdout)).toMatchObject({
        error: { code: 'PERMISSION_DENIED', exitCode: ExitCode.RPC_PERMISSION_DENIED },
      });
    },
  );

  it('prints a webhook without a secret as a usage error in the same format, nothing sent', async () => {
    const r = await run(['webhooks', 'add', 'https://receiver.example/hook']);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toMatch(
      /^prfleet: USAGE: a signing secret is needed: .*\n→ give the signing secret/,
    );
  });

  it('prints a command failure that is not an RPC error in the same format (replay, a missing file)', async () => {
    const r = await run(['replay', '/nonexistent/transcript.jsonl']);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.opened).toEqual([]);
    expect(r.stderr).toMatch(
      /^prfleet: USAGE: \/nonexistent\/transcript\.jsonl: ENOENT.*\n→ give a transcript/,
    );
  });
});
