// What goes wrong, end to end: an agent process killed mid-command (outcome UNKNOWN), an agent restarted under
// the same id, a caller's deadline passing, and one bad request for each RPC error code, through the client and
// through the CLI with its exit codes and hints.
import { ClientError, Status } from 'nice-grpc-common';
import { BadRequest, ErrorInfo, ResourceInfo, RichClientError } from 'nice-grpc-error-details';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { Outcome, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { ensureBuilt, runCliBinary, startAgentChild } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';
import {
  DRIVE_PATHS,
  LOADER1_CHANGER,
  LOADER1_DRIVE,
  TEN_SECONDS,
  waitForAgent,
  waitForPaths,
} from './fleet.js';

/** Runs the CLI in-process against `server`. */
async function cli(server: string, ...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--server', server, '--plaintext', ...argv], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr };
}

/** The RPC error a promise rejects with. */
async function rpcError(promise: Promise<unknown>): Promise<ClientError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ClientError))
    throw new Error(`expected a ClientError, got ${String(error)}`);
  return error;
}

describe('agent processes failing', () => {
  beforeAll(async () => {
    await ensureBuilt();
  }, 600_000);

  it('ends a command as OUTCOME_UNKNOWN when its agent dies mid-command', async () => {
    const { client, address, server } = await startTestServer();
    const agent = startAgentChild({ address, agentId: 'host-a', host: 'host-a' });
    await waitForPaths(client, LOADER1_DRIVE, 1);
    // A frozen agent process: the command reaches its stream but no answer can come back.
    agent.signal('SIGSTOP');
    const pending = client.readKeys(
      { target: DRIVE_PATHS['host-a'], options: { commandTimeout: { seconds: 120n, nanos: 0 } } },
      { deadline: 60_000 },
    );
    // The CLI too, at the same time: it must exit with its UNKNOWN code and say to re-read.
    const viaCli = cli(
      address,
      'keys',
      'host-a:/dev/sg2',
      '--timeout',
      '120s',
      '--deadline',
      '60s',
    );
    await expect.poll(() => server.router.inFlight, { timeout: 20_000, interval: 50 }).toBe(2);
    agent.signal('SIGKILL');
    const { result } = await pending;
    expect(result).toMatchObject({
      outcome: Outcome.OUTCOME_UNKNOWN,
      agentId: 'host-a',
      path: '/dev/sg2',
    });
    expect(result?.message).not.toBe('');
    const unknown = await viaCli;
    expect(unknown.code).toBe(ExitCode.OUTCOME_UNKNOWN);
    expect(unknown.stdout).toContain('READ KEYS: UNKNOWN');
    expect(unknown.stdout).toContain('re-read the LU');
    // The agent is gone now, so a new command is refused up front (UNAVAILABLE, nothing sent).
    const run = await runCliBinary(address, ['keys', 'host-a:/dev/sg2']);
    expect(run.code).toBe(ExitCode.RPC_UNAVAILABLE);
    expect(run.stderr).toContain('agent host-a is offline; check `prfleet agents`');
  }, 120_000);

  it('re-attaches an agent restarted under the same id, with its inventory', async () => {
    const { client, address } = await startTestServer();
    const first = startAgentChild({ address, agentId: 'host-b', host: 'host-b' });
    await waitForPaths(client, LOADER1_DRIVE, 1);
    const before = (await client.listAgents({})).agents.find((a) => a.agentId === 'host-b');
    expect(before).toMatchObject({ connected: true, pathCount: 4, transport: 'emulated' });

    await first.stop();
    await waitForAgent(client, 'host-b', false);
    const gone = await rpcError(client.readKeys({ target: DRIVE_PATHS['host-b'] }));
    expect(gone.code).toBe(Status.UNAVAILABLE);

    startAgentChild({ address, agentId: 'host-b', host: 'host-b' });
    await waitForAgent(client, 'host-b', true);
    await waitForPaths(client, LOADER1_DRIVE, 1);
    const after = (await client.listAgents({})).agents.filter((a) => a.agentId === 'host-b');
    expect(after).toHaveLength(1);
    expect(after[0]).toMatchObject({ connected: true, pathCount: 4 });
    expect(after[0]?.sessionId).not.toBe(before?.sessionId);
    const { result } = await client.readKeys({ target: DRIVE_PATHS['host-b'] });
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  }, 120_000);

  it('gives DEADLINE_EXCEEDED when the caller’s deadline passes first', async () => {
    const { client, address } = await startTestServer();
    const agent = startAgentChild({ address, agentId: 'host-c', host: 'host-c' });
    await waitForPaths(client, LOADER1_DRIVE, 1);
    agent.signal('SIGSTOP');
    try {
      const started = Date.now();
      const error = await rpcError(
        client.readKeys({ target: DRIVE_PATHS['host-c'] }, { deadline: 1000 }),
      );
      expect(error.code).toBe(Status.DEADLINE_EXCEEDED);
      expect(Date.now() - started).toBeLessThan(10_000);

      const run = await runCliBinary(address, ['keys', 'host-c:/dev/sg1', '--deadline', '1s']);
      expect(run.code).toBe(ExitCode.RPC_DEADLINE_EXCEEDED);
      expect(run.stderr).toContain('DEADLINE_EXCEEDED');
      expect(run.stderr).toContain('no answer within 1s');
      expect(run.stderr).toContain('may still have run');
    } finally {
      agent.signal('SIGCONT');
    }
  }, 120_000);
});

describe('bad requests get the right status, details, exit code and hint', () => {
  it('answers INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION and UNAVAILABLE', async () => {
    const { client, address } = await startTestServer();
    const fleet = await startEmulatedAgents({ address });
    await waitForPaths(client, LOADER1_DRIVE, 3);

    // INVALID_ARGUMENT names the field; nothing is sent.
    const invalid = await rpcError(
      client.reserve({
        target: { luId: '', agentId: 'host-a', path: '' },
        key: 1n,
        type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      }),
    );
    expect(invalid.code).toBe(Status.INVALID_ARGUMENT);
    expect(invalid).toBeInstanceOf(RichClientError);
    const badRequest = (invalid as RichClientError).extra.find(
      (d) => d.$type === BadRequest.$type,
    ) as BadRequest;
    expect(badRequest.fieldViolations[0]?.field).toBe('target.path');
    const noType = await rpcError(
      client.reserve({ target: DRIVE_PATHS['host-a'], key: 1n, type: PrType.PR_TYPE_UNSPECIFIED }),
    );
    expect(noType.code).toBe(Status.INVALID_ARGUMENT);
    expect(noType.details).toMatch(/type/);

    // NOT_FOUND names the resource.
    const missing = await rpcError(
      client.readKeys({ target: { luId: 'naa.5000e111000000ff', agentId: '', path: '' } }),
    );
    expect(missing.code).toBe(Status.NOT_FOUND);
    const resource = (missing as RichClientError).extra.find(
      (d) => d.$type === ResourceInfo.$type,
    ) as ResourceInfo;
    expect(resource).toMatchObject({
      resourceType: 'logical unit',
      resourceName: 'naa.5000e111000000ff',
    });

    // FAILED_PRECONDITION: the SuperLoader changer profile has no READ FULL STATUS; refused before sending.
    const unsupported = await rpcError(
      client.readFullStatus({
        target: { luId: LOADER1_CHANGER, agentId: 'host-a', path: '/dev/sg0' },
        options: { commandTimeout: TEN_SECONDS },
      }),
    );
    expect(unsupported.code).toBe(Status.FAILED_PRECONDITION);
    expect(unsupported.details).toMatch(/READ FULL STATUS/);

    // UNAVAILABLE: host-c's agent went away; the server still knows it, sends nothing, and says retry is safe.
    await fleet.agent('host-c').stop();
    await waitForAgent(client, 'host-c', false);
    const offline = await rpcError(
      client.reserve({
        target: DRIVE_PATHS['host-c'],
        key: 1n,
        type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      }),
    );
    expect(offline.code).toBe(Status.UNAVAILABLE);
    const info = (offline as RichClientError).extra.find(
      (d) => d.$type === ErrorInfo.$type,
    ) as ErrorInfo;
    expect(info.reason).toBe('AGENT_OFFLINE');

    // The same four through the CLI: exit codes and what to do next.
    const usage = await cli(
      address,
      'reserve',
      '--agent',
      'host-a',
      '--lu',
      LOADER1_DRIVE,
      '--key',
      '1',
      '--type',
      'we',
    );
    expect(usage.code).toBe(ExitCode.USAGE);
    expect(usage.stderr).toContain('--agent needs --path');
    const notFound = await cli(address, 'keys', '--lu', 'naa.5000e111000000ff');
    expect(notFound.code).toBe(ExitCode.RPC_NOT_FOUND);
    expect(notFound.stderr).toContain(
      'logical unit naa.5000e111000000ff is not known to the server',
    );
    const precondition = await cli(address, 'status', 'host-a:/dev/sg0');
    expect(precondition.code).toBe(ExitCode.RPC_FAILED_PRECONDITION);
    expect(precondition.stderr).toContain('nothing was sent');
    const unavailable = await cli(
      address,
      'reserve',
      'host-c:/dev/sg1',
      '--key',
      '1',
      '--type',
      'we',
    );
    expect(unavailable.code).toBe(ExitCode.RPC_UNAVAILABLE);
    expect(unavailable.stderr).toContain('agent host-c is offline; check `prfleet agents`');
    const json = await cli(
      address,
      '-o',
      'json',
      'reserve',
      'host-c:/dev/sg1',
      '--key',
      '1',
      '--type',
      'we',
    );
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: { code: 'UNAVAILABLE', reason: 'AGENT_OFFLINE', exitCode: ExitCode.RPC_UNAVAILABLE },
    });
  }, 60_000);
});
