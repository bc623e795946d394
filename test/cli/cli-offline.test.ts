// The CLI's parsing, exit codes and output conventions, without a prfleet server: usage errors, JSON that never
// chokes on a bigint, and what an unreachable server looks like to an operator.
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { ExitCode, exitCodeForResult, exitCodeForSense } from '../../src/cli/exit-codes.js';
import { stringifyJson, toCliJson } from '../../src/cli/json.js';
import {
  parseDurationMs,
  parseKeyOption,
  parsePrType,
  parseTransportIdOption,
} from '../../src/cli/parse.js';
import { renderResult } from '../../src/cli/render.js';
import { resolveTarget } from '../../src/cli/target.js';
import { CommandResult, Outcome, PrType } from '../../src/gen/prfleet/v1/scsi.js';

/** Runs the CLI in-process and captures its output. */
async function cli(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('exit codes', () => {
  it('follows sg3_utils for device answers', () => {
    const result = (outcome: Outcome, senseKey?: number, asc = 0) =>
      CommandResult.fromPartial({
        outcome,
        ...(senseKey !== undefined ? { sense: { senseKey, asc } } : {}),
      });
    expect(exitCodeForResult(result(Outcome.OUTCOME_GOOD))).toBe(0);
    expect(exitCodeForResult(result(Outcome.OUTCOME_RESERVATION_CONFLICT))).toBe(24);
    expect(exitCodeForResult(result(Outcome.OUTCOME_CHECK_CONDITION, 5, 0x24))).toBe(5);
    expect(exitCodeForResult(result(Outcome.OUTCOME_CHECK_CONDITION, 5, 0x20))).toBe(9);
    expect(exitCodeForResult(result(Outcome.OUTCOME_CHECK_CONDITION, 6, 0x2a))).toBe(6);
    expect(exitCodeForResult(result(Outcome.OUTCOME_CHECK_CONDITION, 2, 0x04))).toBe(2);
    expect(exitCodeForResult(result(Outcome.OUTCOME_BUSY))).toBe(26);
    expect(exitCodeForResult(result(Outcome.OUTCOME_UNKNOWN))).toBe(ExitCode.OUTCOME_UNKNOWN);
    expect(
      exitCodeForResult(
        CommandResult.fromPartial({ outcome: Outcome.OUTCOME_OS_ERROR, errno: 13 }),
      ),
    ).toBe(63);
    expect(exitCodeForSense(0xe, 0)).toBe(ExitCode.OTHER_SENSE);
  });
});

describe('option parsing', () => {
  it('reads keys as hex or decimal and rejects anything else', () => {
    expect(parseKeyOption('0x77')).toBe(0x77n);
    expect(parseKeyOption('119')).toBe(119n);
    expect(() => parseKeyOption('0x1ffffffffffffffff')).toThrow(/not a reservation key/);
    expect(() => parseKeyOption('-1')).toThrow(/not a reservation key/);
  });

  it('reads reservation types by short name or SPC code', () => {
    expect(parsePrType('WE')).toBe(PrType.PR_TYPE_WRITE_EXCLUSIVE);
    expect(parsePrType('ea-ro')).toBe(PrType.PR_TYPE_EXCLUSIVE_ACCESS_REGISTRANTS_ONLY);
    expect(parsePrType('8')).toBe(PrType.PR_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS);
    expect(() => parsePrType('2')).toThrow(/not a reservation type/);
  });

  it('reads durations with units', () => {
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('2')).toBe(2000);
    expect(() => parseDurationMs('soon')).toThrow(/not a duration/);
  });

  it('reads initiator ports in the printed form', () => {
    const sas = parseTransportIdOption('sas:0x5000c50012345678');
    expect(sas.id).toEqual({ $case: 'sas', value: { sasAddress: 0x5000c50012345678n } });
    const iscsi = parseTransportIdOption('iscsi:iqn.1994-05.com.example:h1,i,0x23D000000001');
    expect(iscsi.id).toEqual({
      $case: 'iscsi',
      value: { name: 'iqn.1994-05.com.example:h1', isid: '23d000000001' },
    });
    expect(() => parseTransportIdOption('wwn:1')).toThrow(/not an initiator port/);
  });

  it('resolves compact and flag targets, and names what is missing', () => {
    expect(resolveTarget('host-a:/dev/sg3', {}, true)).toEqual({
      luId: '',
      agentId: 'host-a',
      path: '/dev/sg3',
    });
    expect(resolveTarget(undefined, { lu: 'naa.1' }, false)).toEqual({
      luId: 'naa.1',
      agentId: '',
      path: '',
    });
    expect(() => resolveTarget(undefined, { lu: 'naa.1' }, true)).toThrow(/acts as one I_T nexus/);
    expect(() => resolveTarget('host-a:/dev/sg3', { agent: 'b' }, true)).toThrow(/not both/);
    expect(() => resolveTarget(undefined, { agent: 'a' }, false)).toThrow(/--agent needs --path/);
  });
});

describe('output', () => {
  const result = CommandResult.fromPartial({
    commandId: 'c1',
    outcome: Outcome.OUTCOME_GOOD,
    agentId: 'host-a',
    path: '/dev/sg3',
    duration: { seconds: 0n, nanos: 150_000 },
    cdb: Buffer.from('5e00000000000000200000', 'hex'),
    generation: 4,
    data: {
      $case: 'readKeys',
      value: { generation: 4, keys: [0x77n, (1n << 64n) - 1n], additionalLength: 16 },
    },
    unitAttentions: [
      {
        sense: {
          senseKey: 6,
          senseKeyName: 'UNIT ATTENTION',
          asc: 0x2a,
          ascq: 0x05,
          description: 'registrations preempted',
        },
      },
    ],
  });

  it('writes keys as 16 hex digits in JSON, with enums by name, and never throws on a bigint', () => {
    const json = toCliJson(result) as Record<string, unknown>;
    expect(json['outcome']).toBe('OUTCOME_GOOD');
    expect(json['readKeys']).toMatchObject({
      keys: ['0x0000000000000077', '0xffffffffffffffff'],
      generation: 4,
    });
    expect(json['durationMs']).toBe(0.15);
    expect(json['cdb']).toBe('5e00000000000000200000');
    expect(() => JSON.parse(stringifyJson({ result }))).not.toThrow();
  });

  it('prints keys, sense words and the unit attentions consumed in tables', () => {
    const text = renderResult('READ KEYS', result);
    expect(text).toContain('READ KEYS: GOOD');
    expect(text).toContain('0x0000000000000077');
    expect(text).toContain('0xffffffffffffffff');
    expect(text).toContain('UNIT ATTENTION: registrations preempted (asc/ascq 2a/05)');
  });
});

describe('runCli without a server', () => {
  it('exits 1 with the bad value named for a malformed key', async () => {
    const run = await cli('reserve', 'host-a:/dev/sg3', '--key', 'zz', '--type', 'we');
    expect(run.code).toBe(ExitCode.USAGE);
    expect(run.stderr).toContain('zz is not a reservation key');
  });

  it('exits 1 when a PROUT has no initiator to act as', async () => {
    const run = await cli('reserve', '--lu', 'naa.5000e11100000001', '--key', '1', '--type', 'we');
    expect(run.code).toBe(ExitCode.USAGE);
    expect(run.stderr).toContain('acts as one I_T nexus');
  });

  it('prints the exit-code table in --help', async () => {
    const run = await cli('--help');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('24  RESERVATION CONFLICT');
    expect(run.stdout).toContain('80  RPC UNAVAILABLE');
  });

  it('says the server is unreachable and how to point at it (exit 80)', async () => {
    const port = await closedPort();
    const run = await cli(
      '--server',
      `127.0.0.1:${port}`,
      'keys',
      'host-a:/dev/sg3',
      '--timeout',
      '2s',
    );
    expect(run.code).toBe(ExitCode.RPC_UNAVAILABLE);
    expect(run.stderr).toContain(`cannot reach the prfleet server at 127.0.0.1:${port}`);
    expect(run.stderr).toContain('PRFLEET_SERVER');
  });

  it('sends every PROUT with a key of its own and says how to retry the very same command', async () => {
    const port = await closedPort();
    const run = await cli(
      '--server',
      `127.0.0.1:${port}`,
      'register',
      'host-a:/dev/sg3',
      '--new-key',
      '0xa1',
      '--timeout',
      '2s',
    );
    expect(run.code).toBe(ExitCode.RPC_UNAVAILABLE);
    expect(run.stderr).toMatch(/repeat it with --idempotency-key [0-9a-f-]{36}\b/);
    // A key the operator gave is the one to repeat.
    const given = await cli(
      '--server',
      `127.0.0.1:${port}`,
      'register',
      'host-a:/dev/sg3',
      '--new-key',
      '0xa1',
      '--idempotency-key',
      'change-42',
      '--timeout',
      '2s',
    );
    expect(given.stderr).toContain('--idempotency-key change-42');
    // Reads have nothing to repeat.
    const read = await cli(
      '--server',
      `127.0.0.1:${port}`,
      'keys',
      'host-a:/dev/sg3',
      '--timeout',
      '2s',
    );
    expect(read.stderr).not.toContain('--idempotency-key');
  });

  it('reports the same error as JSON with -o json', async () => {
    const port = await closedPort();
    const run = await cli('-o', 'json', '--server', `127.0.0.1:${port}`, 'agents');
    expect(run.code).toBe(ExitCode.RPC_UNAVAILABLE);
    expect(JSON.parse(run.stdout)).toMatchObject({ error: { code: 'UNAVAILABLE', exitCode: 80 } });
  });
});
