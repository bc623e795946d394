// What a real host's agent loads: with the sgio transport, nothing of the emulator, the fabric parser or YAML
// (they are for emulated agents only); on the long-poll link, nothing of gRPC. The built agent runs with a module hook that records every module it
// loads, until its first inventory (discovery done); the emulated agent is the control that the hook sees them.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_FABRIC, builtBinaries, ensureBuilt } from '../helpers/processes.js';

const HOOK = `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({
  load(url, context, nextLoad) {
    appendFileSync(process.env.PRFLEET_LOADED_LOG, url + '\\n');
    return nextLoad(url, context);
  },
});
`;

const HEAVY = /\/src\/emulator\/|\/agent\/fabric\.js$|\/node_modules\/yaml\//;

let work: string;

beforeAll(async () => {
  await ensureBuilt();
  work = await mkdtemp(join(tmpdir(), 'prfleet-light-start-'));
  await writeFile(join(work, 'hook.mjs'), HOOK);
}, 180_000);

afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

/**
 * Runs the built agent until its first `until` line (default: its first inventory); returns the URLs of the
 * modules it loaded.
 */
async function modulesLoaded(
  name: string,
  transportArgs: readonly string[],
  until = '"msg":"inventory"',
): Promise<string[]> {
  const log = join(work, `${name}.log`);
  await writeFile(log, '');
  const child = spawn(
    process.execPath,
    [
      '--import',
      join(work, 'hook.mjs'),
      builtBinaries().agent,
      // Port 1 refuses: the agent keeps dialling, which is all this needs.
      ...['--server', '127.0.0.1:1', '--plaintext', '--agent-id', name, ...transportArgs],
    ],
    { env: { ...process.env, PRFLEET_LOADED_LOG: log }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes(until)) resolve();
    });
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => reject(new Error(`agent exited (${code}):\n${output}`)));
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  await exited;
  return (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '');
}

describe('agent start-up weight', () => {
  it('an sgio agent loads the SG_IO transport and nothing of the emulator, the fabric parser or YAML', async () => {
    const loaded = await modulesLoaded('light-sgio', ['--transport', 'sgio']);
    expect(loaded.some((url) => url.endsWith('/agent/transport/sgio.js'))).toBe(true);
    expect(loaded.filter((url) => HEAVY.test(url))).toEqual([]);
    // Its schemas use zod's mini API: the classic one evaluates all of itself at import (~4 MiB of idle RSS).
    expect(loaded.some((url) => url.includes('/node_modules/zod/v4/mini/'))).toBe(true);
    expect(loaded.filter((url) => url.includes('/node_modules/zod/v4/classic/'))).toEqual([]);
  });

  it('an emulated agent does load them (the hook sees what it must)', async () => {
    const loaded = await modulesLoaded('light-emulated', [
      '--transport',
      'emulated',
      '--fabric',
      DEMO_FABRIC,
      '--host',
      'host-a',
    ]);
    expect(loaded.some((url) => url.includes('/src/emulator/'))).toBe(true);
    expect(loaded.some((url) => url.endsWith('/agent/fabric.js'))).toBe(true);
    expect(loaded.some((url) => url.includes('/node_modules/yaml/'))).toBe(true);
  });

  // The first dial has failed by the time the agent says it reconnects: the link's modules are loaded by then.
  const RECONNECTING = '"msg":"session ended; reconnecting"';
  const GRPC = /\/node_modules\/(@grpc\/grpc-js|nice-grpc)\//;

  it('an agent on the long-poll link loads nothing of grpc-js or nice-grpc (~9 MiB of idle RSS)', async () => {
    const loaded = await modulesLoaded(
      'light-long-poll',
      ['--transport', 'sgio', '--link', 'long-poll'],
      RECONNECTING,
    );
    expect(loaded.some((url) => url.endsWith('/agent/long-poll.js'))).toBe(true);
    expect(loaded.filter((url) => GRPC.test(url) || url.endsWith('/agent/stream-link.js'))).toEqual(
      [],
    );
  });

  it('an agent on the stream link does load them (the hook sees what it must)', async () => {
    const loaded = await modulesLoaded('light-stream', ['--transport', 'sgio'], RECONNECTING);
    expect(loaded.some((url) => url.endsWith('/agent/stream-link.js'))).toBe(true);
    expect(loaded.some((url) => url.includes('/node_modules/@grpc/grpc-js/'))).toBe(true);
  });
});
