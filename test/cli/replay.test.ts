import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { ExitCode } from '../../src/cli/exit-codes.js';

/**
 * Recorded on LIO 6.1 through tcm_loop in the test VM (test/lio, docs/lio-testbed.md), on a fresh LU: the
 * conformance scenario register.spec-i-pt-names-sender, prologue included.
 */
const LIO_TRANSCRIPT = fileURLToPath(
  new URL('./fixtures/lio-6.1-spec-i-pt-names-sender.jsonl', import.meta.url),
);

async function cli(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

describe('prfleet replay', () => {
  it('replays a transcript recorded on LIO against the lio profile with no divergence', async () => {
    const r = await cli(['replay', LIO_TRANSCRIPT, '--profile', 'lio']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ExitCode.OK);
    expect(r.stdout).toMatch(/19 steps replayed against profile lio, no divergence/);
  });

  it('shows the first divergence against spc4: the second registration of the sender, both byte strings', async () => {
    const r = await cli(['replay', LIO_TRANSCRIPT, '--profile', 'spc4']);
    expect(r.code).toBe(ExitCode.REPLAY_DIVERGED);
    // READ KEYS after the SPEC_I_PT REGISTER: LIO lists 0x1111 twice (PRgeneration +2), SPC-4 once (+1).
    expect(r.stdout).toContain('diverges from profile spc4 at step 13 (after 13 matching steps)');
    expect(r.stdout).toContain('nexus     1');
    expect(r.stdout).toContain('cdb       5e000000000000100000');
    expect(r.stdout).toContain(`dataIn recorded: 0000000400000010${'0000000000001111'.repeat(2)}`);
    expect(r.stdout).toContain('dataIn spc4: 00000003000000080000000000001111\n');

    const json = await cli(['-o', 'json', 'replay', LIO_TRANSCRIPT, '--profile', 'spc4']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      diverged: true,
      profile: 'spc4',
      step: 13,
      field: 'dataIn',
      cdb: '5e000000000000100000',
    });
  });

  it('refuses a file that is not a transcript, naming the line, and an unknown profile', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'prfleet-replay-'));
    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, '{"type":"header","format":"prfleet-transcript","version":1}\nnot json\n');
    const r = await cli(['replay', bad, '--profile', 'lio']);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toMatch(/line \d/);
    const p = await cli(['replay', LIO_TRANSCRIPT, '--profile', 'nonesuch']);
    expect(p.code).toBe(ExitCode.USAGE);
    expect(p.stderr).toContain('nonesuch');
  });
});
