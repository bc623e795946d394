/** spawnNode: a child's lines are kept, its JSON log lines awaited, and an early exit reported. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../../src/demo/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'prfleet-spawn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a script `name` with `body` into the test's directory. */
function script(name: string, body: string): string {
  const file = join(dir, name);
  writeFileSync(file, body);
  return file;
}

describe('spawnNode', () => {
  it('resolves with a JSON log line printed before or after the wait, split across writes', async () => {
    const file = script(
      'ready.mjs',
      `process.stdout.write('plain text\\n{"msg":"lis');
       setTimeout(() => {
         process.stdout.write('tening","port":7}\\n');
         setTimeout(() => process.stderr.write('{"msg":"late"}\\n'), 50);
         setTimeout(() => {}, 5000);
       }, 50);`,
    );
    const child = spawnNode(file, [], { name: 'ready' });
    try {
      const listening = await child.waitForLog((e) => e['msg'] === 'listening', 20_000);
      expect(listening['port']).toBe(7);
      await child.waitForLog((e) => e['msg'] === 'late', 20_000);
      // Already printed: found among the kept lines.
      expect((await child.waitForLog((e) => e['port'] === 7, 20_000))['msg']).toBe('listening');
      expect(child.lines[0]).toBe('plain text');
    } finally {
      const exit = await child.stop({ graceMs: 2000 });
      expect(exit.signal).toBe('SIGTERM');
      expect(child.hasExited()).toBe(true);
    }
  });

  // The child's 'exit' may come before its last output is read, so the message's quote is not checked.
  it('rejects when the child exits first', async () => {
    const file = script('dies.mjs', `console.error('cannot start: no config'); process.exit(3);`);
    const child = spawnNode(file, [], { name: 'dies' });
    await expect(child.waitForLog(() => true, 20_000)).rejects.toThrow(
      'dies exited (code 3, signal null) before it was ready; last output:',
    );
  });
});
