import { describe, expect, it } from 'vitest';
import { AUDIT_CRITICAL_EXIT_CODE } from '../../src/cli/fleet.js';
import { ProutAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { runFleetCli as cli, startFleetHarness } from './harness.js';

describe('prfleet fleet commands', { timeout: 120_000 }, () => {
  it('allocates a key, audits with a progress bar and tables, streams JSON lines, and plans', async () => {
    const h = await startFleetHarness();
    const server = h.address;
    const alloc = await cli(server, [
      '-o',
      'json',
      'registry',
      'allocate',
      '--agent',
      'host-a',
      '--site',
      'dc1',
      '--owner',
      'ops',
    ]);
    expect(alloc.exitCode).toBe(0);
    const key = (JSON.parse(alloc.stdout) as { keys: { key: string }[] }).keys[0]?.key ?? '';
    expect(key).toMatch(/^0x50010001000110[0-9a-f]{2}$/);

    // host-c holds loader1's drive with a stray key while host-a holds the changer: critical findings.
    expect(
      (
        await h.prout('host-a', '/dev/sg0', {
          action: ProutAction.PROUT_ACTION_REGISTER,
          serviceActionKey: BigInt(key),
        })
      ).outcome,
    ).toBe(1);
    expect(
      (
        await h.prout('host-a', '/dev/sg0', {
          action: ProutAction.PROUT_ACTION_RESERVE,
          reservationKey: BigInt(key),
          type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        })
      ).outcome,
    ).toBe(1);
    expect(
      (
        await h.prout('host-c', '/dev/sg1', {
          action: ProutAction.PROUT_ACTION_REGISTER,
          serviceActionKey: 0x99n,
        })
      ).outcome,
    ).toBe(1);
    expect(
      (
        await h.prout('host-c', '/dev/sg1', {
          action: ProutAction.PROUT_ACTION_RESERVE,
          reservationKey: 0x99n,
          type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        })
      ).outcome,
    ).toBe(1);

    const table = await cli(server, ['audit', '--loader', 'loader1']);
    expect(table.exitCode).toBe(AUDIT_CRITICAL_EXIT_CODE);
    expect(table.stderr).toContain('audit [');
    expect(table.stderr).toMatch(/2\/2 LUs/);
    expect(table.stdout).toContain('loader_deadlock');
    expect(table.stdout).toContain('unknown_key');
    expect(table.stdout).toContain('0x0000000000000099');

    const json = await cli(server, ['-o', 'json', 'audit', '--loader', 'loader1']);
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => 'report' in l)).toHaveLength(2);
    const summary = lines.find((l) => 'summary' in l)?.['summary'] as {
      loaderFindings: { kind: string }[];
    };
    expect(summary.loaderFindings[0]?.kind).toBe('FINDING_KIND_LOADER_DEADLOCK');
    expect(json.stderr).toBe(''); // no progress bar in JSON mode

    const set = await cli(server, [
      'desired',
      'set',
      '--loader',
      'loader1',
      '--register',
      'host-a',
      '--changer-holder',
      'host-a',
      '--changer-type',
      'ea',
      '--by',
      'test',
    ]);
    expect(set.exitCode).toBe(0);
    const plan = await cli(server, ['plan', '--loader', 'loader1']);
    expect(plan.stdout).toContain('host-a:/dev/sg1 register');
    const dry = await cli(server, ['apply', '--loader', 'loader1', '--dry-run']);
    expect(dry.exitCode).toBe(0);
    expect(dry.stdout).toContain('dry_run');

    const bad = await cli(server, ['takeover', '--by', 'host-a', '--victim-key', '0x99']);
    expect(bad.exitCode).toBe(1); // INVALID_ARGUMENT: no loaders named
    expect(bad.stderr).toContain('selector');
  });
});
