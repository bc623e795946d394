// A prfleet-server process that cannot listen: its port in use, or PRFLEET_HOST naming no address. Found: the
// listen's rejection reached the top level of main.ts, so the server died as on a bug ("uncaught exception:
// exiting", then Node's crash trace on stderr) instead of a start error naming the setting, as a bad variable or
// a store that cannot open gets. It now exits 1 with one line naming host, port and the variables.
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { builtBinaries, ensureBuilt } from '../helpers/processes.js';

/** How a server process with `env` ended: its exit code and everything it wrote. */
async function startFailure(env: Record<string, string>) {
  await ensureBuilt();
  const run = promisify(execFile)(process.execPath, [builtBinaries().server], {
    env: { PATH: process.env['PATH'], PRFLEET_STORE: 'memory', PRFLEET_PLAINTEXT: 'true', ...env },
    timeout: 30_000,
  });
  const failure = (await run.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: number; stderr?: string } | undefined;
  return { code: failure?.code, stderr: failure?.stderr ?? '' };
}

describe('a server that cannot listen', () => {
  it('on a port in use exits 1 naming it, without a crash trace', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => void holder.close());
    const { port } = holder.address() as AddressInfo;
    const { code, stderr } = await startFailure({ PRFLEET_HOST: '127.0.0.1', PORT: String(port) });
    expect(code).toBe(1);
    expect(stderr).toContain(
      `prfleet-server: cannot listen on 127.0.0.1:${port} (PRFLEET_HOST, PORT)`,
    );
    expect(stderr).toContain('EADDRINUSE');
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 180_000);

  it('on a host that does not resolve exits 1 naming it, without a crash trace', async () => {
    const { code, stderr } = await startFailure({
      PRFLEET_HOST: 'no-such-host.invalid',
      PORT: '0',
    });
    expect(code).toBe(1);
    expect(stderr).toContain('cannot listen on no-such-host.invalid:0 (PRFLEET_HOST, PORT)');
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 180_000);
});
