import { chmod, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { openStore } from '../../src/server/store/index.js';

// The embedded PGlite data directory, opened by a process whose umask is 000 (the worst a server may be started
// with): no local user but the server's may change a byte of it.

const scratch = await mkdtemp(path.join(tmpdir(), 'prfleet-modes-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** Every entry under `dir` (itself included) whose mode lets group or others write, as "path mode". */
async function looseEntries(dir: string, mask = 0o022): Promise<string[]> {
  const loose: string[] = [];
  const visit = async (entry: string) => {
    const stat = await lstat(entry);
    if (stat.isSymbolicLink()) return;
    if ((stat.mode & mask) !== 0) loose.push(`${entry} ${(stat.mode & 0o777).toString(8)}`);
    if (stat.isDirectory())
      for (const name of await readdir(entry)) await visit(path.join(entry, name));
  };
  await visit(dir);
  return loose;
}

function withUmask(mask: number): void {
  const previous = process.umask(mask);
  onTestFinished(() => void process.umask(previous));
}

async function writeSomething(dataDir: string): Promise<void> {
  const store = await openStore({ dataDir });
  try {
    // Open (initdb done): the directory is 0700 and nothing PGlite made is open to others.
    expect(((await lstat(dataDir)).mode & 0o777).toString(8)).toBe('700');
    expect(await looseEntries(dataDir, 0o077)).toEqual([]);
    await store.history.append({
      actor: 'a',
      agentId: 'host-a',
      path: '/dev/sg1',
      luId: 'lu',
      action: 'register',
      reservationKey: 0n,
      serviceActionKey: 0xa1n,
      outcome: 'OUTCOME_GOOD',
    });
  } finally {
    await store.close();
  }
}

describe('embedded data directory modes', { timeout: 180_000 }, () => {
  it('is created 0700 with no file open to group or others, under umask 000', async () => {
    withUmask(0);
    const dataDir = path.join(scratch, 'fresh', 'data');
    await writeSomething(dataDir);
    expect(await looseEntries(dataDir, 0o077)).toEqual([]);
  });

  it('fixes an existing directory and files left writable by others', async () => {
    withUmask(0);
    const dataDir = path.join(scratch, 'loose', 'data');
    await writeSomething(dataDir);
    await chmod(dataDir, 0o777);
    await mkdir(path.join(dataDir, 'extra'), { mode: 0o777 });
    await writeFile(path.join(dataDir, 'extra', 'planted'), 'x', { mode: 0o666 });
    expect((await looseEntries(dataDir)).length).toBeGreaterThan(0);
    await writeSomething(dataDir);
    expect(await looseEntries(dataDir, 0o077)).toEqual([]);
  });
});
