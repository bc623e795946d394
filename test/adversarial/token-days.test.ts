// prfleet-tokens create --expires-days at its edges. Found: any positive number was taken, while CreateToken (the
// same operation through the server) refuses a lifetime over 10 years: 1e308 days ended the tool with "Invalid
// time value" naming no option, and 1e7 days wrote a token valid until the year 29406. Days are now decimal text
// in (0, 3650], refused naming the option, and nothing is written.
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createTokensProgram } from '../../src/tools/tokens.js';

async function create(days: string) {
  const dir = await mkdtemp(join(tmpdir(), 'prfleet-token-days-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 't.json');
  const program = createTokensProgram(() => undefined)
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  program.commands.forEach((c) => c.exitOverride().configureOutput({ writeErr: () => undefined }));
  const args = [
    'create',
    '--role',
    'viewer',
    '--name',
    'ci',
    '--file',
    file,
    '--expires-days',
    days,
  ];
  const error = await program.parseAsync(args, { from: 'user' }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  const written = await access(file).then(
    () => true,
    () => false,
  );
  return { error, written };
}

describe('prfleet-tokens create --expires-days', () => {
  it.each(['1e308', '10000000', '3650.5', '0', '-1', '0x10', ' '])(
    '%j is refused naming the option, and no token is written',
    async (days) => {
      const { error, written } = await create(days);
      expect(error?.message).toMatch(/--expires-days.*at most 3650/s);
      expect(written).toBe(false);
    },
  );

  it.each(['90', '3650', '0.5'])('%j is taken', async (days) => {
    const { error, written } = await create(days);
    expect(error).toBeUndefined();
    expect(written).toBe(true);
  });
});
